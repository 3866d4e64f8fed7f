"""Any-length processing in the latent domain: overlapping chunks, crossfaded or continued
(DESIGN.md, "Length").

The latent of a long file is cut into chunks of ``chunk_frames`` latent frames that overlap by
``overlap_frames`` (``stemforge.codec.chunk_bounds``: equal-length chunks, the last one ending at the
end, so chunks batch together). The time axis of every latent is the second to last, (..., C, T, F).

- :func:`run_chunked` (separation, insertion, accompaniment: every chunk is tied to the input mix):
  each chunk is sampled on its own, in batches; the results are blended with complementary linear
  ramps over every overlap, normalised so that the weights of every frame sum to one (a partition
  of unity, as in the codec's own chunked coding).
- :func:`run_continued` (generation, arrangement: nothing ties independent chunks together, so they
  would be unrelated music glued by a crossfade): chunks are sampled one after the other, chunk k
  receiving the frames already generated in its span as known context, which it keeps exactly
  (inpainting over time, as in the continuation of Lugmayr et al. 2022 and MSG-LD's arrangement).
  The overlap then holds one value, so there is nothing to crossfade: each chunk adds its new frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

ChunkFn = Callable[[dict[str, Tensor], list[int]], Tensor]


def chunk_plan(
    num_frames: int, chunk_frames: int, overlap_frames: int, multiple: int = 1
) -> tuple[int, list[tuple[int, int]]]:
    """(padded frame count, [start, end) chunks). Frames are padded to a multiple of ``multiple``
    (the U-Net's downsampling factor); chunk lengths are multiples of it too."""
    from stemforge.codec import chunk_bounds

    if num_frames < 1:
        raise ValueError(f"chunk_plan: num_frames={num_frames}; need at least one latent frame")
    padded = math.ceil(num_frames / multiple) * multiple
    chunk = max(multiple, (chunk_frames // multiple) * multiple)
    if padded <= chunk:
        return padded, [(0, padded)]
    overlap = min(max(0, overlap_frames), chunk - multiple)
    return padded, chunk_bounds(padded, chunk, overlap)


def crossfade_weights(bounds: list[tuple[int, int]], num_frames: int) -> list[Tensor]:
    """Per-chunk frame weights (float64) that ramp linearly over each overlap and sum to 1 per frame."""
    raw = []
    for i, (start, end) in enumerate(bounds):
        w = torch.ones(end - start, dtype=torch.float64)
        if i > 0 and bounds[i - 1][1] > start:
            fade = bounds[i - 1][1] - start
            w[:fade] = (torch.arange(fade, dtype=torch.float64) + 0.5) / fade
        if i + 1 < len(bounds) and end > bounds[i + 1][0]:
            fade = end - bounds[i + 1][0]
            w[-fade:] = torch.minimum(
                w[-fade:], (torch.arange(fade, 0, -1, dtype=torch.float64) - 0.5) / fade
            )
        raw.append(w)
    total = torch.zeros(num_frames, dtype=torch.float64)
    for (start, end), w in zip(bounds, raw):
        total[start:end] += w
    if bool((total <= 0).any()):
        raise ValueError("crossfade_weights: the chunks do not cover every frame")
    return [w / total[start:end] for (start, end), w in zip(bounds, raw)]


def pad_frames(latent: Tensor, num_frames: int) -> Tensor:
    """Zero-pad (..., T, F) at the end of T to ``num_frames``."""
    extra = num_frames - latent.shape[-2]
    return torch.nn.functional.pad(latent, (0, 0, 0, extra)) if extra > 0 else latent


def run_chunked(
    sample: ChunkFn,
    inputs: Mapping[str, Tensor],
    bounds: list[tuple[int, int]],
    num_frames: int,
    *,
    batch_size: int = 1,
    on_chunks_done: Callable[[int], None] | None = None,
) -> Tensor:
    """Run ``sample(chunk_inputs, chunk_indices)`` over batches of chunks and crossfade the results.

    ``inputs``: tensors (1, ..., T, F) with T = ``num_frames`` (the mixture latent, given stems ...);
    each call receives them cut to its chunks and stacked along the batch axis, and returns
    (n, S, C, T_chunk, F). The result is (1, S, C, num_frames, F).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; give at least 1")
    weights = crossfade_weights(bounds, num_frames)
    out: Tensor | None = None
    for first in range(0, len(bounds), batch_size):
        indices = list(range(first, min(first + batch_size, len(bounds))))
        chunk_inputs = {
            key: torch.cat([value[..., bounds[i][0] : bounds[i][1], :] for i in indices], 0)
            for key, value in inputs.items()
        }
        result = sample(chunk_inputs, indices)
        if out is None:
            out = torch.zeros((1, *result.shape[1:-2], num_frames, result.shape[-1]), dtype=torch.float64)
        for row, i in enumerate(indices):
            start, end = bounds[i]
            w = weights[i].to(result.device)[:, None]
            out[0, ..., start:end, :] += (result[row].double() * w).cpu()
        if on_chunks_done is not None:
            on_chunks_done(len(indices))
    assert out is not None
    return out.float()


def run_continued(
    sample: ChunkFn,
    inputs: Mapping[str, Tensor],
    bounds: list[tuple[int, int]],
    num_frames: int,
    *,
    on_chunks_done: Callable[[int], None] | None = None,
) -> Tensor:
    """Run ``sample(chunk_inputs, [k])`` chunk after chunk, each continuing the frames before it.

    ``inputs`` as in :func:`run_chunked`; chunk k's inputs also hold ``"known"`` (1, 1, 1, T_chunk,
    1) bool, True on the frames already generated by earlier chunks (none for chunk 0), and, for
    k > 0, ``"context"`` (1, S, C, T_chunk, F), the latents generated so far over its span (zeros
    where none are). A sampler must return the known frames unchanged (inpainting keeps them
    exactly); only the frames after them are taken from chunk k.
    The result is (1, S, C, num_frames, F).
    """
    out: Tensor | None = None
    done = 0  # frames [0, done) are final
    for index, (start, end) in enumerate(bounds):
        if start > done:
            raise ValueError(f"run_continued: chunk {index} starts at frame {start}, after a gap at {done}")
        chunk_inputs = {key: value[..., start:end, :] for key, value in inputs.items()}
        known = torch.zeros(1, 1, 1, end - start, 1, dtype=torch.bool)
        known[..., : max(0, done - start), :] = True
        chunk_inputs["known"] = known
        if out is not None:
            chunk_inputs["context"] = out[..., start:end, :]
        result = sample(chunk_inputs, [index])
        if out is None:
            out = torch.zeros((1, *result.shape[1:-2], num_frames, result.shape[-1]))
        new = max(done, start)
        out[..., new:end, :] = result[..., new - start :, :].to(out)
        done = max(done, end)
        if on_chunks_done is not None:
            on_chunks_done(1)
    assert out is not None
    return out
