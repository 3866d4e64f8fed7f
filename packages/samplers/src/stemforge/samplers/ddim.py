"""DDIM sampling and inversion (Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models").

One step from timestep ``t`` to ``s < t`` (eq. 12, with ``alpha_bar`` the cumulative product):

    x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - c^2) eps_hat + c z,
    c = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)        (eq. 16)

``eta = 0`` is the deterministic sampler, the Euler step of the probability-flow ODE in the
variables ``(x / alpha, sigma / alpha)`` (eq. 14); ``eta = 1`` is DDPM's ancestral step with the
posterior variance. MSG-LD samples with 200 steps and ``eta = 1``. The last step goes to
``abar = 1`` and returns the clean estimate (opt-in: ``final_timestep`` stops it at a training
step's level instead, as Latent Diffusion's DDIM does; ``grid`` takes an explicit timestep grid).
Inversion (section 4.3; the ODE run forwards) maps a clean sample to the noise that DDIM with
``eta = 0`` maps back onto it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from stemforge.samplers._common import (
    DenoisedFn,
    Generators,
    Progress,
    Spacing,
    StepCallback,
    StepInfo,
    check_grid,
    check_latent,
    denoise,
    randn_like,
    steps,
    timesteps,
)
from stemforge.samplers.objectives import Model, Prediction
from stemforge.samplers.schedules import NoiseSchedule


def ddim_step(
    x0: Tensor,
    eps: Tensor,
    alpha_bar_t: Tensor | float,
    alpha_bar_next: Tensor | float,
    eta: float,
    noise: Tensor | None,
) -> Tensor:
    """DDIM eq. 12 from ``alpha_bar_t`` to ``alpha_bar_next``, given the clean estimate and its noise.

    ``noise`` is needed when ``eta > 0``. The coefficients are computed in float64.
    """
    abar_t = torch.as_tensor(alpha_bar_t, dtype=torch.float64)
    abar_s = torch.as_tensor(alpha_bar_next, dtype=torch.float64)
    c = (
        eta
        * ((1 - abar_s) / (1 - abar_t).clamp(min=1e-300)).sqrt()
        * (1 - abar_t / abar_s).clamp(min=0).sqrt()
    )
    direction = (1 - abar_s - c**2).clamp(min=0).sqrt()
    out = abar_s.sqrt().float() * x0 + direction.float() * eps
    if eta > 0 and float(c) > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise")
        out = out + c.float() * noise
    return out


def ddim_sample(
    model: Model,
    x_T: Tensor,
    schedule: NoiseSchedule,
    *,
    num_steps: int = 200,
    eta: float = 1.0,
    cond: dict[str, Tensor] | None = None,
    prediction: Prediction = "epsilon",
    spacing: Spacing = "linspace",
    generator: Generators = None,
    denoised_fn: DenoisedFn | None = None,
    callback: StepCallback | None = None,
    progress: Progress | None = None,
    grid: Sequence[float] | None = None,
    final_timestep: float = -1,
) -> Tensor:
    """Sample with DDIM from ``x_T`` (B, ...) standard normal noise; returns ``x_0`` in ``x_T``'s dtype.

    ``model(x_t, t, cond)`` is called once per step. ``denoised_fn(x0, t) -> x0`` edits the clean
    estimate at each step (style grounding). ``callback`` gets a :class:`StepInfo` after each step;
    ``progress`` wraps the step iterator (an app passes ``tqdm``).

    Opt-in, for reproducing other code bases: ``grid`` (strictly descending training timesteps in
    ``[0, N-1]``) replaces the grid of ``num_steps`` and ``spacing``; ``final_timestep`` is the level
    the last step goes to: ``-1`` (the default) is the clean sample (``abar = 1``), ``0`` stops at
    ``abar_0`` with its noise, as Latent Diffusion's DDIM (``alphas_prev[0] = alphas_cumprod[0]``).
    """
    check_latent(x_T)
    if eta < 0:
        raise ValueError(f"eta={eta} must be >= 0 (0: deterministic DDIM, 1: DDPM-like ancestral)")
    grid = timesteps(schedule, num_steps, spacing) if grid is None else check_grid(grid, schedule)
    if not -1 <= final_timestep < grid[-1]:
        raise ValueError(
            f"final_timestep={final_timestep} must lie in [-1, {grid[-1]}) (-1: the clean sample, below the "
            "grid's last timestep)"
        )
    x = x_T.float()
    for i in steps(len(grid), progress):
        t = grid[i]
        t_next = grid[i + 1] if i + 1 < len(grid) else final_timestep
        x0, eps = denoise(model, x, t, schedule, cond, prediction, x_T.dtype, denoised_fn)
        noise = randn_like(x, generator) if eta > 0 and t_next >= 0 else None
        x = ddim_step(x0, eps, schedule.alpha_bar(t), schedule.alpha_bar(t_next), eta, noise)
        if callback is not None:
            callback(StepInfo(i, len(grid), float(t), x, x0))
    return x.to(x_T.dtype)


def ddim_invert(
    model: Model,
    x_0: Tensor,
    schedule: NoiseSchedule,
    *,
    num_steps: int = 200,
    cond: dict[str, Tensor] | None = None,
    prediction: Prediction = "epsilon",
    spacing: Spacing = "linspace",
    callback: StepCallback | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """Deterministic DDIM inversion: the ``x_T`` that ``ddim_sample(..., eta=0)`` maps to ``x_0``.

    Runs the same grid upwards with explicit Euler steps of the ODE: the model is evaluated at the
    current state and noise level (the clean point, which has no evaluation of its own, borrows the
    first noise level's), so the round trip is exact up to the ODE's discretisation error, which
    shrinks with ``num_steps``.
    """
    check_latent(x_0, "x_0")
    grid = timesteps(schedule, num_steps, spacing)[::-1]
    x = x_0.float()
    previous = -1.0
    for i in steps(len(grid), progress):
        t = grid[i]
        level = previous if previous >= 0 else t
        x0, eps = denoise(model, x, level, schedule, cond, prediction, x_0.dtype)
        if previous == -1:
            x0 = x
        x = ddim_step(x0, eps, schedule.alpha_bar(previous), schedule.alpha_bar(t), 0.0, None)
        previous = t
        if callback is not None:
            callback(StepInfo(i, len(grid), float(t), x, x0))
    return x.to(x_0.dtype)
