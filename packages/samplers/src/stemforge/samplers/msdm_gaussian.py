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

The likelihood term is stiff: over one step it multiplies the constraint residual ``y - mix(x)`` of a
linear mixing by ``1 - lam`` with ``lam = (sigma_VE - c) sigma_VE |w|^2 / sigma_y^2`` (``c`` the
step's VE coefficient of the direction: ``sigma_VE_next`` for eta = 0), which is below -1 when steps
are few (with ``sigma_y = sigma_VE`` and the sum of 4 stems, ``lam = 4 (1 - sigma_next / sigma)``:
every step that more than halves the noise), and the samples diverge. ``likelihood_step=
"exponential"`` (the default) integrates that linear term exactly over the step with its coefficient
frozen (exponential Euler): the likelihood gradient is scaled by ``(1 - exp(-lam)) / lam``, so the
residual shrinks by ``exp(-lam)``, in (0, 1) for any step size; it tends to the explicit step as the
steps get small (all but the last jump to the clean sample, whose ``lam`` is ``|w|^2`` at any step
count with ``sigma_y = sigma_VE``). ``"explicit"`` is the plain step (MSDM's), refused before any
work where it would diverge with a constant ``sigma_y``. A callable mixing has no closed-form
``|w|^2`` and always takes the explicit step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

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


LikelihoodStep = Literal["exponential", "explicit"]


def likelihood_gain(
    schedule: NoiseSchedule, t: float, t_next: float, eta: float, gamma: float, weights: Tensor
) -> float:
    """``lam``: the factor by which one explicit step from ``t`` to ``t_next`` (-1: the clean sample)
    shrinks the constraint residual of a linear mixing with ``weights`` (residual x ``1 - lam``)."""
    abar_t = float(schedule.alpha_bar(t))
    abar_s = float(schedule.alpha_bar(t_next))
    sigma = math.sqrt((1 - abar_t) / abar_t)
    noise = eta * math.sqrt(max(0.0, (1 - abar_s) / max(1 - abar_t, 1e-300) * (1 - abar_t / abar_s)))
    direction = math.sqrt(max(0.0, 1 - abar_s - noise**2)) / math.sqrt(abar_s)
    return (sigma - direction) * sigma * float((weights.double() ** 2).sum()) / gamma**2


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
    likelihood_step: LikelihoodStep = "exponential",
) -> Tensor:
    """Separate ``mixture`` (B, ...) into stems (B, S, ...) starting from noise ``x_T`` (B, S, ...).

    ``likelihood_step``: ``"exponential"`` (stable at any step count) or ``"explicit"`` (MSDM's
    step); see the module docstring."""
    grid = timesteps(schedule, num_steps, spacing)
    _check_separation_inputs(x_T, mixture, schedule, grid[0], num_resamples)
    if isinstance(sigma_y, (int, float)) and sigma_y <= 0:
        raise ValueError(f"sigma_y={sigma_y} must be > 0")
    if likelihood_step not in ("exponential", "explicit"):
        raise ValueError(f"likelihood_step={likelihood_step!r}: use 'exponential' or 'explicit'")
    weights = linear_weights(mixing, x_T.shape[1], x_T)  # validates the option early
    exponential = weights if likelihood_step == "exponential" else None
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
        scale = 1.0
        if exponential is not None:
            lam = likelihood_gain(schedule, t, t_next, eta, float(gamma), exponential)
            scale = -math.expm1(-lam) / lam if lam > 0 else 1.0
        elif sigma_y is not None and t_next >= 0:
            _check_stable(schedule, t, t_next, gamma, mixing, x_T)
        for r in range(num_resamples):
            _, eps = denoise(model, x, t, schedule, cond, prediction, x_T.dtype)
            grad = likelihood_grad(x / alpha_t, y, mixing, gamma.to(x.device))
            direction = eps - (sigma_ve * scale) * grad
            x0 = (x - sigma_t * direction) / alpha_t
            noise = randn_like(x, generator) if eta > 0 and t_next >= 0 else None
            x_next = ddim_step(x0, direction, abar_t, abar_next, eta, noise)
            if r < num_resamples - 1:
                x = renoise(x_next, abar_next, abar_t, generator)
        x = x_next
        if callback is not None:
            callback(StepInfo(i, len(grid), float(t), x, x0))
    return x.to(x_T.dtype)
