"""Reading the user's audio: any sample rate, from half a second to a limit, mono (or averaged with
``--downmix``).

Everything the header allows is checked before a sample is read, so a one-hour file is refused at
once; then the whole file is read, so that a file cut short (an interrupted copy or download) is
refused before any model is loaded. :func:`load_input_audio` keeps the file's rate;
:meth:`InputAudio.at_rate` resamples to the model's rate with ``stemforge.data.resample``
(band-limited sinc) once the model is known.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch

from stemforge.insert.errors import InsertError

#: Default refusal threshold: longer files are almost always a mistake (a DJ set, a podcast).
DEFAULT_MAX_SECONDS = 600.0
#: Shorter files are refused: a click or a failed export, not music the models can continue or
#: separate (the demonstration model's segment is 1.28 s, MSG-LD's 10.24 s; the rest is padding).
MIN_SECONDS = 0.5
_FORMATS = "a WAV, FLAC or OGG file"


@dataclass(frozen=True)
class InputAudio:
    """A mono waveform and what is needed to write results back at the file's rate and length."""

    path: Path
    wave: torch.Tensor
    """(N,) float32 at ``model_rate`` (the file's own rate until :meth:`at_rate`)."""
    model_rate: int
    original_rate: int
    original_samples: int

    @property
    def seconds(self) -> float:
        return self.original_samples / self.original_rate

    def at_rate(self, model_rate: int) -> InputAudio:
        """The same audio resampled to ``model_rate``."""
        if model_rate == self.model_rate:
            return self
        from stemforge.data import resample

        wave = resample(self.wave, self.model_rate, model_rate).float()
        return replace(self, wave=wave, model_rate=model_rate)


def load_input_audio(
    path: Path,
    *,
    what: str = "input",
    downmix: bool = False,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> InputAudio:
    """Read and check ``path`` at its own rate: exists, is audio, holds between ``MIN_SECONDS`` and
    ``max_seconds``, is mono (or ``downmix``), is complete. Every problem is an :class:`InsertError`
    naming ``what``, the file and the fix."""
    from stemforge.data import AudioError, audio_info, read_audio, truncated_wav

    path = Path(path)
    if not path.exists():
        raise InsertError(f"{what} {path}: no such file; check the path")
    if path.is_dir():
        raise InsertError(f"{what} {path}: is a folder; give an audio file (WAV, FLAC or OGG)")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise InsertError(
            f"{what} {path}: cannot be read ({err.strerror or err}); check its permissions"
        ) from err
    if size == 0:
        raise InsertError(f"{what} {path}: the file is empty (0 bytes); give {_FORMATS} that holds audio")
    try:
        frames, rate, channels = audio_info(path)
    except AudioError as err:
        raise InsertError(
            f"{what} {path}: cannot read it as audio, it is not {_FORMATS} (or its header is damaged); "
            "give a WAV, FLAC or OGG file"
        ) from err
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
    cut = truncated_wav(path)
    if cut is not None:
        raise InsertError(
            f"{what} {path}: the file is truncated: its header announces {cut[0]:.2f} s of audio but only "
            f"{cut[1]:.2f} s are there (an interrupted copy or download?); copy or export it again"
        )
    try:
        wave, _ = read_audio(path, mono=True)
    except AudioError as err:
        if err.__cause__ is None:  # decoded, but unusable (NaN samples): stemforge-data says why
            raise InsertError(f"{what} {err}") from err
        raise InsertError(
            f"{what} {path}: the audio data cannot be decoded, the file is truncated or damaged "
            f"({' '.join(str(err.__cause__).split())}); copy or export it again"
        ) from err
    if wave.shape[-1] < frames:
        raise InsertError(
            f"{what} {path}: the file is truncated: its header announces {seconds:.2f} s of audio but only "
            f"{wave.shape[-1] / rate:.2f} s can be decoded; copy or export it again"
        )
    if seconds < MIN_SECONDS:
        raise InsertError(
            f"{what} {path}: lasts {seconds:.2f} s, shorter than the {MIN_SECONDS} s the models need; "
            f"give a longer excerpt (at least {MIN_SECONDS} s; pad it with silence if it must be this short)"
        )
    return InputAudio(path, wave.float(), rate, rate, frames)


def read_input_audio(
    path: Path,
    model_rate: int,
    *,
    what: str = "input",
    downmix: bool = False,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> InputAudio:
    """:func:`load_input_audio`, resampled to ``model_rate``."""
    return load_input_audio(path, what=what, downmix=downmix, max_seconds=max_seconds).at_rate(model_rate)


def to_output_rate(wave: torch.Tensor, model_rate: int, rate: int, num_samples: int) -> torch.Tensor:
    """(..., N_model) at ``model_rate`` -> (..., num_samples) at ``rate`` (resampled, trimmed or padded)."""
    if rate != model_rate:
        from stemforge.data import resample

        wave = resample(wave, model_rate, rate)
    if wave.shape[-1] >= num_samples:
        return wave[..., :num_samples]
    return torch.nn.functional.pad(wave, (0, num_samples - wave.shape[-1]))
