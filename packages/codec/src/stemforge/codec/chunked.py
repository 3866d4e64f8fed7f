"""Chunked overlap-add coding for audio of any length in bounded memory.

The signal is cut into chunks of ``chunk_frames`` latent frames that overlap by ``overlap_frames``.
Each chunk is coded with ``context_frames`` of real signal on each side (where the signal has it),
so that the zero padding and the reflect padding of the networks see true neighbours; the context
is then cut away and neighbouring chunks are crossfaded with complementary linear ramps over the
overlap, normalised by the summed weights (a partition of unity). Only one chunk is in the network
at a time: peak activation memory depends on ``chunk_frames + 2 * context_frames``, not on the
length of the file. The same scheme serves encoding (waveform -> latent, weights on latent frames)
and decoding (latent -> waveform, weights on samples).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["chunk_bounds", "overlap_add"]


def chunk_bounds(num_frames: int, chunk_frames: int, overlap_frames: int) -> list[tuple[int, int]]:
    """[start, end) frame ranges of length ``chunk_frames`` (the last one ends at ``num_frames``)."""
    if chunk_frames <= overlap_frames or overlap_frames < 0:
        raise ValueError(
            f"chunked coding: need 0 <= overlap_frames < chunk_frames, got overlap {overlap_frames}, "
            f"chunk {chunk_frames}; lower the overlap or raise the chunk size"
        )
    if num_frames <= chunk_frames:
        return [(0, num_frames)]
    step = chunk_frames - overlap_frames
    count = math.ceil((num_frames - overlap_frames) / step)
    starts = sorted({min(i * step, num_frames - chunk_frames) for i in range(count)})
    return [(s, s + chunk_frames) for s in starts]


def _ramp_weights(length: int, fade_in: int, fade_out: int, dtype: torch.dtype) -> Tensor:
    weights = torch.ones(length, dtype=dtype)
    if fade_in:
        weights[:fade_in] = (torch.arange(fade_in, dtype=dtype) + 0.5) / fade_in
    if fade_out:
        weights[length - fade_out :] = torch.minimum(
            weights[length - fade_out :], (torch.arange(fade_out, 0, -1, dtype=dtype) - 0.5) / fade_out
        )
    return weights


def overlap_add(
    code: Callable[[Tensor], Tensor],
    source: Tensor,
    num_frames: int,
    in_per_frame: int,
    out_per_frame: int,
    chunk_frames: int,
    overlap_frames: int,
    context_frames: int,
) -> Tensor:
    """Apply ``code`` chunk by chunk along the last axis of ``source`` and crossfade the results.

    ``source`` (..., num_frames * in_per_frame); ``code`` maps (..., k * in_per_frame) to
    (..., k * out_per_frame) with any leading output axes; the result is
    (..., num_frames * out_per_frame). ``in_per_frame``/``out_per_frame`` are 1 for latent frames and
    the hop for samples, so the same routine encodes (wave -> latent) and decodes (latent -> wave).
    """
    bounds = chunk_bounds(num_frames, chunk_frames, overlap_frames)
    if len(bounds) == 1:
        return code(source)
    total = None
    weight_sum = torch.zeros(num_frames * out_per_frame, dtype=source.dtype, device=source.device)
    for index, (start, end) in enumerate(bounds):
        left = min(context_frames, start)
        right = min(context_frames, num_frames - end)
        piece = source[..., (start - left) * in_per_frame : (end + right) * in_per_frame]
        coded = code(piece)
        coded = coded[..., left * out_per_frame : coded.shape[-1] - right * out_per_frame]
        fade_in = 0 if index == 0 else (bounds[index - 1][1] - start) * out_per_frame
        fade_out = 0 if index == len(bounds) - 1 else (end - bounds[index + 1][0]) * out_per_frame
        weights = _ramp_weights(coded.shape[-1], fade_in, fade_out, source.dtype).to(source.device)
        if total is None:
            total = torch.zeros(
                (*coded.shape[:-1], num_frames * out_per_frame), dtype=coded.dtype, device=coded.device
            )
        total[..., start * out_per_frame : end * out_per_frame] += coded * weights
        weight_sum[start * out_per_frame : end * out_per_frame] += weights
    assert total is not None
    return total / weight_sum
