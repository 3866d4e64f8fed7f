"""Chunk bookkeeping: chunk bounds and the crossfaded overlap-add."""

from __future__ import annotations

import itertools

import pytest
import torch

from stemforge.codec import chunk_bounds, overlap_add


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
