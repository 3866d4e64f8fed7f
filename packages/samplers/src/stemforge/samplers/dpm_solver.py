"""DPM-Solver++(2M), the multistep second-order data-prediction solver of the probability-flow ODE
(Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models",
Algorithm 2).

With ``lambda = log(alpha / sigma)`` and ``h_i = lambda_i - lambda_{i-1}``:

    x_i = (sigma_i / sigma_{i-1}) x_{i-1} + alpha_i (1 - exp(-h_i)) D_i
    D_i = (1 + 1 / (2 r_i)) x0_{i-1} - 1 / (2 r_i) x0_{i-2},   r_i = h_{i-1} / h_i

with the first step first order (``D_1 = x0_0``, DPM-Solver++(1) = DDIM with eta 0). As in
k-diffusion's ``sample_dpmpp_2m``, the final step to ``sigma = 0`` returns the clean estimate.
``alpha_i (1 - exp(-h_i))`` is evaluated as ``alpha_i - sigma_i alpha_{i-1} / sigma_{i-1}`` so that a
zero-terminal-SNR start (``alpha = 0``, ``lambda = -inf``) needs no special case.
"""

from __future__ import annotations

import math

import torch
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
    steps,
    timesteps,
)
from stemforge.samplers.objectives import Model, Prediction
from stemforge.samplers.schedules import NoiseSchedule


def dpm_solver_pp_2m_sample(
    model: Model,
    x_T: Tensor,
    schedule: NoiseSchedule,
    *,
    num_steps: int = 20,
    cond: dict[str, Tensor] | None = None,
    prediction: Prediction = "epsilon",
    spacing: Spacing | None = None,
    generator: Generators = None,
    denoised_fn: DenoisedFn | None = None,
    callback: StepCallback | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """Deterministic few-step sampling from ``x_T`` (B, ...) with DPM-Solver++(2M).

    ``spacing=None`` takes the grid uniform in log-SNR (fractional timesteps, Lu et al.'s choice,
    with which the solver shows its second order) or ``linspace`` at zero terminal SNR.
    ``generator`` is accepted for a uniform sampler signature; the solver draws no noise.
    """
    del generator
    check_latent(x_T)
    if spacing is None:
        spacing = "log_snr" if math.isfinite(float(schedule.log_snr(schedule.num_steps - 1))) else "linspace"
    grid = timesteps(schedule, num_steps, spacing)
    x = x_T.float()
    previous_x0: Tensor | None = None
    previous_h = math.inf
    for i in steps(len(grid), progress):
        t = grid[i]
        s = grid[i + 1] if i + 1 < len(grid) else -1
        x0, _ = denoise(model, x, t, schedule, cond, prediction, x_T.dtype, denoised_fn)
        if s < 0:
            x = x0
        else:
            alpha_t, sigma_t = schedule.alpha(t), schedule.sigma(t)
            alpha_s, sigma_s = schedule.alpha(s), schedule.sigma(s)
            h = float(torch.log(alpha_s / sigma_s) - torch.log(alpha_t / sigma_t))
            if previous_x0 is None or not math.isfinite(previous_h):
                data = x0
            else:
                r = previous_h / h
                data = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous_x0
            x = float(sigma_s / sigma_t) * x + float(alpha_s - sigma_s * alpha_t / sigma_t) * data
            previous_h = h
        previous_x0 = x0
        if callback is not None:
            callback(StepInfo(i, len(grid), float(t), x, x0))
    return x.to(x_T.dtype)
