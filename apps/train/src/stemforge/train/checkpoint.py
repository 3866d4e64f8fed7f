"""Atomic, resumable training checkpoints in safetensors + JSON (no pickle), and their export.

Layout of ``<out_dir>/checkpoints/``::

    step-00000500/              one checkpoint (renamed into place only once complete)
        model.safetensors       full fp32 weights (master copies of the trainable parameters,
                                frozen parameters and persistent buffers), state-dict names
        optimizer.safetensors   AdamW state per parameter name: exp_avg.<name>, exp_avg_sq.<name>,
                                step.<name> (0-d)
        ema.safetensors         EMA shadow weights + update count
        meta.json               format, step, data position, engine counters, optimizer groups and
                                hyper-parameters, world size, ZeRO stage, precision, seed, run config,
                                export metadata
    latest                      name of the newest complete checkpoint (written by atomic rename)

Every tensor is whole (consolidated over the ZeRO ranks by :mod:`stemforge.train.zero_state`), so a
checkpoint does not depend on the world size or the ZeRO stage that wrote it. Rank 0 writes the
files into ``.step-XXXXXXXX.tmp``, renames the folder into place, updates ``latest`` and deletes all
but the newest ``keep_last``. A run killed at any moment leaves either the previous checkpoint or
the new one, never a half-written one. ``export_checkpoint`` writes ``model.safetensors`` +
``config.json`` (the raw or EMA weights of the exported model), the format that
:func:`load_exported` and the other apps read.

Checkpoints of stemforge-train 0.1.0 (DeepSpeed's ``torch.save`` shards in ``checkpoint/``) are
refused: loading them would unpickle, which can run arbitrary code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file

from stemforge.train.zero_state import FullState

CHECKPOINT_RE = re.compile(r"^step-(\d{8})$")
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OPTIMIZER_FILE = "optimizer.safetensors"
EMA_FILE = "ema.safetensors"
META_FILE = "meta.json"
CHECKPOINT_FORMAT = "stemforge-train-checkpoint"
CHECKPOINT_FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete or not a stemforge-train checkpoint."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def write_json_atomic(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def save_safetensors_atomic(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
    os.replace(tmp, path)


def list_checkpoints(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and CHECKPOINT_RE.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1)))  # type: ignore[union-attr]


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint named by ``latest`` (or the newest complete folder if that file is missing)."""
    pointer = root / "latest"
    if pointer.is_file():
        candidate = root / pointer.read_text().strip()
        if (candidate / "meta.json").is_file():
            return candidate
    complete = [p for p in list_checkpoints(root) if (p / "meta.json").is_file()]
    return complete[-1] if complete else None


def finalize_checkpoint(
    root: Path,
    tmp_dir: Path,
    step: int,
    meta: Mapping[str, Any],
    tensors: Mapping[str, Mapping[str, torch.Tensor]],
    keep_last: int,
) -> Path:
    """Rank 0: write ``tensors`` (file name -> tensors) and ``meta.json`` into ``tmp_dir`` and publish it."""
    if tmp_dir.exists():  # left by a run killed while writing: start it afresh
        shutil.rmtree(tmp_dir)
    tmp_dir.mkdir(parents=True)
    for file_name, named in tensors.items():
        save_safetensors_atomic(tmp_dir / file_name, named, {"format": CHECKPOINT_FORMAT})
    # meta.json last: a folder is a complete checkpoint only once it exists.
    write_json_atomic(tmp_dir / META_FILE, dict(meta))
    final = root / checkpoint_name(step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp_dir, final)
    write_text_atomic(root / "latest", final.name + "\n")
    for old in list_checkpoints(root)[: max(0, len(list_checkpoints(root)) - keep_last)]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".step-*.tmp"):
        if stale != tmp_dir:
            shutil.rmtree(stale, ignore_errors=True)
    return final


def read_meta(ckpt: Path) -> dict[str, Any]:
    """``meta.json`` of a complete checkpoint; refuses folders of other formats with the reason."""
    meta_path = ckpt / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(
            f"{ckpt}: no meta.json, so this is not a complete stemforge-train checkpoint; "
            "pass a folder such as runs/NAME/checkpoints/step-00001000"
        )
    meta = json.loads(meta_path.read_text())
    if (ckpt / "checkpoint").is_dir() or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{ckpt}: written by stemforge-train 0.1.0 as DeepSpeed torch.save (pickle) shards, which this "
            "version does not load (unpickling can run arbitrary code); export it with stemforge-train 0.1.0 "
            "in a trusted environment, or start the run again in a new run.out_dir"
        )
    if int(meta.get("format_version", 0)) > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{ckpt}: checkpoint format version {meta['format_version']} is newer than this stemforge-train "
            f"reads ({CHECKPOINT_FORMAT_VERSION}); upgrade stemforge-train"
        )
    return meta


def _safetensors_problem(path: Path) -> str | None:
    """Why ``path`` is not a well-formed safetensors file (None if it is one)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return "shorter than a safetensors header"
        header_len = int.from_bytes(head, "little")
        if header_len > size - 8:
            return "header length beyond the end of the file"
        try:
            header = json.loads(fh.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "header is not JSON"
    if not isinstance(header, dict):
        return "header is not a JSON object"
    ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    if 8 + header_len + max(ends, default=0) != size:
        return "tensor data does not end where the file ends"
    return None


def check_checkpoint_files(ckpt: Path) -> None:
    """Raise :class:`CheckpointError` unless every file of ``ckpt`` is safetensors or JSON (so no pickle).

    A safetensors file must have a JSON header whose tensor offsets end exactly at the end of the file;
    a ``.json`` file must parse. Anything else (a ``torch.save`` zip, a raw pickle, a folder) is refused.
    """
    for path in sorted(Path(ckpt).iterdir()):
        problem: str | None
        if path.is_dir():
            problem = "a folder (stemforge checkpoints hold files only)"
        elif path.suffix == ".safetensors":
            problem = _safetensors_problem(path)
        elif path.suffix == ".json":
            try:
                json.loads(path.read_text())
                problem = None
            except (UnicodeDecodeError, json.JSONDecodeError):
                problem = "not valid JSON"
        else:
            problem = "neither .safetensors nor .json"
        if problem is not None:
            raise CheckpointError(
                f"{path}: {problem}; a stemforge-train checkpoint holds only safetensors and JSON files, "
                "so this folder was altered or written by something else; resume from another checkpoint"
            )


def read_full_state(ckpt: Path) -> FullState:
    """The consolidated weights and optimizer state of a checkpoint, as CPU tensors."""
    check_checkpoint_files(ckpt)
    for name in (WEIGHTS_FILE, OPTIMIZER_FILE):
        if not (ckpt / name).is_file():
            raise CheckpointError(
                f"{ckpt}: {name} is missing; the checkpoint is incomplete, resume from an earlier one"
            )
    return FullState(weights=load_file(ckpt / WEIGHTS_FILE), optimizer=load_file(ckpt / OPTIMIZER_FILE))


def resolve_checkpoint(path: Path) -> Path:
    """Accept a checkpoint folder, a ``checkpoints/`` folder or a run folder; return the checkpoint."""
    path = Path(path)
    if (path / "meta.json").is_file():
        return path
    for root in (path, path / "checkpoints"):
        found = latest_checkpoint(root)
        if found is not None:
            return found
    raise CheckpointError(
        f"{path}: no complete checkpoint found (looked for meta.json in it, in its checkpoints/ and via "
        "'latest'); pass a run folder or a checkpoints/step-XXXXXXXX folder"
    )


def consolidated_weights(ckpt: Path, weights: Literal["ema", "raw"] = "ema") -> dict[str, torch.Tensor]:
    """Full fp32 weights of a checkpoint, named as the exported model's state dict: the EMA shadow
    (trainable parameters only) or the raw weights (the whole state dict)."""
    meta = read_meta(ckpt)
    check_checkpoint_files(ckpt)
    if weights == "ema":
        tensors = load_file(ckpt / EMA_FILE)
        return {k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")}
    prefix = str(meta.get("export_prefix", ""))
    state = load_file(ckpt / WEIGHTS_FILE)
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


STORAGE_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def export_checkpoint(
    ckpt: Path,
    out: Path,
    weights: Literal["ema", "raw"] = "ema",
    dtype: Literal["float32", "float16", "bfloat16"] = "float32",
) -> Path:
    """Write ``out/model.safetensors`` + ``out/config.json`` from a training checkpoint.

    ``dtype`` is the storage type of the floating-point tensors (``float16`` halves the file of a
    model that ships inside a package); ``load_exported`` loads them into the model's float32
    parameters, and ``config.json`` records it as ``storage_dtype``.

    EMA weights cover the trainable parameters; buffers and frozen parameters (if any) come from
    ``model.safetensors``, so an EMA export is complete too. A training module that wraps the
    exported one (a generator trained with its discriminators) names it by ``export_prefix`` in
    ``meta.json``; only that part is exported.
    """
    ckpt = resolve_checkpoint(ckpt)
    meta = read_meta(ckpt)
    state = consolidated_weights(ckpt, "raw")
    if weights == "ema":
        state.update(consolidated_weights(ckpt, "ema"))
    for name, tensor in state.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{ckpt}: tensor {name!r} holds NaN/inf; export an earlier checkpoint")
    if dtype not in STORAGE_DTYPES:
        raise CheckpointError(f"export dtype {dtype!r}: choose one of {sorted(STORAGE_DTYPES)}")
    storage = STORAGE_DTYPES[dtype]
    state = {k: (v.to(storage) if v.is_floating_point() else v) for k, v in state.items()}
    for name, tensor in state.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(
                f"{ckpt}: tensor {name!r} overflows {dtype}; export it with --dtype float32"
            )
    config = {
        "format": "stemforge-model",
        "weights": weights,
        "step": meta["step"],
        "storage_dtype": dtype,
        **meta["export"],
    }
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise CheckpointError(
            f"{out}: output folder exists and is not empty; choose a new folder or remove it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    save_file(state, tmp / WEIGHTS_FILE, metadata={"format": "pt"})
    write_json_atomic(tmp / CONFIG_FILE, config)
    if out.exists():
        out.rmdir()
    os.replace(tmp, out)
    return out


PIPELINE_TASKS = ("ldm", "midi")
"""The tasks whose runs are pipelines (``stemforge-train export`` writes them as pipeline folders by
default); the other tasks' runs are pipeline components (codecs), exported flat."""


@dataclass(frozen=True)
class RecordedCodec:
    """The codec folder an ``ldm`` run records (:func:`recorded_codec`)."""

    path: Path | None
    """The first recorded folder that is there (None: none is)."""
    source: str = ""
    """Where ``path`` is recorded: ``"its data.codec"`` or ``"its data.latent_cache DIR's codec"``."""
    missing: str = ""
    """Without ``path``: what was looked at and why it gave none, in one line."""


def recorded_codec(meta: Mapping[str, Any]) -> RecordedCodec:
    """The codec an ``ldm`` checkpoint's run was trained with, from the checkpoint's ``meta.json``:
    its ``data.codec`` (the export metadata's ``codec``), else the ``codec`` that ``stemforge-train
    cache`` recorded in the ``index.json`` of its ``data.latent_cache``; the first of them that is a
    folder. Recorded paths are absolute or relative to the working directory (as the commands that
    wrote them were given them)."""
    data_codec = (meta.get("export") or {}).get("codec")
    if data_codec and Path(data_codec).is_dir():
        return RecordedCodec(Path(data_codec), "its data.codec")
    notes = [f"data.codec {data_codec} {_not_there(data_codec)}" if data_codec else "no data.codec"]
    data = (meta.get("config") or {}).get("data")
    cache = data.get("latent_cache") if isinstance(data, Mapping) else None
    if not cache:
        notes.append("no data.latent_cache")
        return RecordedCodec(None, missing="; ".join(notes))
    cache_codec, why = _cache_codec(Path(cache))
    if cache_codec is not None:
        return RecordedCodec(cache_codec, f"its data.latent_cache {cache}'s codec")
    notes.append(f"data.latent_cache {cache} {why}")
    return RecordedCodec(None, missing="; ".join(notes))


def _cache_codec(cache: Path) -> tuple[Path | None, str]:
    """The codec folder that a latent cache's ``index.json`` names, or None and why there is none."""
    if not cache.is_dir():
        return None, _not_there(cache)
    try:
        index = json.loads((cache / "index.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, "has no index.json"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, "has an index.json that is not readable JSON"
    codec = index.get("codec") if isinstance(index, dict) else None
    if not codec:
        return None, "records no codec in its index.json"
    if not Path(codec).is_dir():
        return None, f"records the codec {codec}, which {_not_there(codec)}"
    return Path(codec), ""


def _not_there(path: str | Path) -> str:
    relative = "" if Path(path).is_absolute() else f", as seen from the working directory {Path.cwd()}"
    return f"is not there{relative}"


def export_pipeline(
    ckpt: Path,
    out: Path,
    weights: Literal["ema", "raw"] = "ema",
    dtype: Literal["float32", "float16", "bfloat16"] = "float32",
    codec: Path | None = None,
) -> Path:
    """Write a stemforge-pipelines folder (``pipeline.json`` + one folder per component) from a
    training checkpoint of the ``ldm`` or ``midi`` task, ready for ``from_pretrained`` and every
    stemforge-insert / stemforge-evaluate command.

    An LDM needs its codec: ``codec`` (a ``Codec.save`` folder), else the one the run records
    (:func:`recorded_codec`: its ``data.codec``, else the codec of its ``data.latent_cache``).
    Written atomically: a failure leaves no ``out``.
    """

    from stemforge.pipelines import MultiTrackPipeline, VoiceInsertionPipeline

    ckpt = resolve_checkpoint(ckpt)
    export = read_meta(ckpt).get("export", {})
    task = export.get("task")
    if task not in PIPELINE_TASKS:
        raise CheckpointError(
            f"{ckpt}: a {task!r} run is a pipeline component, not a pipeline; export it without --format "
            "pipeline (a codec goes into a pipeline as its codec/ folder)"
        )
    out = Path(out)
    if out.exists():
        raise CheckpointError(f"{out}: already exists; choose a new folder for the pipeline")
    codec_dir: Path | None = None
    if task == "ldm":
        fix = "pass --codec DIR (the codec it was trained with, `Codec.save` format)"
        if codec is not None:
            codec_dir = Path(codec)
        else:
            found = recorded_codec(read_meta(ckpt))
            if found.path is None:
                raise CheckpointError(f"{ckpt}: found no codec for the LDM ({found.missing}); {fix}")
            codec_dir = found.path
        if not (codec_dir / "config.json").is_file():
            raise CheckpointError(
                f"{ckpt}: the LDM's codec folder {codec_dir} has no config.json, so it is not a codec folder; {fix}"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        flat = export_checkpoint(ckpt, work / out.name, weights=weights, dtype="float32")
        if codec_dir is not None:
            shutil.copytree(codec_dir, flat / "codec")
        cls: Any = VoiceInsertionPipeline if task == "midi" else MultiTrackPipeline
        pipe = cls.from_pretrained(flat)
        storage = None if dtype == "float32" else STORAGE_DTYPES[dtype]
        pipe.save_pretrained(out, storage)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _model_classes() -> dict[str, Any]:
    """The classes an export's ``model_class`` may name (a registry: a class path read from a file is
    never imported)."""
    from stemforge.codec import AutoencoderKL, HiFiGAN, WaveformAutoencoder
    from stemforge.pipelines import StyleConditionedUNet
    from stemforge.pipelines.voice_model import VoiceInsertionModel
    from stemforge.unet3d import UNet3D

    return {
        "stemforge.codec.WaveformAutoencoder": WaveformAutoencoder,
        "stemforge.codec.AutoencoderKL": AutoencoderKL,
        "stemforge.codec.HiFiGAN": HiFiGAN,
        "stemforge.unet3d.UNet3D": UNet3D,
        "stemforge.pipelines.StyleConditionedUNet": StyleConditionedUNet,
        # the name exports written before the class moved to stemforge-pipelines record
        "stemforge.train.tasks.style_unet.StyleConditionedUNet": StyleConditionedUNet,
        "stemforge.train.tasks.midi.VoiceInsertionModel": VoiceInsertionModel,
        "stemforge.pipelines.voice_model.VoiceInsertionModel": VoiceInsertionModel,
    }


def load_exported(folder: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild an exported model from ``config.json`` alone and load ``model.safetensors`` (strict)."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if (folder / "pipeline.json").is_file():
        raise CheckpointError(
            f"{folder}: a stemforge-pipelines folder, not a flat export; export the run with "
            "`stemforge-train export RUN OUT --format flat` (model.safetensors + config.json)"
        )
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(
            f"{folder}: expected {CONFIG_FILE} and {WEIGHTS_FILE}; create them with `stemforge-train export`"
        )
    config = json.loads(config_path.read_text())
    classes = _model_classes()
    cls = classes.get(str(config.get("model_class")))
    if cls is None:
        raise CheckpointError(
            f"{config_path}: model_class {config.get('model_class')!r} is not a stemforge model; known classes "
            f"are {sorted(classes)}"
        )
    model = cls.from_config(config["model_config"])
    model.load_state_dict(load_file(weights_path), strict=True)
    return model.eval(), config
