"""What every stemforge-train command checks before it launches DeepSpeed, loads a model, encodes or
renders: the run config, the numbers, the stem names, the data, the model folders (read from their
JSON alone, no weights) and the outputs.

A training run takes minutes to start (DeepSpeed, the model, the data) and fails late on a typo, a
missing data folder or a run folder of another task, sometimes after writing into that folder; an
export or a cache fails after reading every tensor. These checks refuse such input first, with one
line that names the input and the fix, and they write nothing (a folder's writability is probed
with a hidden folder that is removed at once). The commands check the same again as they work;
these checks only move the refusal before the work.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from stemforge.train.cli import UserError

if TYPE_CHECKING:
    from stemforge.train.config import TrainConfig

TASKS = ("mel_vae", "vocoder", "waveform_ae", "ldm", "midi")
EXAMPLE_CONFIG = "configs/tiny-midi.yaml"
_AUDIO = "a WAV, FLAC or OGG file"


def one_line(text: object) -> str:
    """``text`` with every run of white space (newlines of YAML and soundfile errors) as one space."""
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------- outputs
def writable_ancestor(out: Path, option: str, *, folder: bool, prefix: str = "") -> Path:
    """The nearest existing folder above ``out`` (``out`` itself for a ``folder`` that exists),
    checked by creating and removing a probe folder in it, so that a read-only place is refused
    before any work. ``prefix`` names the file that sets ``option`` (a config)."""
    out = Path(out)
    place = out.absolute() if folder else out.absolute().parent
    while not place.exists():
        place = place.parent
    if not place.is_dir():
        raise UserError(
            f"{prefix}{option} {out}: {place} is a file, not a folder, so the output cannot be created under "
            f"it; choose another {option}"
        )
    try:
        shutil.rmtree(tempfile.mkdtemp(prefix=".stemforge-probe.", dir=place))
    except OSError as err:
        raise UserError(
            f"{prefix}{option} {out}: cannot write in {place} ({err.strerror or err}); choose a folder you can "
            "write to"
        ) from err
    return place


def check_new_folder(
    out: Path, option: str, *, overwrite: bool | None = None, empty_ok: bool = False, note: str = ""
) -> None:
    """An output folder that must not exist yet (an existing empty one is accepted with ``empty_ok``;
    any existing one with ``overwrite``; ``None``: the command has no --overwrite)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out}: is a file, not a folder; give the path of a new folder")
    if out.is_dir() and not overwrite:
        holds = any(out.iterdir())
        if holds or not empty_ok:
            fix = (
                "pass --overwrite to replace it, or choose a new folder"
                if overwrite is not None
                else "choose a new folder, or remove this one first"
            )
            raise UserError(f"{option} {out}: already exists{'' if holds else ' (empty)'}{note}; {fix}")
    writable_ancestor(out, option, folder=True)


def check_out_file(out: Path, option: str) -> None:
    """An output file (replaced if it exists): not a folder, in a place that can be written."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{option} {out}: is a folder; give the path of a file, e.g. {out / 'results.json'}")
    writable_ancestor(out, option, folder=False)


# --------------------------------------------------------------------------------------- numbers
def check_at_least(option: str, value: float | None, least: int, what: str = "") -> None:
    """``value`` (None: not given) must be a finite number >= ``least``."""
    if value is not None and not (math.isfinite(value) and value >= least):
        wanted = "at least 1" if least == 1 else f"a value >= {least}"
        raise UserError(f"{option} {value}: give {wanted}{what}")


def check_run_numbers(config: TrainConfig, source: str) -> None:
    """Steps, batch sizes, cadences and optimizer numbers of ``config`` (read from ``source``);
    ``TrainConfig.from_dict`` checks them too, for configs built in Python."""
    from stemforge.train.config import ConfigError

    try:
        config.check_numbers(source)
    except ConfigError as err:
        raise UserError(one_line(err)) from err


# ---------------------------------------------------------------------------------------- config
def read_config(path: str | Path, overrides: Sequence[str], option: str = "CONFIG") -> TrainConfig:
    """Load and validate a run config, with every problem of the file, the ``--set`` overrides or a
    key as one :class:`UserError` line."""
    from stemforge.train.config import ConfigError, load_config

    path = Path(path)
    if not path.exists():
        raise UserError(f"{option} {path}: no such file; give a YAML run config such as {EXAMPLE_CONFIG}")
    if path.is_dir():
        raise UserError(f"{option} {path}: is a folder; give a YAML run config file such as {EXAMPLE_CONFIG}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(
            f"{option} {path}: cannot be read ({err.strerror or err}); check its permissions"
        ) from err
    if not data.strip():
        raise UserError(
            f"{option} {path}: the file is empty; write a run config (task, model, data, optim, dist and run "
            f"sections), e.g. starting from {EXAMPLE_CONFIG}"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"{option} {path}: not a text file (binary data, not YAML); give a YAML run config such as "
            f"{EXAMPLE_CONFIG}"
        ) from err
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UserError(f"{option} {path}: not valid YAML ({_yaml_problem(err)}); fix the syntax") from err
    if not isinstance(raw, dict):
        raise UserError(
            f"{option} {path}: not a run config: the file holds a YAML {type(raw).__name__}, not KEY: VALUE "
            f"sections; write task, model, data, optim, dist and run sections as in {EXAMPLE_CONFIG}"
        )
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(
                f"--set {item!r}: write KEY=VALUE with a dotted key, e.g. --set run.max_steps=100"
            )
        try:
            yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise UserError(
                f"--set {item!r}: the value is not valid YAML ({_yaml_problem(err)}); quote it, e.g. "
                f"--set '{key}=\"...\"'"
            ) from err
    if "task" not in raw and not any(o.partition("=")[0].strip() == "task" for o in overrides):
        raise UserError(f"{option} {path}: no 'task' key; add task: with one of {', '.join(TASKS)}")
    try:
        return load_config(path, overrides)
    except ConfigError as err:
        raise UserError(one_line(err)) from err


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or one_line(err)
    return (
        f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else str(problem)
    )


# ------------------------------------------------------------------------------- model folders
FolderKind = Literal[
    "missing",
    "file",
    "checkpoint",
    "run",
    "pipeline",
    "export",
    "codec",
    "component",
    "unfinished-run",
    "other",
]


def _read_json(path: Path, option: str, folder: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(
            f"{option} {folder}: {path.name} is not readable JSON ({one_line(err)}); write or export it again"
        ) from err
    if not isinstance(data, dict):
        raise UserError(f"{option} {folder}: {path.name} is not a JSON object; write or export it again")
    return data


def folder_kind(path: Path, option: str) -> tuple[FolderKind, dict[str, Any]]:
    """What ``path`` holds, from its file names and JSON alone, with the JSON that says so."""
    from stemforge.train.checkpoint import latest_checkpoint

    path = Path(path)
    if not path.exists():
        return "missing", {}
    if not path.is_dir():
        return "file", {}
    if (path / "meta.json").is_file():
        return "checkpoint", {}
    if latest_checkpoint(path) is not None or latest_checkpoint(path / "checkpoints") is not None:
        return "run", {}
    if (path / "pipeline.json").is_file():
        return "pipeline", _read_json(path / "pipeline.json", option, path)
    if (path / "config.json").is_file():
        config = _read_json(path / "config.json", option, path)
        if config.get("format") == "stemforge-codec":
            return "codec", config
        if "task" in config:
            return "export", config
        return "component", config
    if (path / "config.yaml").is_file() or (path / "checkpoints").is_dir():
        return "unfinished-run", {}
    return "other", {}


def _pipeline_above(path: Path) -> Path | None:
    parent = Path(path).absolute().parent
    return parent if (parent / "pipeline.json").is_file() else None


def check_export(path: str | Path, option: str, task: str, purpose: str) -> dict[str, Any]:
    """A `stemforge-train export` folder (``config.json`` + ``model.safetensors``) of a ``task`` run;
    returns its config. ``purpose`` says what takes it, for the message."""
    path = Path(path)
    kind, config = folder_kind(path, option)
    export = f"`stemforge-train export` of a {task} run"
    if kind == "missing":
        raise UserError(f"{option} {path}: no such folder; give a folder written by `stemforge-train export`")
    if kind == "file":
        raise UserError(f"{option} {path}: is a file; give the folder of a {export}")
    if kind == "export" and (path / "model.safetensors").is_file():
        if config.get("task") != task:
            raise UserError(
                f"{option} {path}: an export of a {config.get('task')!r} run, but {purpose} needs a {task!r} one; "
                f"give a {export}"
            )
        return config
    why = {
        "checkpoint": "it is a training checkpoint; export its run first with `stemforge-train export RUN EXPORT_DIR`",
        "run": f"it is a training run; export it first with `stemforge-train export {path} EXPORT_DIR`",
        "unfinished-run": "it is a training run without a checkpoint yet; train it further, then export it",
        "pipeline": "it is a stemforge-pipelines folder; give the flat export of the run (`stemforge-train export RUN OUT --format flat`)",
        "codec": f"it is a codec folder (Codec.save), not a {export}",
        "component": f"it is a component of a model folder, not a {export}",
        "export": "the export is incomplete; export the run again",
    }.get(kind, f"give a folder written by `stemforge-train export` (a {export})")
    raise UserError(f"{option} {path}: no model.safetensors there; {why}")


def check_init_from(path: str | Path, option: str, task: str) -> None:
    """``run.init_from``: a `stemforge-train export` of a ``task`` run, or a folder that
    `stemforge.train.engine.resolve_init_from` reads for it (a pipeline folder whose network that task
    trains; for waveform_ae a waveform codec folder)."""
    from stemforge.train.engine import resolve_init_from

    kind, _ = folder_kind(Path(path), option)
    if kind == "pipeline" or (kind == "codec" and task == "waveform_ae"):
        try:
            resolve_init_from(Path(path), task, option)
        except ValueError as err:
            raise UserError(str(err)) from err
        return
    check_export(path, option, task, f"a {task!r} config")


def check_codec_folder(path: str | Path, option: str, prefix: str = "") -> None:
    """A codec folder as ``stemforge.codec.load_codec`` reads it (``config.json`` with ``format:
    stemforge-codec`` + ``model.safetensors``), told apart from the other model folders."""
    path = Path(path)
    kind, config = folder_kind(path, option)
    where = f"{prefix}{option} {path}"
    fix = 'give a codec folder (Codec.save format: config.json with "format": "stemforge-codec")'
    if kind == "missing":
        raise UserError(f"{where}: no such folder; {fix}")
    if kind == "file":
        raise UserError(f"{where}: is a file; {fix}")
    if kind == "pipeline":
        codec = path / "codec"
        hint = f"give its codec folder {codec}" if (codec / "config.json").is_file() else fix
        raise UserError(f"{where}: holds a {config.get('kind', '')} pipeline, not a codec; {hint}")
    if kind == "export":
        raise UserError(
            f"{where}: holds a `stemforge-train export` of a {config.get('task')!r} run, not a codec; {fix}, "
            "e.g. made by `stemforge-train codec-bundle`"
        )
    if kind in ("run", "checkpoint", "unfinished-run"):
        raise UserError(f"{where}: holds a training run, not a codec; {fix}")
    if kind == "component":
        raise UserError(f"{where}: holds a model component, not a codec; {fix}")
    if kind == "other":
        raise UserError(f"{where}: no config.json there, so it is not a codec folder; {fix}")
    if not (path / "model.safetensors").is_file():
        raise UserError(
            f"{where}: model.safetensors is missing, the codec folder is incomplete; save it again"
        )


def check_run_source(path: str | Path, option: str = "CHECKPOINT") -> dict[str, Any]:
    """What ``stemforge-train export`` reads: a run folder, its ``checkpoints/`` or one checkpoint;
    returns the checkpoint's ``meta.json``."""
    from stemforge.train.checkpoint import (
        CheckpointError,
        check_checkpoint_files,
        latest_checkpoint,
        read_meta,
    )

    path = Path(path)
    kind, config = folder_kind(path, option)
    run = "give a run folder (the run.out_dir of `stemforge-train fit`) or one of its checkpoints/step-XXXXXXXX folders"
    if kind == "missing":
        raise UserError(f"{option} {path}: no such folder; {run}")
    if kind == "file":
        raise UserError(f"{option} {path}: is a file; {run}")
    if kind == "unfinished-run":
        raise UserError(
            f"{option} {path}: holds a training run without a complete checkpoint yet (it stopped before its "
            "first checkpoint); train it further, past run.ckpt_every steps, or give another run folder"
        )
    if kind not in ("checkpoint", "run"):
        what = {
            "pipeline": "holds a stemforge-pipelines folder (pipeline.json), which is already exported",
            "export": f"holds a `stemforge-train export` of a {config.get('task')!r} run (config.json + "
            "model.safetensors), which is already exported",
            "codec": "holds a codec folder (Codec.save), not a training run",
            "component": "holds a model component, not a training run",
        }.get(
            kind, "not a run folder (no checkpoints/ with a complete step-XXXXXXXX checkpoint, no meta.json)"
        )
        raise UserError(f"{option} {path}: {what}; {run}")
    ckpt = (
        path if kind == "checkpoint" else latest_checkpoint(path) or latest_checkpoint(path / "checkpoints")
    )
    assert ckpt is not None
    meta = _read_json(ckpt / "meta.json", option, ckpt)
    try:
        read_meta(ckpt)
        check_checkpoint_files(ckpt)
    except CheckpointError as err:
        raise UserError(f"{option} {one_line(err)}") from err
    return meta


def check_midi_model(path: str | Path, option: str = "MODEL") -> int:
    """A MIDI insertion model folder (a voice-insertion pipeline or an export of a ``midi`` run), read
    from its JSON; returns the length multiple its U-Net needs (its downsampling factor)."""
    path = Path(path)
    kind, config = folder_kind(path, option)
    fix = (
        "give a voice-insertion pipeline folder (e.g. apps/insert/src/stemforge/insert/checkpoints/jsb-insertion) "
        "or a `stemforge-train export` of a midi run"
    )
    if kind == "missing":
        raise UserError(f"{option} {path}: no such folder; {fix}")
    if kind == "file":
        raise UserError(f"{option} {path}: is a file; {fix}")
    if kind == "pipeline" and config.get("kind") == "voice-insertion":
        network = path / "network" / "config.json"
        unet = _read_json(network, option, path).get("unet", {}) if network.is_file() else {}
        return _downsample(unet)
    if kind == "export" and config.get("task") == "midi":
        model_config = config.get("model_config", {})
        return _downsample(model_config.get("unet", model_config) if isinstance(model_config, dict) else {})
    above = _pipeline_above(path)
    if kind == "component" and above is not None:
        raise UserError(f"{option} {path}: holds a component of the pipeline {above}; give {above}")
    if kind in ("run", "checkpoint", "unfinished-run"):
        raise UserError(
            f"{option} {path}: holds a training run, not an exported model; export a midi run first with "
            "`stemforge-train export RUN EXPORT_DIR`, or " + fix
        )
    what = {
        "pipeline": f"holds a {config.get('kind')!r} pipeline (audio), not a MIDI insertion model",
        "export": f"holds an export of a {config.get('task')!r} run, not a MIDI insertion model",
        "codec": "holds a codec, not a MIDI insertion model",
        "component": "holds a model component, not a MIDI insertion model",
    }.get(kind, "neither pipeline.json nor config.json is there, so it is not a model folder")
    raise UserError(f"{option} {path}: {what}; {fix}")


def _downsample(unet: Any) -> int:
    mult = unet.get("channel_mult") if isinstance(unet, dict) else None
    return 2 ** (len(mult) - 1) if isinstance(mult, list) and mult else 1


# ------------------------------------------------------------------------------------------- data
def check_audio_file(path: Path, where: str) -> tuple[int, int]:
    """An audio file a dataset reads in full: not empty, audio, complete; returns (frames, rate).
    ``where`` names the config key that lists it."""
    import soundfile as sf

    from stemforge.data import AudioError, audio_info, truncated_wav

    try:
        size = path.stat().st_size
    except OSError as err:
        raise UserError(
            f"{where}: {path} cannot be read ({err.strerror or err}); check its permissions"
        ) from err
    if size == 0:
        raise UserError(
            f"{where}: {path}: the file is empty (0 bytes); replace it with {_AUDIO} that holds audio"
        )
    try:
        frames, rate, _ = audio_info(path)
    except AudioError as err:
        raise UserError(
            f"{where}: {path}: cannot read it as audio, it is not {_AUDIO} (or its header is damaged); "
            "replace it with the stem's audio"
        ) from err
    cut = truncated_wav(path)
    if cut is not None:
        raise UserError(
            f"{where}: {path}: the file is truncated: its header announces {cut[0]:.2f} s of audio but only "
            f"{cut[1]:.2f} s are there; copy or render it again"
        )
    try:
        decoded = len(sf.read(str(path), dtype="float32", always_2d=True)[0])
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError, TypeError
        raise UserError(
            f"{where}: {path}: the audio data cannot be decoded, the file is truncated or damaged "
            f"({one_line(err)}); copy or render it again"
        ) from err
    if decoded < frames:
        raise UserError(
            f"{where}: {path}: the file is truncated: its header announces {frames / rate:.2f} s of audio but "
            f"only {decoded / rate:.2f} s can be decoded; copy or render it again"
        )
    return frames, rate


def _splits(data: Any, purpose: str) -> list[str]:
    return ["train"] if purpose == "scale" else ["train"] + (["val"] if data.has_split("val") else [])


def check_audio_data(data: Any, source: str, purpose: Literal["fit", "cache", "scale"] = "fit") -> None:
    """The audio an ``AudioData`` section names, for the splits ``purpose`` reads: a Slakh-format
    root (metadata and audio headers of every track; WAV data lengths) or track folders (every stem
    file read in full), every stem name found in the data, at least one segment per split."""
    for split in _splits(data, purpose):
        if data.slakh_root:
            _check_slakh(data, split, source)
        else:
            _check_tracks(data, split, source)


def _check_slakh(data: Any, split: str, source: str) -> None:
    from stemforge.data import (
        AudioError,
        SlakhFormatError,
        list_tracks,
        read_metadata,
        scan_tracks,
        truncated_wav,
    )

    root = Path(data.slakh_root)
    where = f"{source}: data.slakh_root {root}"
    render = f"render one with `stemforge-train data render --out {root}` or correct data.slakh_root"
    if not root.exists():
        raise UserError(f"{where}: no such folder; {render}")
    if not root.is_dir():
        raise UserError(f"{where}: is a file, not a Slakh-format folder; {render}")
    folder = {"val": "validation"}.get(split, split)
    if not (root / folder).is_dir() or not list_tracks(root, folder):
        raise UserError(
            f"{where}: no {folder} tracks ({root / folder}/TrackNNNNN/metadata.yaml); the {split} split reads "
            f"them: {render}"
        )
    stems = tuple(data.stems)
    try:
        tracks, _ = scan_tracks(root, folder, stems, group_by=data.group_by)
    except (SlakhFormatError, AudioError) as err:
        raise UserError(f"{where}: {one_line(err)} (restore the track or render it again)") from err
    found = {stem for track in tracks for stem, files in zip(stems, track.files, strict=True) if files}
    missing = [stem for stem in stems if stem not in found]
    if missing:
        labels: set[str] = set()
        for track_dir in list_tracks(root, folder):
            for stem_info in read_metadata(track_dir).stems:
                label = stem_info.inst_class.lower() if data.group_by == "inst_class" else stem_info.stem_name
                labels.add(str(label))
        raise UserError(
            f"{source}: data.stems {missing[0]!r} is in no track of {root / folder} (its stems by "
            f"{data.group_by}: {', '.join(sorted(labels)) or 'none'}); correct data.stems or data.group_by"
        )
    for track in tracks:
        for path in (p for files in track.files for p in files):
            cut = truncated_wav(path)
            if cut is not None:
                raise UserError(
                    f"{where}: {path}: the file is truncated: its header announces {cut[0]:.2f} s of audio but "
                    f"only {cut[1]:.2f} s are there; render the track again"
                )
    if all(t.num_frames < math.ceil(data.segment_seconds * t.native_rate) for t in tracks):
        raise UserError(
            f"{where}: every {folder} track is shorter than data.segment_seconds ({data.segment_seconds} s); "
            "give longer tracks or a shorter data.segment_seconds"
        )


def _check_tracks(data: Any, split: str, source: str) -> None:
    tracks = data.tracks(split)
    key = f"data.{split}_tracks"
    if not tracks:
        raise UserError(
            f"{source}: no {split} audio: set data.slakh_root (a Slakh-format folder) or {key} (folders of "
            "<stem>.flac files)"
        )
    seen: set[str] = set()
    longest = 0.0
    for track in map(Path, tracks):
        where = f"{source}: {key} {track}"
        if not track.exists():
            raise UserError(f"{where}: no such folder; list folders of <stem>.flac files")
        if not track.is_dir():
            raise UserError(f"{where}: is a file; list folders of <stem>.flac files, not the files")
        present = [stem for stem in data.stems if (track / f"{stem}.flac").is_file()]
        if not present:
            raise UserError(
                f"{where}: none of data.stems {list(data.stems)} is there as <stem>.flac; correct data.stems "
                "or the folder"
            )
        for stem in present:
            frames, rate = check_audio_file(track / f"{stem}.flac", f"{source}: {key}")
            longest = max(longest, frames / rate)
        seen.update(present)
    missing = [stem for stem in data.stems if stem not in seen]
    if missing:
        raise UserError(
            f"{source}: data.stems {missing[0]!r} is in no folder of {key} (no {missing[0]}.flac); correct the "
            "stem name or add its audio"
        )
    if longest < data.segment_seconds:
        raise UserError(
            f"{source}: {key}: every track is shorter than data.segment_seconds ({data.segment_seconds} s; the "
            f"longest lasts {longest:.2f} s); give longer audio or a shorter data.segment_seconds"
        )


def _check_latent_cache(data: Any, source: str) -> None:
    root = Path(data.latent_cache)
    fix = f"create it with `stemforge-train cache CONFIG --codec CODEC_DIR --out {root}`, or set data.codec"
    if not root.is_dir():
        raise UserError(f"{source}: data.latent_cache {root}: no such folder; {fix}")
    for split in ("train", "val"):
        index = root / split / "index.json"
        if split == "val" and not (root / split).is_dir():
            continue
        if not index.is_file():
            raise UserError(
                f"{source}: data.latent_cache {root}: no {split}/index.json, not a latent cache; {fix}"
            )
        stems = _read_json(index, "data.latent_cache", root).get("stem_names")
        if list(stems or []) != list(data.stems):
            raise UserError(
                f"{source}: data.latent_cache {root} holds the stems {stems}, data.stems are {list(data.stems)}; "
                "cache again with these stems or set data.stems to the cache's"
            )


def _check_ldm(config: TrainConfig, source: str, purpose: str) -> None:
    options = config.options(source)
    model, data = options.model, options.data
    stems = list(data.stems)
    if model.mode == "accompaniment" and model.target_stem not in stems:
        raise UserError(
            f"{source}: model.target_stem {model.target_stem!r} is not one of data.stems {stems}; choose one of them"
        )
    if model.mode == "subtractive" and model.insert_stems:
        unknown = [s for s in model.insert_stems if s not in stems]
        if unknown:
            raise UserError(
                f"{source}: model.insert_stems {unknown} are not in data.stems {stems}; choose among them"
            )
    named = model.unet.get("stems")
    if named is not None and model.mode != "accompaniment" and list(named) != stems:
        raise UserError(
            f"{source}: model.unet.stems {list(named)} differ from data.stems {stems}; leave model.unet.stems "
            "out (it follows data.stems) or make the two the same"
        )
    if data.cache_batch < 1 or data.shard_items < 1:
        raise UserError(
            f"{source}: data.cache_batch = {data.cache_batch}, data.shard_items = {data.shard_items}; give at "
            "least 1 for each"
        )
    if purpose == "cache":
        check_audio_data(data, source, "cache")
        return
    conditioned = model.mode == "subtractive" or model.style_encoder is not None
    if data.codec:
        check_codec_folder(data.codec, "data.codec", f"{source}: ")
    elif model.mode in ("accompaniment", "subtractive"):
        raise UserError(
            f"{source}: model.mode = {model.mode} encodes its inputs on the fly and needs data.codec; set it to a "
            "codec folder (e.g. apps/insert/src/stemforge/insert/checkpoints/demo-audio/codec)"
        )
    elif not data.latent_cache:
        raise UserError(
            f"{source}: the LDM needs data.latent_cache (from `stemforge-train cache`) or data.codec; set one"
        )
    if data.latent_cache and not conditioned:
        _check_latent_cache(data, source)
        return
    if model.mode == "subtractive" and not data.slakh_root:
        raise UserError(
            f"{source}: model.mode = subtractive reads MIDI per track and needs data.slakh_root; render one with "
            "`stemforge-train data render`"
        )
    check_audio_data(data, source, "fit")


# ---------------------------------------------------------------------------------------- commands
def check_fit(config: TrainConfig, source: str) -> None:
    """Everything ``stemforge-train fit`` needs before it launches DeepSpeed."""
    check_run_numbers(config, source)
    if config.task == "ldm":
        _check_ldm(config, source, "fit")
    elif config.task == "midi":
        from stemforge.midi import JSB_STEMS

        named = config.options(source).model.unet.get("stems")
        if named is not None and tuple(named) != tuple(JSB_STEMS):
            raise UserError(
                f"{source}: model.unet.stems {list(named)}: the MIDI task trains on the JSB chorales, whose voices "
                f"are {', '.join(JSB_STEMS)}; leave model.unet.stems out or list those"
            )
    else:
        check_audio_data(config.options(source).data, source, "fit")
    if config.run.init_from:
        check_init_from(config.run.init_from, f"{source}: run.init_from", config.task)
    check_run_dir(config, source)


def check_run_dir(config: TrainConfig, source: str) -> None:
    """``run.out_dir``: new, empty, or a run of the same task (which resumes)."""
    from stemforge.train.checkpoint import (
        CheckpointError,
        check_checkpoint_files,
        latest_checkpoint,
        read_meta,
    )

    out = Path(config.run.out_dir)
    option = f"{source}: run.out_dir"
    new = "choose another run.out_dir (--set run.out_dir=DIR)"
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out}: is a file; {new}")
    writable_ancestor(out, "run.out_dir", folder=True, prefix=f"{source}: ")
    if not out.is_dir():
        return
    ckpt = latest_checkpoint(out / "checkpoints")
    recorded = None
    if ckpt is not None:
        meta = _read_json(ckpt / "meta.json", option, out)
        try:
            read_meta(ckpt)
            check_checkpoint_files(ckpt)
        except CheckpointError as err:
            raise UserError(f"{option} {out}: cannot resume: {one_line(err)}") from err
        recorded = (meta.get("config") or {}).get("task")
    elif (out / "config.yaml").is_file():
        try:
            recorded = (yaml.safe_load((out / "config.yaml").read_text()) or {}).get("task")
        except (yaml.YAMLError, AttributeError, UnicodeDecodeError):
            recorded = None
    elif not (out / "checkpoints").is_dir() and any(not p.name.startswith(".") for p in out.iterdir()):
        raise UserError(
            f"{option} {out}: holds other files and no stemforge-train run (no config.yaml or checkpoints/); "
            f"{new}; a run folder resumes"
        )
    if recorded is not None and recorded != config.task:
        at = f" (checkpoint {ckpt.name})" if ckpt is not None else ""
        raise UserError(
            f"{option} {out}: holds a {recorded!r} run{at}, and this config trains {config.task!r}; {new}: a run "
            "folder resumes only the run it holds"
        )


def check_cache(config: TrainConfig, source: str, codec: Path, out: Path) -> None:
    """Everything ``stemforge-train cache`` needs before it loads the codec."""
    if config.task != "ldm":
        raise UserError(f"{source}: task {config.task!r} is not the LDM; give the LDM config to cache for")
    check_codec_folder(codec, "--codec")
    _check_ldm(config, source, "cache")
    check_new_folder(out, "--out", note=" (existing caches are never overwritten)")


def check_scale_config(config: TrainConfig, source: str) -> None:
    """``codec-bundle --scale-config``: a config whose data section holds audio."""
    from stemforge.train.options import AudioData

    data = config.options(source).data
    if not isinstance(data, AudioData):
        raise UserError(
            f"--scale-config {source}: task {config.task!r} reads no audio; give a codec or LDM config"
        )
    check_audio_data(data, source, "scale")
