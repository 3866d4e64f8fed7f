"""MSDM "Gaussian" separation (Mariani et al. 2024, section 4.2, eq. 8-9, after Jayaram & Thickstun
2020) rewritten for DDIM in latent space, as the MT-MusicLDM / MSG-LD demo page describes.

The likelihood is Gaussian, ``p(y | x(t)) = N(y; mix(x(t)), sigma_y^2 I)``, so the posterior score of
the (variance-exploding) noisy stems is the prior score plus

    grad_x log p(y | x) = J_mix(x)^T (y - mix(x)) / sigma_y^2,

``J^T r = w_s r`` for a linear mixing, a vector-Jacobian product (autograd) for a callable one.
In DDIM's variables (``x_VE = x_t / alpha_t``, ``sigma_VE = sigma_t / alpha_t``, ``eps_hat =
-sigma_VE * score``) the posterior direction is ``d = eps_hat - sigma_VE grad_x log p(y | x_VE)`` and
the step is DDIM eq. 12 with ``(x0_hat, eps_hat) = ((x_t - sigma_t d) / alpha_t, d)``.
``sigma_y`` is a constant or a function of ``sigma_VE``; the default ``sigma_y = sigma_VE`` is
MSDM's choice (the likelihood sharpens as the noise vanishes). Correction (resampling) steps as in
the Dirac sampler. Unlike the Dirac sampler, the output meets the constraint only approximately.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from stemforge.samplers._common import (
    Generators,
    Progress,
    Spacing,
    StepCallback,
    StepInfo,
    denoise,
    randn_like,
    renoise,
    steps,
    timesteps,
)
from stemforge.samplers.ddim import ddim_step
from stemforge.samplers.mixing import Mixing, apply_mixing, linear_weights
from stemforge.samplers.msdm_dirac import _check_separation_inputs
from stemforge.samplers.objectives import Model, Prediction
from stemforge.samplers.schedules import NoiseSchedule


def likelihood_grad(x_ve: Tensor, mixture: Tensor, mixing: Mixing, sigma_y: Tensor) -> Tensor:
    """``J_mix(x)^T (y - mix(x)) / sigma_y^2`` for stems ``x_ve`` (B, S, ...)."""
    weights = linear_weights(mixing, x_ve.shape[1], x_ve)
    if weights is not None:
        residual = mixture - apply_mixing(x_ve, weights)
        w = weights.reshape(1, -1, *([1] * (x_ve.ndim - 2)))
        return w * residual.unsqueeze(1) / sigma_y**2
    with torch.enable_grad():
        stems = x_ve.detach().requires_grad_(True)
        mixed = apply_mixing(stems, mixing)
        if mixed.shape != mixture.shape:
            raise ValueError(
                f"the mixing callable returned shape {tuple(mixed.shape)} but the mixture has "
                f"{tuple(mixture.shape)}; it must map (B, S, ...) stems to the mixture's shape"
            )
        residual = (mixture - mixed).detach()
        (grad,) = torch.autograd.grad(mixed, stems, grad_outputs=residual)
    return grad / sigma_y**2


def _check_stable(
    schedule: NoiseSchedule, t: float, t_next: float, gamma: Tensor, mixing: Mixing, like: Tensor
) -> None:
    """Fail before NaNs: the explicit step shrinks the constraint residual by the factor
    ``1 - (sigma_VE - sigma_VE_next) sigma_VE |w|^2 / sigma_y^2``, stable only while it exceeds -1."""
    weights = linear_weights(mixing, like.shape[1], like)
    if weights is None:
        return
    sigma, sigma_next = float(schedule.ve_sigma(t)), float(schedule.ve_sigma(t_next))
    gain = (sigma - sigma_next) * sigma * float((weights**2).sum()) / float(gamma) ** 2
    if gain >= 2:
        raise ValueError(
            f"sigma_y={float(gamma):.4g} is too small for the step at t={t} (the explicit step would diverge, "
            f"gain {gain:.3g} >= 2); use more steps, a larger sigma_y, or sigma_y=None (sigma_y = sigma_VE)"
        )


def msdm_gaussian_separate(
    model: Model,
    mixture: Tensor,
    x_T: Tensor,
    schedule: NoiseSchedule,
    *,
    sigma_y: float | Callable[[Tensor], Tensor] | None = None,
    num_steps: int = 200,
    eta: float = 1.0,
    num_resamples: int = 1,
    mixing: Mixing = "sum",
    cond: dict[str, Tensor] | None = None,
    prediction: Prediction = "epsilon",
    spacing: Spacing = "linspace",
    generator: Generators = None,
    callback: StepCallback | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """Separate ``mixture`` (B, ...) into stems (B, S, ...) starting from noise ``x_T`` (B, S, ...)."""
    grid = timesteps(schedule, num_steps, spacing)
    _check_separation_inputs(x_T, mixture, schedule, grid[0], num_resamples)
    if isinstance(sigma_y, (int, float)) and sigma_y <= 0:
        raise ValueError(f"sigma_y={sigma_y} must be > 0")
    linear_weights(mixing, x_T.shape[1], x_T)  # validates the option early
    y = mixture.float()
    x = x_T.float()
    for i in steps(len(grid), progress):
        t = grid[i]
        t_next = grid[i + 1] if i + 1 < len(grid) else -1
        abar_t, abar_next = schedule.alpha_bar(t), schedule.alpha_bar(t_next)
        alpha_t, sigma_t = schedule.alpha(t).float(), schedule.sigma(t).float()
        sigma_ve = sigma_t / alpha_t
        if sigma_y is None:
            gamma = sigma_ve
        elif callable(sigma_y):
            gamma = torch.as_tensor(sigma_y(sigma_ve), dtype=torch.float32)
        else:
            gamma = torch.tensor(float(sigma_y))
        if sigma_y is not None and t_next >= 0:
            _check_stable(schedule, t, t_next, gamma, mixing, x_T)
        for r in range(num_resamples):
            _, eps = denoise(model, x, t, schedule, cond, prediction, x_T.dtype)
            direction = eps - sigma_ve * likelihood_grad(x / alpha_t, y, mixing, gamma.to(x.device))
            x0 = (x - sigma_t * direction) / alpha_t
            noise = randn_like(x, generator) if eta > 0 and t_next >= 0 else None
            x_next = ddim_step(x0, direction, abar_t, abar_next, eta, noise)
            if r < num_resamples - 1:
                x = renoise(x_next, abar_next, abar_t, generator)
        x = x_next
        if callback is not None:
            callback(StepInfo(i, len(grid), float(t), x, x0))
    return x.to(x_T.dtype)
