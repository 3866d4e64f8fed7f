"""DPM-Solver++(2M) and (3M), the multistep data-prediction solvers of the probability-flow ODE
(Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models",
Algorithm 2 and its third-order multistep form).

With ``lambda = log(alpha / sigma)``, ``h = lambda_next - lambda_now`` and ``x0_k`` the clean
estimates at the last grid points (``x0_0`` now, ``x0_1`` and ``x0_2`` before), every step is

    x_next = (sigma_next / sigma_now) x + alpha_next (1 - exp(-h)) D

- first order (the first step; DPM-Solver++(1) = DDIM with eta 0): ``D = x0_0``;
- second order (2M, and the second step of 3M), ``r = h_0 / h`` with ``h_0`` the previous step:
  ``D = (1 + 1 / (2 r)) x0_0 - 1 / (2 r) x0_1``;
- third order (3M), with ``r_0 = h_0 / h``, ``r_1 = h_1 / h`` (``h_1`` the step before ``h_0``) and the
  divided differences ``d_0 = (x0_0 - x0_1) / r_0``, ``d_1 = (x0_1 - x0_2) / r_1``,
  ``D1 = d_0 + r_0 / (r_0 + r_1) (d_0 - d_1)``, ``D2 = (d_0 - d_1) / (r_0 + r_1)``:

      x_next = (sigma_next / sigma_now) x + alpha_next (1 - e^{-h}) x0_0
               + alpha_next phi_2 D1 - alpha_next phi_3 D2,
      phi_1 = e^{-h} - 1,  phi_2 = phi_1 / h + 1,  phi_3 = phi_2 / h - 1/2.

As in k-diffusion's ``sample_dpmpp_2m``, the final step to ``sigma = 0`` returns the clean estimate.
``alpha_next (1 - exp(-h))`` is evaluated as ``alpha_next - sigma_next alpha_now / sigma_now`` so
that a zero-terminal-SNR start (``alpha = 0``, ``lambda = -inf``) needs no special case.
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
    return _multistep(
        model, x_T, schedule, 2, num_steps, cond, prediction, spacing, denoised_fn, callback, progress
    )


def dpm_solver_pp_3m_sample(
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
    """Deterministic few-step sampling from ``x_T`` (B, ...) with DPM-Solver++(3M): the first step
    first order, the second second order, every later one third order (one model call per step, as
    2M). Options as :func:`dpm_solver_pp_2m_sample`.
    """
    del generator
    return _multistep(
        model, x_T, schedule, 3, num_steps, cond, prediction, spacing, denoised_fn, callback, progress
    )


def _multistep(
    model: Model,
    x_T: Tensor,
    schedule: NoiseSchedule,
    order: int,
    num_steps: int,
    cond: dict[str, Tensor] | None,
    prediction: Prediction,
    spacing: Spacing | None,
    denoised_fn: DenoisedFn | None,
    callback: StepCallback | None,
    progress: Progress | None,
) -> Tensor:
    check_latent(x_T)
    if spacing is None:
        spacing = "log_snr" if math.isfinite(float(schedule.log_snr(schedule.num_steps - 1))) else "linspace"
    grid = timesteps(schedule, num_steps, spacing)
    x = x_T.float()
    # The clean estimates and step sizes (in lambda) of the last steps, newest first; a step from
    # lambda = -inf (zero terminal SNR) has an infinite size and is never extrapolated from.
    history: list[Tensor] = []
    sizes: list[float] = []
    for i in steps(len(grid), progress):
        t = grid[i]
        s = grid[i + 1] if i + 1 < len(grid) else -1
        x0, _ = denoise(model, x, t, schedule, cond, prediction, x_T.dtype, denoised_fn)
        history = [x0, *history][:order]
        if s < 0:
            x = x0
        else:
            alpha_t, sigma_t = schedule.alpha(t), schedule.sigma(t)
            alpha_s, sigma_s = schedule.alpha(s), schedule.sigma(s)
            h = float(torch.log(alpha_s / sigma_s) - torch.log(alpha_t / sigma_t))
            known = 1  # clean estimates usable for extrapolation: those after the last infinite step
            while known < len(history) and math.isfinite(sizes[known - 1]):
                known += 1
            scale = float(alpha_s - sigma_s * alpha_t / sigma_t)  # alpha_next (1 - exp(-h))
            if known == 1:
                x = float(sigma_s / sigma_t) * x + scale * history[0]
            elif known == 2:
                r = sizes[0] / h
                data = (1 + 1 / (2 * r)) * history[0] - (1 / (2 * r)) * history[1]
                x = float(sigma_s / sigma_t) * x + scale * data
            else:
                r0, r1 = sizes[0] / h, sizes[1] / h
                d0 = (history[0] - history[1]) / r0
                d1 = (history[1] - history[2]) / r1
                first = d0 + (r0 / (r0 + r1)) * (d0 - d1)
                second = (d0 - d1) / (r0 + r1)
                phi_2 = math.expm1(-h) / h + 1
                phi_3 = phi_2 / h - 0.5
                x = (
                    float(sigma_s / sigma_t) * x
                    + scale * history[0]
                    + float(alpha_s) * phi_2 * first
                    - float(alpha_s) * phi_3 * second
                )
            sizes = [h, *sizes][: order - 1]
        if callback is not None:
            callback(StepInfo(i, len(grid), float(t), x, x0))
    return x.to(x_T.dtype)
