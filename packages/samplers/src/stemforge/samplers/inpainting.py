"""Arrangement by inpainting: given stems replaced by their forward-noised ground truth at every step
(MSG-LD section II-D, after Lugmayr et al. 2022), with optional RePaint resampling.

At every step from noise level ``t`` the given stems of the state are overwritten by a fresh draw of
``q(x_t | z_given) = N(alpha_t z_given, sigma_t^2 I)`` (RePaint eq. 8), the model predicts the
whole state, and a DDIM step (eq. 12 of Song et al. 2021; ``eta = 1`` is DDPM's ancestral step)
moves it to the next level. RePaint's resampling (Lugmayr et al. 2022, Algorithm 1 and section 4.2)
harmonises the generated stems with the given ones: after every ``jump_length`` steps the state is
diffused back up ``jump_length`` steps with ``q(x_t | x_s)`` (``x_t = sqrt(abar_t / abar_s) x_s +
sqrt(1 - abar_t / abar_s) z``) and denoised again, ``jump_n_sample - 1`` times. ``jump_n_sample = 1``
is MSG-LD's plain replacement. The returned sample holds the given stems exactly.

The mask is either per stem, (B, S), or per element: any bool tensor with the state's number of
dimensions that broadcasts to it, e.g. (B, S, 1, T, 1) to give some time frames of every stem
(continuing a long generation from the frames of the previous chunk). Replacement is the same
operation either way: the known elements follow ``q(x_t | z_known)``, the rest are sampled.
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
    renoise,
    steps,
    timesteps,
)
from stemforge.samplers.ddim import ddim_step
from stemforge.samplers.objectives import Model, Prediction
from stemforge.samplers.schedules import NoiseSchedule


def repaint_moves(num_steps: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """The RePaint walk over grid positions ``0 .. num_steps`` (0 = noisiest, ``num_steps`` = clean).

    Returns the sequence of positions visited after the start at 0: a position one larger than its
    predecessor is a denoising step, one smaller a re-noising step.
    """
    if jump_length < 1 or jump_n_sample < 1:
        raise ValueError(f"jump_length={jump_length} and jump_n_sample={jump_n_sample} must be >= 1")
    remaining = {p: jump_n_sample - 1 for p in range(jump_length, num_steps, jump_length)}
    position, walk = 0, []
    while position < num_steps:
        position += 1
        walk.append(position)
        if remaining.get(position, 0) > 0:
            remaining[position] -= 1
            for _ in range(jump_length):
                position -= 1
                walk.append(position)
    return walk


def known_elements(mask: Tensor, shape: torch.Size) -> Tensor:
    """A stem mask (B, S) or an element mask broadcastable to ``shape``, as a mask of ``len(shape)``
    dimensions that broadcasts to ``shape``."""
    if mask.dtype != torch.bool:
        raise ValueError(f"stem_mask must be a bool tensor, got {mask.dtype}; True marks a given stem")
    if tuple(mask.shape) == tuple(shape[:2]):
        return mask.reshape(*mask.shape, *([1] * (len(shape) - 2)))
    if mask.ndim == len(shape) and all(m in (1, n) for m, n in zip(mask.shape, shape)):
        return mask
    raise ValueError(
        f"stem_mask must be bool of shape (B, S) = {tuple(shape[:2])} or broadcast to the state's shape "
        f"{tuple(shape)} with as many dimensions, got {tuple(mask.shape)}; True marks a given stem or element"
    )


def inpaint_sample(
    model: Model,
    x_T: Tensor,
    schedule: NoiseSchedule,
    given: Tensor,
    stem_mask: Tensor,
    *,
    num_steps: int = 200,
    eta: float = 1.0,
    jump_length: int = 1,
    jump_n_sample: int = 1,
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
    """Generate the missing stems of ``given`` (B, S, ...) where ``stem_mask`` (B, S) is False.

    Opt-in, as :func:`~stemforge.samplers.ddim_sample`: ``grid`` (strictly descending training
    timesteps) replaces the grid of ``num_steps`` and ``spacing``, and ``final_timestep`` is the
    level of the last step (``-1``, the default: the clean sample; ``0``: ``abar_0``, as Latent
    Diffusion's DDIM).

    ``stem_mask`` True marks a given stem (the clean latent in ``given`` is kept); the values of
    ``given`` at missing stems are ignored. ``x_T`` (B, S, ...) is the starting noise.
    ``stem_mask`` may also be a bool mask with ``x_T.ndim`` dimensions that broadcasts to ``x_T``
    (True = that element is given), for masks over time frames or other axes.
    """
    check_latent(x_T)
    check_latent(given, "given")
    if given.shape != x_T.shape:
        raise ValueError(
            f"given has shape {tuple(given.shape)} but x_T has {tuple(x_T.shape)}; pass the same shape"
        )
    keep = known_elements(stem_mask, x_T.shape).to(x_T.device)
    if eta < 0:
        raise ValueError(f"eta={eta} must be >= 0")
    clean = given.float()
    base = timesteps(schedule, num_steps, spacing) if grid is None else check_grid(grid, schedule)
    if not -1 <= final_timestep < base[-1]:
        raise ValueError(
            f"final_timestep={final_timestep} must lie in [-1, {base[-1]}) (-1: the clean sample, below the "
            "grid's last timestep)"
        )
    grid = [*base, final_timestep]
    walk = repaint_moves(len(base), jump_length, jump_n_sample)
    x = x_T.float()
    position = 0
    for i in steps(len(walk), progress):
        target = walk[i]
        t, t_target = grid[position], grid[target]
        if target < position:  # RePaint: diffuse back up one grid step
            x = renoise(x, schedule.alpha_bar(t), schedule.alpha_bar(t_target), generator)
            position = target
            continue
        alpha_t, sigma_t = schedule.alpha(t).float(), schedule.sigma(t).float()
        known = alpha_t * clean + sigma_t * randn_like(x, generator)
        x = torch.where(keep, known, x)
        x0, eps = denoise(model, x, t, schedule, cond, prediction, x_T.dtype, denoised_fn)
        noise = randn_like(x, generator) if eta > 0 and t_target >= 0 else None
        x = ddim_step(x0, eps, schedule.alpha_bar(t), schedule.alpha_bar(t_target), eta, noise)
        position = target
        if callback is not None:
            callback(StepInfo(i, len(walk), float(t), x, x0))
    x = torch.where(keep, clean, x)
    return x.to(x_T.dtype)
