"""Audio file I/O with soundfile: WAV, FLAC and OGG (Vorbis).

Mono policy: ``read_audio(..., mono=True)`` (the default) averages the channels, which keeps the
level of a centred source; ``mono=False`` returns every channel. Samples are float32 in [-1, 1].
A file at another rate than the one asked for is resampled with ``stemforge.data.resample``.
Writes go to a temporary file in the target folder and are renamed, so a failure never leaves a
half-written file.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from stemforge.data.resample import resample

#: Output formats by file suffix: (soundfile format, default subtype).
FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "FLOAT"),
    ".flac": ("FLAC", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
}


class AudioError(ValueError):
    """An audio file or array that stemforge cannot use; the message names the file and the fix."""


def read_audio(
    path: str | os.PathLike[str],
    *,
    sample_rate: int | None = None,
    mono: bool = True,
    allow_empty: bool = False,
) -> tuple[torch.Tensor, int]:
    """Read an audio file as float32: (N,) when ``mono`` else (channels, N), and its sample rate.

    With ``sample_rate`` the audio is resampled to that rate (and that rate is returned).
    Raises :class:`AudioError` for a missing, unreadable, empty or non-finite file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such audio file; check the path")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise AudioError(
            f"{path}: cannot read audio ({err}); give a WAV, FLAC or OGG file that is not truncated"
        ) from err
    if data.shape[0] == 0 and not allow_empty:
        raise AudioError(f"{path}: the file holds no samples; give a non-empty audio file")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: the file holds NaN or infinite samples; re-export it")
    wave = torch.from_numpy(np.ascontiguousarray(data.T))
    if mono:
        wave = wave.mean(0)
    if sample_rate is not None and sample_rate != sr:
        wave = resample(wave, sr, sample_rate)
        sr = sample_rate
    return wave, int(sr)


def audio_info(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """(frames, sample_rate, channels) from the header, without reading the samples."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except Exception as err:
        raise AudioError(
            f"{path}: cannot read the audio header ({err}); is it a WAV, FLAC or OGG file?"
        ) from err
    return int(info.frames), int(info.samplerate), int(info.channels)


def write_audio(
    path: str | os.PathLike[str],
    wave: torch.Tensor | np.ndarray,
    sample_rate: int,
    *,
    subtype: str | None = None,
) -> Path:
    """Write (N,) or (channels, N) float audio atomically; the format comes from the suffix.

    Raises :class:`AudioError` for non-finite samples or an unknown suffix, before any file is written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise AudioError(f"{path}: unknown audio suffix {suffix!r}; use one of {sorted(FORMATS)}")
    if not isinstance(sample_rate, int) or sample_rate <= 0:
        raise AudioError(f"{path}: sample_rate={sample_rate!r}; give a positive integer rate in Hz")
    array = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    array = array.astype(np.float32, copy=False)
    if array.ndim not in (1, 2):
        raise AudioError(f"{path}: expected (N,) or (channels, N) audio, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise AudioError(f"{path}: the audio holds NaN or infinite samples; nothing was written")
    fmt, default_subtype = FORMATS[suffix]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        sf.write(
            tmp,
            array.T if array.ndim == 2 else array,
            sample_rate,
            format=fmt,
            subtype=subtype or default_subtype,
        )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
