"""Style grounding (Pasini, Grachten & Lattner 2024, "Bass Accompaniment Generation via Latent
Diffusion", section 3.4; the paper gives no formula, stemforge's DESIGN.md fixes this one).

At each sampling step the predicted clean latent's per-channel statistics over time are moved
toward those of a reference-style latent with strength ``lambda`` in [0, 1]:

    mu_target    = (1 - lambda) mu(x0_hat)    + lambda mu(ref)
    sigma_target = (1 - lambda) sigma(x0_hat) + lambda sigma(ref)
    x0_grounded  = (x0_hat - mu(x0_hat)) / sigma(x0_hat) * sigma_target + mu_target

with ``mu`` and ``sigma`` the mean and standard deviation over the time axis, for every other
index (stem, channel and, for mel latents, frequency), as adaptive instance normalisation (Huang &
Belongie 2017, eq. 8) does over space. ``lambda = 0`` leaves the sample unchanged; ``lambda = 1``
gives it exactly the reference's statistics. The samplers recompute the noise estimate from the
grounded latent so that the step stays at the same noise level.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class StyleGrounding:
    """A ``denoised_fn(x0, t) -> x0`` that grounds the clean estimate to ``reference``'s statistics.

    ``reference`` is a latent of the same rank as the samples (any time length; batch and stem
    axes of size 1 broadcast). ``time_dim`` is the time axis: -2 for mel latents (B, S, C, T, F),
    -1 for waveform latents (B, S, C, T). ``strength`` may also be a function of the timestep
    tensor (B,) returning a scalar, to ground more at some noise levels than others.
    """

    def __init__(
        self,
        reference: Tensor,
        strength: float | Callable[[Tensor], float] = 1.0,
        *,
        time_dim: int = -2,
        eps: float = 1e-5,
    ) -> None:
        if not callable(strength) and not 0.0 <= strength <= 1.0:
            raise ValueError(f"style grounding strength lambda = {strength} must lie in [0, 1]")
        if reference.shape[time_dim] < 2:
            raise ValueError(
                f"the reference latent has {reference.shape[time_dim]} frame(s) on axis {time_dim}; "
                "its statistics need at least 2"
            )
        ref = reference.detach().float()
        self.ref_mean = ref.mean(dim=time_dim, keepdim=True)
        self.ref_std = ref.std(dim=time_dim, keepdim=True)
        self.strength = strength
        self.time_dim = time_dim
        self.eps = eps

    def __call__(self, x0: Tensor, t: Tensor) -> Tensor:
        lam = float(self.strength(t)) if callable(self.strength) else float(self.strength)
        if lam == 0.0:
            return x0
        if x0.ndim != self.ref_mean.ndim:
            raise ValueError(
                f"the sample has rank {x0.ndim} but the reference latent has rank {self.ref_mean.ndim}; "
                "give the reference the sample's layout (size-1 axes broadcast)"
            )
        mean = x0.mean(dim=self.time_dim, keepdim=True)
        std = x0.std(dim=self.time_dim, keepdim=True)
        ref_mean = self.ref_mean.to(x0.device)
        ref_std = self.ref_std.to(x0.device)
        target_mean = (1 - lam) * mean + lam * ref_mean
        target_std = (1 - lam) * std + lam * ref_std
        return (x0 - mean) / (std + self.eps) * target_std + target_mean


def ground_style(x0: Tensor, reference: Tensor, strength: float, *, time_dim: int = -2) -> Tensor:
    """One grounding of ``x0`` toward ``reference`` (see :class:`StyleGrounding`)."""
    return StyleGrounding(reference, strength, time_dim=time_dim)(x0, torch.zeros(x0.shape[0]))
