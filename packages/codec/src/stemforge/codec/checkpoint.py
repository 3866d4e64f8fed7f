"""stemforge's codec checkpoint: a directory with ``model.safetensors`` and ``config.json``.

``config.json`` holds everything needed to rebuild the codec without the weights (``kind``, the
model ``config``, ``sample_rate``, ``scale_factor``, versions); the weights never go through pickle.
Both files are written to temporary names in the target directory and renamed, so a failure never
leaves a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from stemforge.codec.__about__ import __version__
from stemforge.codec.base import Codec
from stemforge.codec.mel_vae_codec import MelVAECodec
from stemforge.codec.waveform_codec import WaveformCodec

__all__ = ["CONFIG_NAME", "FORMAT", "WEIGHTS_NAME", "codec_from_config", "load_codec", "save_codec"]

FORMAT = "stemforge-codec"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CODECS: dict[str, type[Codec]] = {MelVAECodec.kind: MelVAECodec, WaveformCodec.kind: WaveformCodec}


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def checkpoint_config(codec: Codec) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "kind": codec.kind,
        "version": __version__,
        "sample_rate": codec.sample_rate,
        "scale_factor": float(codec.scale_factor),
        "config": codec.config_dict(),
        "package_versions": {"stemforge-codec": __version__, "torch": torch.__version__},
    }


def save_codec(codec: Codec, directory: str | Path) -> Path:
    """Write ``codec`` to ``directory`` (created if needed); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in codec.state_dict().items()}
    text = json.dumps(checkpoint_config(codec), indent=2) + "\n"
    _atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT}))
    _atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text))
    return directory


def _read_config(directory: Path) -> dict[str, Any]:
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(
            f"load_codec: {config_path} does not exist; pass a directory written by Codec.save()"
        )
    try:
        data = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"load_codec: {config_path} is not valid JSON ({err}); re-export the checkpoint"
        ) from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"load_codec: {config_path} is not a {FORMAT} config (missing 'format': '{FORMAT}')")
    if data.get("kind") not in CODECS:
        raise ValueError(
            f"load_codec: {config_path} has unknown kind {data.get('kind')!r}; known: {sorted(CODECS)}"
        )
    return data


def codec_from_config(data: dict[str, Any]) -> Codec:
    """Rebuild an untrained codec (with the stored scale factor) from a ``config.json`` dict alone."""
    codec = CODECS[data["kind"]].from_config(data["config"])
    codec.scale_factor.fill_(float(data.get("scale_factor", 1.0)))
    return codec


def load_codec(directory: str | Path) -> Codec:
    """Rebuild a codec from ``config.json`` and load ``model.safetensors`` (strict)."""
    directory = Path(directory)
    codec = codec_from_config(_read_config(directory))
    weights_path = directory / WEIGHTS_NAME
    if not weights_path.is_file():
        raise FileNotFoundError(f"load_codec: {weights_path} does not exist; the checkpoint is incomplete")
    try:
        state = load_file(weights_path)
    except Exception as err:
        raise ValueError(f"load_codec: {weights_path} is not a readable safetensors file ({err})") from err
    try:
        missing, unexpected = codec.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ValueError(f"load_codec: {weights_path} does not match its config.json: {err}") from err
    if missing or unexpected:
        raise ValueError(
            f"load_codec: {weights_path} does not match its config.json: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}; the two files come from different models"
        )
    return codec.eval()
