"""Reading the user's audio: any length (up to a limit) and any sample rate, mono only.

Every check that the header allows runs before a sample is read, so a one-hour file is refused at
once; audio is resampled to the model's rate with ``stemforge.data.resample`` (band-limited sinc).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from stemforge.insert.errors import InsertError

#: Default refusal threshold: longer files are almost always a mistake (a DJ set, a podcast).
DEFAULT_MAX_SECONDS = 600.0


@dataclass(frozen=True)
class InputAudio:
    """A mono waveform at the model's rate and what is needed to write results back."""

    path: Path
    wave: torch.Tensor
    """(N,) float32 at ``model_rate``."""
    model_rate: int
    original_rate: int
    original_samples: int

    @property
    def seconds(self) -> float:
        return self.original_samples / self.original_rate


def read_input_audio(
    path: Path,
    model_rate: int,
    *,
    what: str = "input",
    downmix: bool = False,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> InputAudio:
    """Read ``path`` for the model: checks existence, channels and length from the header first."""
    from stemforge.data import AudioError, audio_info, read_audio

    path = Path(path)
    if not path.exists():
        raise InsertError(f"{what} {path}: no such file; check the path")
    if path.is_dir():
        raise InsertError(f"{what} {path}: is a folder; give an audio file (WAV, FLAC or OGG)")
    try:
        frames, rate, channels = audio_info(path)
    except AudioError as err:
        raise InsertError(f"{what} {err}") from err
    if frames == 0:
        raise InsertError(f"{what} {path}: the file holds no samples; give a non-empty audio file")
    seconds = frames / rate
    if seconds > max_seconds:
        raise InsertError(
            f"{what} {path}: lasts {seconds:.0f} s, longer than --max-seconds {max_seconds:.0f}; "
            "cut it into parts (e.g. with sox or ffmpeg) or raise --max-seconds"
        )
    if channels != 1 and not downmix:
        raise InsertError(
            f"{what} {path}: has {channels} channels but the models work on mono audio; "
            "pass --downmix to average the channels, or convert the file to mono first"
        )
    try:
        wave, _ = read_audio(path, mono=True)
    except AudioError as err:
        raise InsertError(f"{what} {err}") from err
    if rate != model_rate:
        from stemforge.data import resample

        wave = resample(wave, rate, model_rate)
    return InputAudio(path, wave.float(), model_rate, rate, frames)


def to_output_rate(wave: torch.Tensor, model_rate: int, rate: int, num_samples: int) -> torch.Tensor:
    """(..., N_model) at ``model_rate`` -> (..., num_samples) at ``rate`` (resampled, trimmed or padded)."""
    if rate != model_rate:
        from stemforge.data import resample

        wave = resample(wave, model_rate, rate)
    if wave.shape[-1] >= num_samples:
        return wave[..., :num_samples]
    return torch.nn.functional.pad(wave, (0, num_samples - wave.shape[-1]))
