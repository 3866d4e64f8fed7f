"""DDPM ancestral sampling (Ho, Jain & Abbeel 2020, "Denoising Diffusion Probabilistic Models").

Each step draws from the Gaussian posterior ``q(x_s | x_t, x0_hat)`` (eq. 6-7) with the model's
clean estimate plugged in (Algorithm 2). On a respaced grid ``t -> s`` (Nichol & Dhariwal 2021,
section 4) the step's beta is ``beta' = 1 - abar_t / abar_s``:

    mean = sqrt(abar_s) beta' / (1 - abar_t) x0_hat + sqrt(1 - beta') (1 - abar_s) / (1 - abar_t) x_t
    var  = beta' (1 - abar_s) / (1 - abar_t)   ("posterior", beta-tilde of eq. 7)  or  beta'  ("beta")

The last step (to ``abar = 1``) returns the clean estimate.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from stemforge.samplers._common import (
    DenoisedFn,
    Generators,
    Progress,
    Spacing,
    StepCallback,
    StepInfo,
    check_latent,
    denoise,
    randn_like,
    steps,
    timesteps,
)
from stemforge.samplers.objectives import Model, Prediction
from stemforge.samplers.schedules import NoiseSchedule

Variance = Literal["posterior", "beta"]


def ddpm_sample(
    model: Model,
    x_T: Tensor,
    schedule: NoiseSchedule,
    *,
    num_steps: int | None = None,
    variance: Variance = "posterior",
    cond: dict[str, Tensor] | None = None,
    prediction: Prediction = "epsilon",
    spacing: Spacing = "linspace",
    generator: Generators = None,
    denoised_fn: DenoisedFn | None = None,
    callback: StepCallback | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """Ancestral DDPM sampling from ``x_T`` (B, ...); ``num_steps`` defaults to the training steps."""
    check_latent(x_T)
    if variance not in ("posterior", "beta"):
        raise ValueError(f"variance={variance!r} is unknown; use 'posterior' or 'beta'")
    grid = timesteps(schedule, num_steps or schedule.num_steps, spacing)
    x = x_T.float()
    for i in steps(len(grid), progress):
        t = grid[i]
        s = grid[i + 1] if i + 1 < len(grid) else -1
        x0, _ = denoise(model, x, t, schedule, cond, prediction, x_T.dtype, denoised_fn)
        abar_t, abar_s = schedule.alpha_bar(t), schedule.alpha_bar(s)
        beta = 1 - abar_t / abar_s
        coef_x0 = (abar_s.sqrt() * beta / (1 - abar_t)).float()
        coef_xt = ((1 - beta).sqrt() * (1 - abar_s) / (1 - abar_t)).float()
        x_mean = coef_x0 * x0 + coef_xt * x
        if s >= 0:
            var = beta * (1 - abar_s) / (1 - abar_t) if variance == "posterior" else beta
            x = x_mean + var.sqrt().float() * randn_like(x, generator)
        else:
            x = x_mean
        if callback is not None:
            callback(StepInfo(i, len(grid), float(t), x, x0))
    return x.to(x_T.dtype)
