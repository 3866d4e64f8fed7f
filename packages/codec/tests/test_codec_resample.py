"""Resampling against the interpolation sum evaluated point by point, and chunk bookkeeping."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from stemforge.codec import chunk_bounds, overlap_add, resample


def reference_resample(
    x: np.ndarray, orig: int, new: int, width: int = 6, rolloff: float = 0.99
) -> np.ndarray:
    """y[j] = sum_n x[n] h(n / orig - j / new), h a Hann-windowed sinc at rolloff * min(orig, new) / 2."""
    g = math.gcd(orig, new)
    orig, new = orig // g, new // g
    base = min(orig, new) * rolloff
    out = np.zeros(math.ceil(len(x) * new / orig))
    for j in range(len(out)):
        total = 0.0
        for n in range(len(x)):
            u = (n / orig - j / new) * base
            if abs(u) < width:
                sinc = 1.0 if u == 0 else math.sin(math.pi * u) / (math.pi * u)
                total += x[n] * sinc * math.cos(math.pi * u / width / 2) ** 2 * base / orig
        out[j] = total
    return out


@pytest.mark.parametrize(("orig", "new"), [(44100, 16000), (16000, 22050), (8000, 16000), (48000, 16000)])
def test_resample_matches_pointwise_sum(orig: int, new: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 300, dtype=torch.float64)
    ours = resample(x, orig, new)
    assert ours.shape == (2, math.ceil(300 * new / orig))
    # float64 on both sides: only summation order differs.
    np.testing.assert_allclose(
        ours[1].numpy(), reference_resample(x[1].numpy(), orig, new), rtol=0, atol=1e-10
    )


def test_resample_keeps_a_tone_and_rejects_bad_rates() -> None:
    t_in = torch.arange(22050, dtype=torch.float64) / 22050
    tone = torch.sin(2 * math.pi * 440 * t_in)
    out = resample(tone, 22050, 16000)
    t_out = torch.arange(out.shape[-1], dtype=torch.float64) / 16000
    interior = slice(200, -200)  # away from the zero-padded ends
    torch.testing.assert_close(
        out[interior], torch.sin(2 * math.pi * 440 * t_out)[interior], rtol=0, atol=2e-3
    )
    assert resample(tone, 16000, 16000) is tone
    with pytest.raises(ValueError, match="positive"):
        resample(tone, 0, 16000)


def test_chunk_bounds_cover_and_overlap() -> None:
    assert chunk_bounds(10, 16, 4) == [(0, 10)]
    bounds = chunk_bounds(100, 16, 4)
    assert bounds[0][0] == 0 and bounds[-1][1] == 100
    assert all(b[1] - b[0] == 16 for b in bounds)
    assert all(nxt[0] < cur[1] and cur[1] - nxt[0] >= 4 for cur, nxt in itertools.pairwise(bounds))
    with pytest.raises(ValueError, match="overlap"):
        chunk_bounds(100, 4, 4)


def test_overlap_add_is_a_partition_of_unity() -> None:
    """With an exact per-frame code the crossfade reproduces it everywhere (weights sum to one)."""
    torch.manual_seed(0)
    source = torch.randn(3, 57 * 8)

    def code(piece: torch.Tensor) -> torch.Tensor:  # frame-local: 8 samples -> 2 values per frame
        frames = piece.reshape(3, -1, 8)
        return torch.stack([frames.mean(-1), frames.std(-1)], dim=-1).reshape(3, -1)

    chunked = overlap_add(code, source, 57, 8, 2, chunk_frames=10, overlap_frames=3, context_frames=2)
    torch.testing.assert_close(chunked, code(source), rtol=1e-5, atol=1e-6)
