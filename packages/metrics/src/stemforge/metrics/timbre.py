"""A simple timbre distance between two recordings: the Euclidean distance of their mean MFCC
vectors, loudness (c0) left out.

MFCCs as in Davis & Mermelstein (1980) and most music-similarity work since (e.g. Aucouturier &
Pachet, "Music similarity measures: what's the use?", ISMIR 2002, who model a song's timbre by the
distribution of its MFCCs; here only the mean is kept):

- power spectrogram: Hann window of about 64 ms (``n_fft`` the power of two nearest 0.064 x rate),
  hop ``n_fft / 4``;
- ``n_mels`` Slaney-scale mel bands from 0 Hz to the Nyquist frequency
  (:func:`stemforge.metrics.musicnn.slaney_mel_filterbank`), natural log of the band energies
  (floored at 1e-10);
- frames more than ``silence_db`` below the recording's loudest frame are dropped, so that rests
  between notes do not count as a timbre;
- MFCC = orthonormal DCT-II of each frame's log-mel vector; coefficients 1 .. ``n_mfcc`` - 1 are
  kept (c0, the frame's overall level, is dropped, so a gain change does not move the distance);
- a recording's timbre vector is the mean MFCC over its kept frames, and the distance between two
  recordings is the Euclidean norm of the difference of their vectors (natural-log units).

The two recordings need not have the same length or content (a generated stem against a reference
of another passage); they must have the same sample rate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from stemforge.metrics.musicnn import slaney_mel_filterbank

__all__ = ["dct_matrix", "mean_mfcc", "timbre_distance"]


def dct_matrix(n: int) -> Tensor:
    """(n, n) orthonormal DCT-II matrix: ``dct_matrix(n) @ x`` is scipy.fft.dct(x, norm="ortho")."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    matrix = torch.cos(math.pi / n * (i + 0.5) * k) * math.sqrt(2.0 / n)
    matrix[0] /= math.sqrt(2.0)
    return matrix


def _n_fft(sample_rate: int) -> int:
    return 2 ** round(math.log2(0.064 * sample_rate))


def mean_mfcc(
    wave: Tensor, sample_rate: int, *, n_mfcc: int = 20, n_mels: int = 64, silence_db: float = 60.0
) -> Tensor | None:
    """(n_mfcc - 1,) float64 mean MFCC (c1 ..) of the non-silent frames of ``wave`` (N,), or None
    when the recording is silent (no frame has any energy)."""
    if wave.dim() != 1 or wave.numel() == 0:
        raise ValueError(f"expected a mono waveform (N,), got shape {tuple(wave.shape)}")
    if not 1 < n_mfcc <= n_mels:
        raise ValueError(f"n_mfcc={n_mfcc}: give a value in [2, n_mels={n_mels}]")
    n_fft = _n_fft(sample_rate)
    window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
    spec = torch.stft(
        wave.double().cpu(),
        n_fft,
        n_fft // 4,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spec.real.square() + spec.imag.square()  # (bins, frames)
    filters = slaney_mel_filterbank(sample_rate, n_fft, n_mels).double()
    mel = filters @ power  # (mels, frames)
    energy = mel.sum(0)
    if float(energy.max()) <= 0.0:
        return None
    keep = energy >= energy.max() * 10.0 ** (-silence_db / 10.0)
    log_mel = mel[:, keep].clamp_min(1e-10).log()
    mfcc = dct_matrix(n_mels) @ log_mel  # (mels, kept frames)
    return mfcc[1:n_mfcc].mean(dim=1)


def timbre_distance(
    estimate: Tensor, reference: Tensor, sample_rate: int, *, n_mfcc: int = 20, n_mels: int = 64
) -> float:
    """Euclidean distance between the mean MFCC vectors (c1 .. c19 by default) of two mono
    recordings at ``sample_rate``; NaN when either is silent."""
    a = mean_mfcc(estimate, sample_rate, n_mfcc=n_mfcc, n_mels=n_mels)
    b = mean_mfcc(reference, sample_rate, n_mfcc=n_mfcc, n_mels=n_mels)
    if a is None or b is None:
        return float("nan")
    return float((a - b).norm())
