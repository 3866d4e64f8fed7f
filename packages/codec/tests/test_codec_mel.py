"""The log-mel front end against slow float64 references (explicit triangles, explicit DFT)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stemforge.codec import MelConfig, MelFrontEnd, mel_filterbank


def _slaney_mel(hz: float) -> float:
    return hz / (200.0 / 3.0) if hz < 1000.0 else 15.0 + math.log(hz / 1000.0) / (math.log(6.4) / 27.0)


def _slaney_hz(mel: float) -> float:
    return mel * (200.0 / 3.0) if mel < 15.0 else 1000.0 * math.exp((mel - 15.0) * math.log(6.4) / 27.0)


def reference_filterbank(sr: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """One triangle per band, evaluated bin by bin, each with unit area in Hz (Slaney)."""
    lo, hi = _slaney_mel(f_min), _slaney_mel(f_max)
    edges = [_slaney_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    bins = [sr / 2 * k / (n_fft // 2) for k in range(n_fft // 2 + 1)]
    out = np.zeros((n_mels, len(bins)))
    for m in range(n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for k, f in enumerate(bins):
            if left <= f <= centre:
                w = (f - left) / (centre - left)
            elif centre < f <= right:
                w = (right - f) / (right - centre)
            else:
                w = 0.0
            out[m, k] = w * 2.0 / (right - left)
    return out


def test_filterbank_matches_triangles() -> None:
    ours = mel_filterbank(16000, 1024, 64, 0.0, 8000.0).numpy()
    ref = reference_filterbank(16000, 1024, 64, 0.0, 8000.0)
    # float64 on both sides; 1e-12 relative to the largest weight covers rounding only.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12 * ref.max())
    assert (ours.sum(1) > 0).all(), "every band must catch at least one bin"


def reference_log_mel(wave: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """Reflect pad, Hann window (periodic), explicit DFT per frame, float64."""
    pad = (cfg.n_fft - cfg.hop_length) // 2
    x = np.pad(wave, (pad, pad), mode="reflect")
    n = np.arange(cfg.n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / cfg.n_fft)
    k = np.arange(cfg.n_fft // 2 + 1)
    dft = np.exp(-2j * np.pi * np.outer(k, n) / cfg.n_fft)
    filters = reference_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
    frames = []
    for start in range(0, len(x) - cfg.n_fft + 1, cfg.hop_length):
        magnitude = np.abs(dft @ (x[start : start + cfg.n_fft] * window))
        frames.append(np.log(np.maximum(filters @ magnitude, cfg.log_clamp)))
    return np.stack(frames)


@pytest.mark.parametrize("num_samples", [1600, 2345])
def test_log_mel_matches_explicit_dft(num_samples: int) -> None:
    torch.manual_seed(0)
    wave = 0.3 * torch.randn(num_samples, dtype=torch.float64)
    front_end = MelFrontEnd().double()
    ours = front_end(wave).numpy()
    ref = reference_log_mel(wave.numpy(), front_end.config)
    assert ours.shape == ref.shape == (num_samples // 160, 64)
    # The only difference is the 1e-9 under the square root of the magnitude: relative 1e-9 / |X|^2.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)


def test_reference_clip_gives_1024_by_64() -> None:
    front_end = MelFrontEnd(MelConfig.from_name("msgld"))
    wave = torch.randn(2, 3, 163840) * 0.1
    assert front_end(wave).shape == (2, 3, 1024, 64)
    assert front_end.num_frames(163840) == 1024


def test_log_mel_floor_and_tone_band() -> None:
    front_end = MelFrontEnd()
    silent = front_end(torch.zeros(3200))
    assert torch.allclose(silent, torch.full_like(silent, math.log(1e-5)))
    t = torch.arange(16000) / 16000
    tone = front_end(0.5 * torch.sin(2 * math.pi * 1000.0 * t))
    centres = [_slaney_hz(_slaney_mel(8000.0) * (m + 1) / 65) for m in range(64)]
    expected_band = int(np.argmin([abs(c - 1000.0) for c in centres]))
    assert int(tone[50].argmax()) == expected_band


def test_bad_configuration_and_short_input() -> None:
    with pytest.raises(ValueError, match="f_max"):
        mel_filterbank(16000, 1024, 64, 0.0, 9000.0)
    with pytest.raises(ValueError, match="too short"):
        MelFrontEnd()(torch.randn(100))
    with pytest.raises(ValueError, match="unknown preset"):
        MelConfig.from_name("nope")
