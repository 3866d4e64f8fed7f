"""Resampler and BS.1770 loudness against slow, obviously correct references on random inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.data import integrated_loudness, resample
from stemforge.data.loudness import k_weighting_coefficients

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"


def reference_resample(x: np.ndarray, orig: int, new: int, k: np.ndarray, zeros: int = 64) -> np.ndarray:
    """y_k = sum_n x[n] r sinc(r (t_k - n)) kaiser(r (t_k - n) / Z), t_k = k orig / new (float64 loop)."""
    rolloff, beta = 0.9475937167399596, 14.769656459379492
    r = rolloff * min(1.0, new / orig)
    n = np.arange(len(x))
    out = []
    for kk in k:
        d = kk * orig / new - n
        u = r * d / zeros
        window = np.where(
            np.abs(u) <= 1, np.i0(beta * np.sqrt(np.clip(1 - u**2, 0, None))) / np.i0(beta), 0.0
        )
        out.append(np.sum(x * r * np.sinc(r * d) * window))
    return np.array(out)


@pytest.mark.parametrize(("orig", "new"), [(44100, 16000), (16000, 22050), (8000, 16000), (48000, 32000)])
def test_resample_matches_direct_sum(orig, new):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(400)
    y = resample(torch.from_numpy(x), orig, new)
    assert y.shape[-1] == math.ceil(400 * new / orig)
    k = np.array([0, 1, 7, y.shape[-1] // 2, y.shape[-1] - 1])
    # float64 throughout: the two sums differ only by rounding (1e-10 on unit-variance noise).
    np.testing.assert_allclose(y.numpy()[k], reference_resample(x, orig, new, k), atol=1e-10)


def test_resample_swept_sine_against_analytic_sweep():
    """A 20 Hz - 7 kHz sweep at 44.1 kHz resampled to 16 kHz equals the same sweep sampled at 16 kHz."""
    orig, new, seconds = 44100, 16000, 2.0
    f0, f1 = 20.0, 7000.0

    def sweep(t):
        return np.sin(2 * np.pi * (f0 * t + (f1 - f0) / (2 * seconds) * t**2))

    x = torch.from_numpy(sweep(np.arange(int(orig * seconds)) / orig))
    y = resample(x, orig, new).numpy()
    ref = sweep(np.arange(y.shape[0]) / new)
    # Away from the edges (zero padding) and below the pass-band edge (0.9476 * 8 kHz = 7.58 kHz)
    # the error is set by the Kaiser window's stop band: below -100 dB.
    inner = slice(2000, int(1.9 * new))
    assert 20 * np.log10(np.abs(y[inner] - ref[inner]).max()) < -100


@pytest.mark.parametrize("freq", [8500.0, 10000.0, 15000.0])
def test_resample_rejects_what_the_new_rate_cannot_hold(freq):
    """Tones above the new Nyquist frequency (8 kHz) are removed, not folded back (aliased)."""
    t = np.arange(2 * 44100) / 44100
    y = resample(torch.from_numpy(np.sin(2 * np.pi * freq * t)), 44100, 16000).numpy()
    # kaiser_best's stop band begins at 8 kHz: > 120 dB down away from the zero-padded edges.
    assert 20 * np.log10(np.abs(y[2000:-2000]).max()) < -120


def test_resample_batch_shapes_and_float32():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 1000)
    y = resample(x, 16000, 8000)
    assert y.shape == (2, 3, 500) and y.dtype == torch.float32
    torch.testing.assert_close(y[1, 2], resample(x[1, 2], 16000, 8000))
    with pytest.raises(ValueError, match="positive integers"):
        resample(x, 0, 8000)
    with pytest.raises(ValueError, match="float"):
        resample(torch.ones(10, dtype=torch.int64), 2, 1)


def reference_k_weight(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Direct-form I biquads, sample by sample (the standard's definition of the filter)."""
    y = x.astype(np.float64)
    for b, a in k_weighting_coefficients(sample_rate):
        out = np.zeros_like(y)
        x1 = x2 = y1 = y2 = 0.0
        for i, xi in enumerate(y):
            yi = b[0] * xi + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2
            out[i] = yi
            x2, x1, y2, y1 = x1, xi, y1, yi
        y = out
    return y


def reference_loudness(x: np.ndarray, sample_rate: int) -> float:
    z = reference_k_weight(x, sample_rate) ** 2
    block, step = round(0.4 * sample_rate), round(0.1 * sample_rate)
    blocks = [z[s : s + block].mean() for s in range(0, len(z) - block + 1, step)]
    kept = [p for p in blocks if -0.691 + 10 * math.log10(p) > -70]
    gate = -0.691 + 10 * math.log10(np.mean(kept)) - 10
    kept = [p for p in kept if -0.691 + 10 * math.log10(p) > gate]
    return -0.691 + 10 * math.log10(np.mean(kept))


def test_k_weighting_coefficients_at_48k_match_bs1770():
    (bs, as_), (bh, ah) = k_weighting_coefficients(48000)
    # Table 1 and 2 of ITU-R BS.1770-4.
    np.testing.assert_allclose(bs, [1.53512485958697, -2.69169618940638, 1.19839281085285], atol=1e-6)
    np.testing.assert_allclose(as_, [1.0, -1.69065929318241, 0.73248077421585], atol=1e-6)
    np.testing.assert_allclose(bh / bh[0], [1.0, -2.0, 1.0], atol=1e-9)
    np.testing.assert_allclose(ah, [1.0, -1.99004745483398, 0.99007225036621], atol=1e-6)


@pytest.mark.parametrize("sample_rate", [16000, 44100])
def test_loudness_matches_sample_by_sample_reference(sample_rate):
    rng = np.random.default_rng(1)
    # Noise with a loud and a quiet half, so both gates act.
    x = rng.standard_normal(int(1.5 * sample_rate)) * 0.1
    x[: sample_rate // 2] *= 0.01
    # The FFT filter equals the IIR filter up to its tail beyond the 0.5 s zero padding: 1e-6 LU.
    assert abs(integrated_loudness(x, sample_rate) - reference_loudness(x, sample_rate)) < 1e-6


def test_loudness_known_values():
    sr = 48000
    t = np.arange(3 * sr) / sr
    # BS.1770: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS.
    assert abs(integrated_loudness(np.sin(2 * np.pi * 997 * t), sr) - (-3.01)) < 0.01
    assert abs(integrated_loudness(0.1 * np.sin(2 * np.pi * 997 * t), sr) - (-23.01)) < 0.01
    assert integrated_loudness(np.zeros(sr), sr) == float("-inf")
    with pytest.raises(ValueError, match="mono"):
        integrated_loudness(np.zeros((2, sr)), sr)


def test_fixture_stems_are_equally_loud():
    loud = [
        integrated_loudness(sf.read(CHORALE / f"{s}.flac")[0], 16000)
        for s in ("soprano", "alto", "tenor", "bass")
    ]
    assert max(loud) - min(loud) < 0.05
