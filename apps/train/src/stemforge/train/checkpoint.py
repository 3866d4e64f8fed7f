"""Atomic, resumable training checkpoints and their consolidated export.

Layout of ``<out_dir>/checkpoints/``::

    step-00000500/          one checkpoint (renamed into place only once complete)
        checkpoint/         DeepSpeed's ZeRO shards: model, optimizer partitions, client state
        ema.safetensors     EMA shadow weights + update count
        meta.json           step, data position, run config, task metadata
    latest                  name of the newest complete checkpoint (written by atomic rename)

Every rank writes its shards into ``.step-XXXXXXXX.tmp``; after a barrier rank 0 adds the EMA and
metadata, renames the folder into place, updates ``latest`` and deletes all but the newest
``keep_last``. A run killed at any moment leaves either the previous checkpoint or the new one,
never a half-written one. ``export_checkpoint`` consolidates the ZeRO shards (or takes the EMA) into
``model.safetensors`` + ``config.json``, the format that :func:`load_exported` and the other apps read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file, save_file

CHECKPOINT_RE = re.compile(r"^step-(\d{8})$")
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


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
    ema: Mapping[str, torch.Tensor],
    keep_last: int,
) -> Path:
    """Rank 0, after every rank has written its shards into ``tmp_dir``: complete and publish it."""
    save_safetensors_atomic(tmp_dir / "ema.safetensors", ema, {"format": "stemforge-ema"})
    write_json_atomic(tmp_dir / "meta.json", dict(meta))
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
    meta_path = ckpt / "meta.json"
    if not meta_path.is_file():
        raise CheckpointError(
            f"{ckpt}: no meta.json, so this is not a complete stemforge-train checkpoint; "
            "pass a folder such as runs/NAME/checkpoints/step-00001000"
        )
    return json.loads(meta_path.read_text())


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
    """Full fp32 weights of a checkpoint: the EMA shadow, or the ZeRO shards merged by DeepSpeed."""
    if weights == "ema":
        tensors = load_file(ckpt / "ema.safetensors")
        return {k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")}
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if not torch.cuda.is_available() else "cuda")
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt / "checkpoint"), tag="checkpoint")
    return {k: v.detach().float().contiguous() for k, v in state.items()}


def export_checkpoint(ckpt: Path, out: Path, weights: Literal["ema", "raw"] = "ema") -> Path:
    """Write ``out/model.safetensors`` + ``out/config.json`` from a training checkpoint.

    EMA weights cover the trainable parameters; buffers (if any) come from the consolidated ZeRO
    state, so an EMA export is complete too.
    """
    ckpt = resolve_checkpoint(ckpt)
    meta = read_meta(ckpt)
    state = consolidated_weights(ckpt, "raw")
    if weights == "ema":
        state.update(consolidated_weights(ckpt, "ema"))
    for name, tensor in state.items():
        if not torch.isfinite(tensor).all():
            raise CheckpointError(f"{ckpt}: tensor {name!r} holds NaN/inf; export an earlier checkpoint")
    config = {
        "format": "stemforge-model",
        "weights": weights,
        "step": meta["step"],
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


def load_exported(folder: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild an exported model from ``config.json`` alone and load ``model.safetensors`` (strict)."""
    import importlib

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise CheckpointError(
            f"{folder}: expected {CONFIG_FILE} and {WEIGHTS_FILE}; create them with `stemforge-train export`"
        )
    config = json.loads(config_path.read_text())
    module_name, _, class_name = config["model_class"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    model = cls.from_config(config["model_config"])
    model.load_state_dict(load_file(weights_path), strict=True)
    return model.eval(), config
