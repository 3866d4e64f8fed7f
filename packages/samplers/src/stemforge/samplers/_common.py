"""Pieces shared by the samplers: timestep grids, the model call, hooks and seeded noise."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import torch
from torch import Tensor

from stemforge.samplers.objectives import Model, Prediction, expand_like, x0_and_eps
from stemforge.samplers.schedules import NoiseSchedule

Spacing = Literal["linspace", "trailing", "leading", "log_snr"]


@dataclass(frozen=True)
class StepInfo:
    """What a step callback receives: step ``index`` of ``total``, the timestep ``t`` the model saw,
    the state ``x`` after the step and the model's clean-sample estimate ``denoised``. The discrete
    samplers pass the fraction of the run done as ``t`` and their draws as ``denoised``."""

    index: int
    total: int
    t: float
    x: Tensor
    denoised: Tensor


StepCallback = Callable[[StepInfo], None]
Progress = Callable[[Iterable[int]], Iterable[int]]
DenoisedFn = Callable[[Tensor, Tensor], Tensor]


def timesteps(schedule: NoiseSchedule, num_steps: int, spacing: Spacing = "linspace") -> list[float]:
    """Descending training timesteps for a sampler of ``num_steps`` steps.

    ``linspace`` (the default) rounds ``linspace(N-1, 0, n)``: it starts at the last training step
    (needed for zero terminal SNR) and ends at ``t = 0``, so the final jump to the clean sample is
    the smallest the schedule allows (a grid that stops at a larger ``t`` returns ``E[x_0 | x_t]``
    there, which lacks the posterior variance at that level). ``trailing`` is
    ``round(N - 1 - i N / n)`` (Lin et al. 2023, table 2); ``leading`` is Latent Diffusion's
    "uniform" DDIM grid (``range(0, N, N // n) + 1``, MSG-LD's sampler). ``log_snr`` is uniform in
    log-SNR between ``t = N-1`` and ``t = 0`` (fractional timesteps; DPM-Solver's recommended grid,
    Lu et al. 2022, section 3.4), which needs a finite terminal SNR.
    """
    n_train = schedule.num_steps
    if not 1 <= num_steps <= n_train:
        raise ValueError(f"num_steps={num_steps} must lie in [1, {n_train}] (the schedule's training steps)")
    if spacing == "log_snr":
        first, last = float(schedule.log_snr(n_train - 1)), float(schedule.log_snr(0))
        if not math.isfinite(first):
            raise ValueError(
                "spacing='log_snr' needs a finite SNR at the last step; use 'linspace' at zero terminal SNR"
            )
        if num_steps == 1:
            return [float(n_train - 1)]
        lam = torch.linspace(first, last, num_steps, dtype=torch.float64)
        grid_f = schedule.timestep_from_log_snr(lam).clamp(0, n_train - 1).tolist()
        grid_f[0], grid_f[-1] = float(n_train - 1), 0.0
        return grid_f
    if spacing == "trailing":
        grid = [round(n_train - 1 - i * n_train / num_steps) for i in range(num_steps)]
    elif spacing == "leading":
        stride = n_train // num_steps
        grid = [min(i * stride + 1, n_train - 1) for i in range(num_steps)][::-1]
    elif spacing == "linspace":
        grid = torch.linspace(n_train - 1, 0, num_steps).round().long().tolist()
    else:
        raise ValueError(
            f"spacing={spacing!r} is unknown; use 'linspace', 'trailing', 'leading' or 'log_snr'"
        )
    if len(set(grid)) != len(grid):
        raise ValueError(
            f"spacing={spacing!r} with num_steps={num_steps} repeats a timestep; use fewer steps"
        )
    return [float(t) for t in grid]


def check_grid(grid: Sequence[float], schedule: NoiseSchedule) -> list[float]:
    """An explicit timestep grid, checked: non-empty, strictly descending, inside the schedule."""
    values = [float(t) for t in grid]
    if not values:
        raise ValueError("grid is empty; give at least one timestep")
    if any(b >= a for a, b in pairwise(values)):
        raise ValueError(
            f"grid must be strictly descending, got {values[:5]}{' ...' if len(values) > 5 else ''}"
        )
    if values[-1] < 0 or values[0] > schedule.num_steps - 1:
        raise ValueError(
            f"grid timesteps must lie in [0, {schedule.num_steps - 1}] (the schedule's training steps), "
            f"got {values[0]} .. {values[-1]}"
        )
    return values


def check_latent(x: Tensor, name: str = "x_T") -> None:
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be a floating tensor, got {x.dtype}; pass float32 or bfloat16 noise")
    if x.ndim < 2:
        raise ValueError(f"{name} must be batch-first (B, ...), got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} holds NaN or infinite values; check the latent or noise that produced it")


Generators = torch.Generator | Sequence[torch.Generator] | None
"""A sampler's randomness: one generator for the whole batch, or one per batch row. With one per row,
row i draws exactly what a one-row run with generator i draws, so a sample does not depend on how
the rows were batched (diffusers accepts a list of generators the same way)."""


def randn_like(x: Tensor, generator: Generators) -> Tensor:
    """Standard normal float32 noise shaped like ``x``, drawn on the generator's device; with a
    sequence of generators, row i of the batch from generator i."""
    if generator is None or isinstance(generator, torch.Generator):
        device = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32).to(x.device)
    generators = list(generator)
    if len(generators) != x.shape[0]:
        raise ValueError(
            f"{len(generators)} generators for a batch of {x.shape[0]} rows; give one generator per row "
            "(or a single generator)"
        )
    rows = [
        torch.randn((1, *x.shape[1:]), generator=g, device=g.device, dtype=torch.float32).to(x.device)
        for g in generators
    ]
    return torch.cat(rows)


def schedule_terms(schedule: NoiseSchedule, t: float, like: Tensor) -> tuple[Tensor, Tensor]:
    """``(alpha_t, sigma_t)`` as float32 scalars on ``like``'s device."""
    return (
        schedule.alpha(float(t)).to(like.device, torch.float32),
        schedule.sigma(float(t)).to(like.device, torch.float32),
    )


def denoise(
    model: Model,
    x: Tensor,
    t: float,
    schedule: NoiseSchedule,
    cond: dict[str, Tensor] | None,
    prediction: Prediction,
    model_dtype: torch.dtype,
    denoised_fn: DenoisedFn | None = None,
) -> tuple[Tensor, Tensor]:
    """One model call at timestep ``t``; returns float32 ``(x0, eps)`` after ``denoised_fn``.

    The state ``x`` is kept in float32; the model sees it in ``model_dtype`` (the input's dtype).
    When ``denoised_fn`` changes ``x0``, ``eps`` is recomputed from it so that the step stays on the
    same noise level (``eps = (x_t - alpha x0) / sigma``).
    """
    t_batch = torch.full((x.shape[0],), float(t), device=x.device, dtype=torch.float32)
    output = model(x.to(model_dtype), t_batch, cond).float()
    if output.shape != x.shape:
        raise ValueError(
            f"the model returned shape {tuple(output.shape)} for an input of shape {tuple(x.shape)}; "
            "a diffusion model must return a prediction shaped like its input"
        )
    alpha, sigma = schedule_terms(schedule, t, x)
    x0, eps = x0_and_eps(output, x, alpha, sigma, prediction)
    if denoised_fn is not None:
        x0 = denoised_fn(x0, t_batch)
        eps = (x - alpha * x0) / sigma
    return x0, eps


def renoise(x: Tensor, alpha_bar_from: Tensor, alpha_bar_to: Tensor, generator: Generators) -> Tensor:
    """Draw ``q(x_to | x_from)`` of the forward process, from a lower noise level to a higher one:
    ``sqrt(abar_to / abar_from) x + sqrt(1 - abar_to / abar_from) z`` (RePaint eq. 8 and MSDM's
    correction steps)."""
    ratio = alpha_bar_to / alpha_bar_from
    return ratio.sqrt().float() * x + (1 - ratio).sqrt().float() * randn_like(x, generator)


def steps(total: int, progress: Progress | None) -> Iterable[int]:
    return progress(range(total)) if progress is not None else range(total)


__all__ = ["expand_like"]
