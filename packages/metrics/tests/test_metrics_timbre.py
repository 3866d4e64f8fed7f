"""The timbre distance against an independent numpy / scipy computation, on real recordings of
different instruments, and FAD-infinity drawn without replacement (Chong & Forsyth)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.fft
import soundfile as sf
import torch

from stemforge.metrics import (
    GaussianStats,
    dct_matrix,
    fad_infinity,
    frechet_distance,
    gaussian_stats,
    mean_mfcc,
    slaney_mel_filterbank,
    timbre_distance,
)

CHORALE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "audio" / "chorale_demo_16k"


def _stem(name: str, start: float, seconds: float) -> torch.Tensor:
    audio, rate = sf.read(CHORALE / f"{name}.flac", dtype="float32")
    return torch.from_numpy(audio[round(start * rate) : round((start + seconds) * rate)])


def test_dct_matrix_is_scipys_orthonormal_dct():
    x = np.random.default_rng(0).standard_normal(64)
    ours = (dct_matrix(64) @ torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, scipy.fft.dct(x, norm="ortho"), atol=1e-12)


def test_mean_mfcc_matches_a_numpy_reference():
    wave = _stem("tenor", 1.0, 2.0)
    rate, n_fft, hop = 16000, 1024, 256
    x = np.pad(wave.double().numpy(), n_fft // 2)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = np.stack([x[i : i + n_fft] * window for i in range(0, len(x) - n_fft + 1, hop)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (frames, bins)
    mel = power @ slaney_mel_filterbank(rate, n_fft, 64).double().numpy().T
    energy = mel.sum(1)
    kept = mel[energy >= energy.max() * 1e-6]
    expected = scipy.fft.dct(np.log(np.maximum(kept, 1e-10)), norm="ortho", axis=1)[:, 1:20].mean(0)
    ours = mean_mfcc(wave, rate)
    assert ours is not None and ours.shape == (19,)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-6, atol=1e-6)


def test_timbre_distance_separates_instruments_and_ignores_gain():
    # The demo chorale is rendered with piano (soprano), steel guitar (alto), strings (tenor) and
    # electric bass: two passages of one instrument are closer than one passage of two instruments.
    tenor_a, tenor_b, alto = _stem("tenor", 0.0, 4.0), _stem("tenor", 6.0, 4.0), _stem("alto", 0.0, 4.0)
    same = timbre_distance(tenor_a, tenor_b, 16000)
    other = timbre_distance(tenor_a, alto, 16000)
    assert 0 < same < 0.6 * other
    assert timbre_distance(tenor_a, 0.25 * tenor_a, 16000) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(timbre_distance(tenor_a, torch.zeros(16000), 16000))
    with pytest.raises(ValueError, match="mono waveform"):
        timbre_distance(torch.zeros(2, 100), tenor_a, 16000)


def test_fad_infinity_without_replacement_ends_at_the_plain_fad():
    gen = torch.Generator().manual_seed(3)
    d = 8
    reference = torch.randn(4000, d, generator=gen, dtype=torch.float64)
    evaluated = torch.randn(3000, d, generator=gen, dtype=torch.float64) * 1.3 + 0.2
    ref = gaussian_stats(reference)
    result = fad_infinity(ref, evaluated, min_n=100, steps=10, generator=gen, replace=False)
    whole = gaussian_stats(evaluated)
    plain = frechet_distance(ref.mean, ref.cov, whole.mean, whole.cov)
    assert result.points[-1] == (3000, pytest.approx(plain, rel=1e-12))
    # Truth from the generating Gaussians: 8 x 0.2^2 + 8 x (1.3 - 1)^2 = 1.04; the intercept removes
    # most of the small-n bias (the n = 100 point lies well above it).
    true = frechet_distance(torch.zeros(d), torch.eye(d), torch.full((d,), 0.2), 1.69 * torch.eye(d))
    assert result.points[0][1] > true * 1.05
    assert result.value == pytest.approx(true, rel=0.15)
    assert isinstance(ref, GaussianStats)
