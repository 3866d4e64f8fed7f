"""Chunk plans and crossfades against a slow reference, on random latents."""

from __future__ import annotations

import itertools

import pytest
import torch

from stemforge.pipelines.chunking import chunk_plan, crossfade_weights, pad_frames, run_chunked


def reference_crossfade(
    chunks: list[torch.Tensor], bounds: list[tuple[int, int]], num_frames: int
) -> torch.Tensor:
    """Frame by frame: the weighted mean of every chunk covering the frame, weights from the ramps."""
    out = torch.zeros((*chunks[0].shape[:-2], num_frames, chunks[0].shape[-1]), dtype=torch.float64)
    for frame in range(num_frames):
        total = 0.0
        acc = torch.zeros_like(out[..., 0, :])
        for i, ((start, end), chunk) in enumerate(zip(bounds, chunks)):
            if not start <= frame < end:
                continue
            w = 1.0
            if i > 0 and bounds[i - 1][1] > start and frame < bounds[i - 1][1]:
                fade = bounds[i - 1][1] - start
                w = min(w, (frame - start + 0.5) / fade)
            if i + 1 < len(bounds) and end > bounds[i + 1][0] and frame >= bounds[i + 1][0]:
                fade = end - bounds[i + 1][0]
                w = min(w, (end - frame - 0.5) / fade)
            acc += w * chunk[..., frame - start, :].double()
            total += w
        out[..., frame, :] = acc / total
    return out


@pytest.mark.parametrize(
    ("frames", "chunk", "overlap", "multiple"),
    [(7, 16, 4, 2), (93, 16, 4, 4), (160, 32, 8, 4), (61, 12, 0, 2)],
)
def test_plan_covers_all_frames_with_equal_chunks(frames, chunk, overlap, multiple):
    padded, bounds = chunk_plan(frames, chunk, overlap, multiple)
    assert padded % multiple == 0 and padded >= frames and padded - frames < multiple
    lengths = {end - start for start, end in bounds}
    assert len(lengths) == 1 and next(iter(lengths)) % multiple == 0
    assert bounds[0][0] == 0 and bounds[-1][1] == padded
    for (_, end), (start, _) in itertools.pairwise(bounds):
        assert start <= end  # no gaps


def test_weights_are_a_partition_of_unity():
    _, bounds = chunk_plan(150, 32, 8, 4)
    weights = crossfade_weights(bounds, 152)
    total = torch.zeros(152, dtype=torch.float64)
    for (start, end), w in zip(bounds, weights):
        assert (w > 0).all()
        total[start:end] += w
    torch.testing.assert_close(total, torch.ones(152, dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_run_chunked_matches_reference_on_random_chunks(batch_size):
    torch.manual_seed(0)
    padded, bounds = chunk_plan(90, 24, 6, 2)
    chunk_values = [torch.randn(2, 3, end - start, 5) for start, end in bounds]
    mix = torch.randn(1, 3, padded, 5)
    calls = []

    def sample(inputs, indices):
        calls.append(indices)
        assert inputs["mix"].shape == (len(indices), 3, bounds[0][1] - bounds[0][0], 5)
        for row, i in enumerate(indices):  # each chunk sees its own slice of the inputs
            torch.testing.assert_close(inputs["mix"][row], mix[0, :, bounds[i][0] : bounds[i][1]])
        return torch.stack([chunk_values[i] for i in indices])

    out = run_chunked(sample, {"mix": mix}, bounds, padded, batch_size=batch_size)
    expected = reference_crossfade(chunk_values, bounds, padded)
    # float32 output of float64 accumulation: one rounding.
    torch.testing.assert_close(out[0].double(), expected, rtol=1e-6, atol=1e-6)
    assert sorted(i for c in calls for i in c) == list(range(len(bounds)))
    assert max(len(c) for c in calls) <= batch_size


def test_constant_chunks_crossfade_to_constant():
    padded, bounds = chunk_plan(70, 16, 8, 2)
    out = run_chunked(lambda inputs, idx: torch.full((len(idx), 1, 1, 16, 2), 3.0), {}, bounds, padded)
    torch.testing.assert_close(out, torch.full_like(out, 3.0))


def test_pad_frames_pads_time_axis_only():
    x = torch.randn(1, 2, 5, 3)
    y = pad_frames(x, 8)
    assert y.shape == (1, 2, 8, 3)
    torch.testing.assert_close(y[..., :5, :], x)
    assert (y[..., 5:, :] == 0).all()
