"""Audio file I/O with soundfile: WAV, FLAC and OGG (Vorbis).

Mono policy: ``read_audio(..., mono=True)`` (the default) averages the channels, which keeps the
level of a centred source; ``mono=False`` returns every channel. Samples are float32 in [-1, 1].
A file at another rate than the one asked for is resampled with ``stemforge.data.resample``.
Writes go to a temporary file in the target folder and are renamed, so a failure never leaves a
half-written file.
"""

from __future__ import annotations

import os
import struct
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


def truncated_wav(path: str | Path) -> tuple[float, float] | None:
    """(announced, present) seconds of a RIFF/WAVE file whose data chunk ends before its header says,
    else None (also for other formats). Writers that stream (data size 0 or 0xFFFFFFFF, the length
    left open) are not taken as cut. soundfile reads such a file without complaint, up to where it
    ends; this finds the cut from the header alone, without decoding."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return None
        order = "<" if head[:4] == b"RIFF" else ">"
        block_align, rate, pos = 0, 0, 12
        while pos + 8 <= size:
            handle.seek(pos)
            ident, length = struct.unpack(order + "4sI", handle.read(8))
            if ident == b"fmt ":
                fmt = handle.read(min(length, 16))
                if len(fmt) >= 14:
                    rate = struct.unpack(order + "I", fmt[4:8])[0]
                    block_align = struct.unpack(order + "H", fmt[12:14])[0]
            elif ident == b"data":
                present = size - pos - 8
                if length in (0, 0xFFFFFFFF) or present >= length or not (block_align and rate):
                    return None
                bytes_per_second = block_align * rate
                return length / bytes_per_second, present / bytes_per_second
            pos += 8 + length + (length & 1)
    return None
