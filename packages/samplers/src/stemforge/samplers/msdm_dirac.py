"""MSDM "Dirac" separation (Mariani et al. 2024, "Multi-Source Diffusion Models for Simultaneous
Music Generation and Separation", section 4.2, eq. 10-12) rewritten for DDIM in latent space, as the
MT-MusicLDM / MSG-LD demo page describes.

The Dirac likelihood ``p(y | x) = delta(y - mix(x))`` removes one source, the constrained stem
``c``: it is set to ``x_c = (y - sum_{n != c} w_n x_n) / w_c`` and the posterior score of each free
stem is the chain rule through that constraint (eq. 12, for ``w = 1`` a difference of scores):

    grad_{x_n} log p(x_free | y) = S_n(x) - (w_n / w_c) S_c(x).

DDIM's deterministic step is the Euler step of the probability-flow ODE in the variance-exploding
variables ``x / alpha`` and ``sigma / alpha`` with derivative ``eps_hat`` (Song et al. 2021, DDIM
eq. 14; the demo page's second equation); there ``eps_hat = -sigma_VE * score``, so the posterior
direction of a free stem is ``d_n = eps_n - (w_n / w_c) eps_c``, the constraint in VP variables is
``x_c = (alpha_t y - sum_{n != c} w_n x_n) / w_c`` (the clean mixture, scaled like the signal), and
the step is DDIM eq. 12 with ``(x0_hat, eps_hat) = ((x_t - sigma_t d) / alpha_t, d)``.

MSDM's correction (resampling) steps: each grid step is repeated ``num_resamples`` times, the
state re-noised from the lower level back to the upper one in between (MSDM's ``num_resamples``
loop, a one-step RePaint jump). ``eta`` plays the part of MSDM's ``s_churn`` stochasticity. The
output satisfies the mixing constraint exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stemforge.samplers._common import (
    Generators,
    Progress,
    Spacing,
    StepCallback,
    StepInfo,
    check_latent,
    denoise,
    randn_like,
    renoise,
    steps,
    timesteps,
)
from stemforge.samplers.ddim import ddim_step
from stemforge.samplers.mixing import Mixing, linear_weights
from stemforge.samplers.objectives import Model, Prediction
from stemforge.samplers.schedules import NoiseSchedule


def _check_separation_inputs(
    x_T: Tensor, mixture: Tensor, schedule: NoiseSchedule, first_t: float, num_resamples: int
) -> None:
    check_latent(x_T)
    if float(schedule.alpha(first_t)) == 0:
        raise ValueError(
            f"the separation samplers work in the variables x / alpha, undefined at t={first_t} where "
            "alpha = 0 (zero terminal SNR); pass spacing='leading' or a schedule without zero terminal SNR"
        )
    if x_T.ndim < 3 or mixture.shape != (x_T.shape[0], *x_T.shape[2:]):
        raise ValueError(
            f"mixture has shape {tuple(mixture.shape)} but stems x_T {tuple(x_T.shape)} need (B, ...) = "
            f"{(x_T.shape[0], *x_T.shape[2:])}; pass the mixture without the stem axis"
        )
    if not bool(torch.isfinite(mixture).all()):
        raise ValueError("the mixture holds NaN or infinite values; check the latent that produced it")
    if num_resamples < 1:
        raise ValueError(f"num_resamples={num_resamples} must be >= 1")


def msdm_dirac_separate(
    model: Model,
    mixture: Tensor,
    x_T: Tensor,
    schedule: NoiseSchedule,
    *,
    num_steps: int = 200,
    eta: float = 1.0,
    num_resamples: int = 1,
    constrained_stem: int = -1,
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
    num_stems = x_T.shape[1]
    weights = linear_weights(mixing, num_stems, x_T.float())
    if weights is None:
        raise ValueError(
            "the Dirac sampler solves the mixing constraint for one stem and needs a linear mixing "
            "('sum', 'mean' or per-stem weights); use msdm_gaussian_separate for a callable mixing"
        )
    c = constrained_stem % num_stems
    if float(weights[c]) == 0:
        raise ValueError(f"the constrained stem {c} has mixing weight 0; choose another constrained_stem")
    w = weights.reshape(1, num_stems, *([1] * (x_T.ndim - 2)))
    ratio = w / weights[c]
    y = mixture.float()

    def constrain(x: Tensor, scale: Tensor | float) -> Tensor:
        others = (w * x).sum(1) - weights[c] * x[:, c]
        x = x.clone()
        x[:, c] = (scale * y - others) / weights[c]
        return x

    x = x_T.float()
    for i in steps(len(grid), progress):
        t = grid[i]
        t_next = grid[i + 1] if i + 1 < len(grid) else -1
        abar_t, abar_next = schedule.alpha_bar(t), schedule.alpha_bar(t_next)
        alpha_t, sigma_t = schedule.alpha(t).float(), schedule.sigma(t).float()
        for r in range(num_resamples):
            x = constrain(x, alpha_t)
            _, eps = denoise(model, x, t, schedule, cond, prediction, x_T.dtype)
            direction = eps - ratio * eps[:, c : c + 1]
            x0 = (x - sigma_t * direction) / alpha_t
            noise = randn_like(x, generator) if eta > 0 and t_next >= 0 else None
            x_next = ddim_step(x0, direction, abar_t, abar_next, eta, noise)
            if r < num_resamples - 1:
                x = renoise(x_next, abar_next, abar_t, generator)
        x = x_next
        if callback is not None:
            callback(StepInfo(i, len(grid), float(t), x, x0))
    return constrain(x, 1.0).to(x_T.dtype)
