"""Mel-MSE and the multi-resolution STFT distance against loop-based float64 references."""

import math

import numpy as np
import pytest
import torch

from stemforge.metrics import (
    MelMSE,
    MultiResolutionSTFTDistance,
    mel_mse,
    multi_resolution_stft_distance,
    musicnn_log_mel,
)


def _toy_mel(wave: torch.Tensor) -> torch.Tensor:
    """A real log-mel front end: musicnn's (96 Slaney mels, n_fft 512, hop 256) in float32."""
    return musicnn_log_mel(wave)


def test_mel_mse_matches_loop_reference_and_aggregates():
    gen = torch.Generator().manual_seed(0)
    refs = torch.randn(3, 2, 4096, generator=gen) * 0.2
    ests = refs + 0.05 * torch.randn(3, 2, 4096, generator=gen)
    values = mel_mse(ests, refs, _toy_mel)
    for b in range(3):
        for s in range(2):
            a, r = _toy_mel(ests[b, s : s + 1])[0].double(), _toy_mel(refs[b, s : s + 1])[0].double()
            expected = sum(
                float((a[i, j] - r[i, j]) ** 2) for i in range(a.shape[0]) for j in range(a.shape[1])
            )
            assert float(values[b, s]) == pytest.approx(expected / a.numel(), rel=1e-9)
    metric = MelMSE(_toy_mel, ("x", "y"))
    metric.update(ests[:2], refs[:2])
    metric.update(ests[2:], refs[2:])
    out = metric.compute()
    assert out["x"] == pytest.approx(float(values[:, 0].mean()), rel=1e-12)
    assert out["num_clips"] == 3 and out["mean"] == pytest.approx(float(values.mean()), rel=1e-12)
    assert mel_mse(refs, refs, _toy_mel).abs().max() == 0
    with pytest.raises(ValueError, match="stem order"):
        metric.update(torch.randn(1, 3, 4096), torch.randn(1, 3, 4096))


def _np_stft_mag(x: np.ndarray, n_fft: int, hop: int, win: int) -> np.ndarray:
    """Centred, reflect-padded Hann STFT magnitude by explicit framing (window zero-padded to n_fft)."""
    pad = n_fft // 2
    xp = np.pad(x, pad, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    left = (n_fft - win) // 2
    full = np.zeros(n_fft)
    full[left : left + win] = window
    frames = [xp[i : i + n_fft] * full for i in range(0, len(xp) - n_fft + 1, hop)]
    return np.maximum(np.abs(np.fft.rfft(np.array(frames), axis=1)), 1e-7)


def test_mrstft_matches_numpy_reference():
    gen = torch.Generator().manual_seed(1)
    ref = torch.randn(2, 8000, generator=gen, dtype=torch.float64)
    est = ref + 0.3 * torch.randn(2, 8000, generator=gen, dtype=torch.float64)
    resolutions = ((512, 50, 240), (1024, 120, 600))
    ours = multi_resolution_stft_distance(est, ref, resolutions)
    for b in range(2):
        total = 0.0
        for n_fft, hop, win in resolutions:
            me, mr = (
                _np_stft_mag(est[b].numpy(), n_fft, hop, win),
                _np_stft_mag(ref[b].numpy(), n_fft, hop, win),
            )
            total += np.linalg.norm(mr - me) / np.linalg.norm(mr) + np.mean(np.abs(np.log(mr) - np.log(me)))
        assert float(ours[b]) == pytest.approx(total / len(resolutions), rel=1e-9)
    assert float(multi_resolution_stft_distance(ref, ref, resolutions).abs().max()) == 0.0
    metric = MultiResolutionSTFTDistance(resolutions)
    metric.update(est, ref)
    assert float(metric.compute()) == pytest.approx(float(ours.mean()), rel=1e-12)
    assert not math.isnan(float(ours.mean()))
    with pytest.raises(ValueError, match="too short"):
        multi_resolution_stft_distance(torch.randn(100), torch.randn(100))
