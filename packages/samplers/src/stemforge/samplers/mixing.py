"""The mixing constraint between stems and their mixture, shared by the separation samplers.

MSG-LD defines the mixture as the plain sum of the stems (section II-C); in a latent space the sum
of stem latents is only an approximation of the mixture's latent (MSG-LD section II-B notes the
non-linear relation), so the constraint is a documented choice:

- ``"sum"``: ``y = sum_s x_s`` (MSDM's waveform constraint);
- ``"mean"``: ``y = (1 / S) sum_s x_s`` (a mixture latent on the stems' scale);
- a tensor of per-stem weights ``w`` (S,): ``y = sum_s w_s x_s``;
- a callable ``mix(stems) -> mixture`` (B, S, ...) -> (B, ...), e.g. decode, sum and re-encode. Only
  the Gaussian sampler accepts it (through autograd); the Dirac sampler must solve the constraint
  for one stem and needs a linear mixture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeAlias

import torch
from torch import Tensor

Mixing: TypeAlias = Literal["sum", "mean"] | Tensor | Callable[[Tensor], Tensor]


def linear_weights(mixing: Mixing, num_stems: int, like: Tensor) -> Tensor | None:
    """The per-stem weights (S,) of a linear mixing in ``like``'s dtype, or None for a callable."""
    dtype = like.dtype if like.is_floating_point() else torch.float32
    if isinstance(mixing, str):
        if mixing == "sum":
            return torch.ones(num_stems, device=like.device, dtype=dtype)
        if mixing == "mean":
            return torch.full((num_stems,), 1.0 / num_stems, device=like.device, dtype=dtype)
        raise ValueError(f"mixing={mixing!r} is unknown; use 'sum', 'mean', per-stem weights or a callable")
    if isinstance(mixing, Tensor):
        if mixing.shape != (num_stems,):
            raise ValueError(
                f"mixing weights have shape {tuple(mixing.shape)}; pass one weight per stem ({num_stems},)"
            )
        return mixing.to(like.device, dtype)
    if callable(mixing):
        return None
    raise TypeError(
        f"mixing must be 'sum', 'mean', a weight tensor or a callable, got {type(mixing).__name__}"
    )


def apply_mixing(stems: Tensor, mixing: Mixing) -> Tensor:
    """The mixture (B, ...) of stems (B, S, ...) under ``mixing``."""
    weights = linear_weights(mixing, stems.shape[1], stems)
    if weights is None:
        return mixing(stems)  # type: ignore[operator]
    return torch.einsum("s,bs...->b...", weights, stems)


def project_to_mixture(x0: Tensor, mixture: Tensor, target: int) -> Tensor:
    """Orthogonal projection of the non-target stems of ``x0`` (n, S, ...) onto the affine set
    ``sum of the non-target stems = mixture`` (n, ...): the residual is shared equally among them;
    stem ``target`` is left as it is. Accompaniment with a joint model uses it to keep the given
    stems' clean estimate consistent with the known mixture of those stems."""
    if not 0 <= target < x0.shape[1] or x0.shape[1] < 2:
        raise ValueError(f"target {target}: need 0 <= target < S = {x0.shape[1]} and at least two stems")
    if mixture.shape != x0[:, 0].shape:
        raise ValueError(f"mixture has shape {tuple(mixture.shape)}; expected {tuple(x0[:, 0].shape)}")
    others = [i for i in range(x0.shape[1]) if i != target]
    residual = mixture - x0[:, others].sum(1)
    out = x0.clone()
    out[:, others] = x0[:, others] + residual.unsqueeze(1) / len(others)
    return out
