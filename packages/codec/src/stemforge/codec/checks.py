"""Checks that decoded audio is sound and not a failure of the model that made it.

A collapsed decoder writes a constant level; a diverged sampler writes NaN or a full-scale square
wave; a model that learnt nothing writes silence. Each of these is a file that plays and looks like
a result. :func:`audio_problems` names them from the waveform alone (and, for silence, from the
input it was made from); :func:`check_audio` raises :class:`DegenerateAudioError` naming the
component that produced the audio, so that nothing degenerate is written as if it were music.

Thresholds (full scale = 1.0):

- ``nan/inf``: any non-finite sample;
- ``constant``: peak-to-peak below 1e-4 (-80 dBFS) with a level of at least 1e-3;
- ``dc offset``: the mean is above 0.02 and above a quarter of the standard deviation (music has a
  mean within a few thousandths of zero; the collapsed HiFi-GAN wrote 0.344 with std 1e-4);
- ``clipped``: more than 0.5 % of the samples at or beyond +-0.999;
- ``silent``: RMS below 1e-4 (-80 dBFS) while the reference (the input the audio was made from) has
  an RMS of at least 1e-3 (-60 dBFS); without a reference, silence is not judged per stem (a stem
  may rest), only when every row is silent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

CONSTANT_PEAK_TO_PEAK = 1e-4
CONSTANT_MIN_LEVEL = 1e-3
DC_MIN_MEAN = 0.02
DC_MEAN_TO_STD = 0.25
CLIP_LEVEL = 0.999
CLIP_FRACTION = 0.005
SILENT_RMS = 1e-4
AUDIBLE_RMS = 1e-3


class DegenerateAudioError(ValueError):
    """Decoded audio that is NaN, constant, DC, clipped or silent; ``component`` made it."""

    def __init__(self, component: str, problems: Sequence[str]) -> None:
        self.component = component
        self.problems = list(problems)
        super().__init__(f"{component} produced degenerate audio: {'; '.join(self.problems)}")


def _rms(wave: Tensor) -> Tensor:
    return wave.double().square().mean(-1).sqrt()


def audio_problems(
    wave: Tensor, *, names: Sequence[str] | None = None, reference: Tensor | None = None
) -> list[str]:
    """What is wrong with ``wave`` (K, N) or (N,), one line per row and problem; [] when it is sound.

    ``names``: one label per row (default ``row k``). ``reference``: the input the rows were made
    from, (N',) or (K', N'); when it is audible, a silent row is a problem.
    """
    rows = wave.reshape(-1, wave.shape[-1]) if wave.dim() > 0 else wave.reshape(1, 1)
    labels = list(names) if names is not None else [f"row {k}" for k in range(rows.shape[0])]
    if len(labels) != rows.shape[0]:
        raise ValueError(f"audio_problems: {len(labels)} names for {rows.shape[0]} rows")
    audible_input = reference is not None and float(_rms(reference.reshape(-1).float())) >= AUDIBLE_RMS
    problems: list[str] = []
    silent_rows = 0
    for label, row in zip(labels, rows):
        finite = torch.isfinite(row)
        if not finite.all():
            problems.append(f"{label}: {int((~finite).sum())} NaN/inf samples")
            continue
        row = row.double()
        mean, std = float(row.mean()), float(row.std()) if row.numel() > 1 else 0.0
        peak_to_peak = float(row.max() - row.min())
        rms = float(_rms(row))
        if peak_to_peak < CONSTANT_PEAK_TO_PEAK and abs(mean) >= CONSTANT_MIN_LEVEL:
            problems.append(f"{label}: constant at {mean:.4f} (peak-to-peak {peak_to_peak:.1e})")
        elif abs(mean) > DC_MIN_MEAN and abs(mean) > DC_MEAN_TO_STD * std:
            problems.append(f"{label}: DC offset {mean:+.4f} (std {std:.4f})")
        clipped = float((row.abs() >= CLIP_LEVEL).double().mean())
        if clipped > CLIP_FRACTION:
            problems.append(f"{label}: clipped ({100 * clipped:.1f} % of samples at full scale)")
        if rms < SILENT_RMS:
            silent_rows += 1
            if audible_input:
                problems.append(f"{label}: silent (RMS {rms:.1e}) from an audible input")
    if silent_rows == rows.shape[0] and not audible_input and rows.numel() > 0:
        problems.append("every output is silent")
    return problems


def check_audio(
    wave: Tensor,
    component: str,
    *,
    names: Sequence[str] | None = None,
    reference: Tensor | None = None,
) -> None:
    """Raise :class:`DegenerateAudioError` naming ``component`` if :func:`audio_problems` finds any."""
    problems = audio_problems(wave, names=names, reference=reference)
    if problems:
        raise DegenerateAudioError(component, problems)
