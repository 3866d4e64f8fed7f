"""Training objectives: epsilon, v and x0 prediction, conversions, and the DDPM loss with CFG dropout.

With ``x_t = alpha x_0 + sigma eps`` and ``alpha^2 + sigma^2 = 1``:

- epsilon prediction (Ho et al. 2020, eq. 14): ``x_0 = (x_t - sigma eps) / alpha``;
- v prediction (Salimans & Ho 2022, section 4): ``v = alpha eps - sigma x_0``, hence
  ``x_0 = alpha x_t - sigma v`` and ``eps = sigma x_t + alpha v``;
- x0 prediction: ``eps = (x_t - alpha x_0) / sigma``.

The DDPM loss (Ho et al. 2020, eq. 14; MSG-LD eq. 1) is the mean squared error between the model's
output and the target of the chosen parametrisation at a uniform random timestep. Classifier-free
guidance (Ho & Salimans 2021) needs the same network to learn the unconditional model: each sample's
conditioning is dropped with probability ``cond_drop_prob`` (MSG-LD: 0.1), signalled to the model by
the ``"drop"`` (B,) bool key of the condition dictionary (stemforge-unet3d's contract).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from stemforge.samplers.schedules import NoiseSchedule

Prediction = Literal["epsilon", "v", "x0"]
Model = Callable[[Tensor, Tensor, "dict[str, Tensor] | None"], Tensor]

_PREDICTIONS = ("epsilon", "v", "x0")


def _check_prediction(prediction: str) -> None:
    if prediction not in _PREDICTIONS:
        raise ValueError(f"prediction={prediction!r} is unknown; use one of {_PREDICTIONS}")


def expand_like(values: Tensor, x: Tensor) -> Tensor:
    """Reshape per-sample values (B,) or a scalar so that they broadcast against ``x`` (B, ...)."""
    values = torch.as_tensor(values, device=x.device)
    if values.ndim == 0:
        return values
    return values.reshape(values.shape[0], *([1] * (x.ndim - 1)))


def x0_and_eps(
    output: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor, prediction: Prediction
) -> tuple[Tensor, Tensor]:
    """Turn a model output of parametrisation ``prediction`` into ``(x0, eps)``.

    ``alpha`` and ``sigma`` broadcast against ``x_t``. Raises where the conversion is undefined
    (epsilon prediction at ``alpha = 0``, x0 prediction at ``sigma = 0``).
    """
    _check_prediction(prediction)
    if prediction == "epsilon":
        if bool((alpha == 0).any()):
            raise ValueError(
                "epsilon prediction cannot give x0 where alpha = 0 (zero terminal SNR); "
                "train with prediction='v' or 'x0', or start sampling below the last timestep"
            )
        return (x_t - sigma * output) / alpha, output
    if prediction == "v":
        return alpha * x_t - sigma * output, sigma * x_t + alpha * output
    if bool((sigma == 0).any()):
        raise ValueError("x0 prediction cannot give eps where sigma = 0; evaluate the model at t >= 0")
    return output, (x_t - alpha * output) / sigma


def prediction_from(x0: Tensor, eps: Tensor, alpha: Tensor, sigma: Tensor, prediction: Prediction) -> Tensor:
    """The output of parametrisation ``prediction`` that corresponds to ``(x0, eps)``."""
    _check_prediction(prediction)
    if prediction == "epsilon":
        return eps
    if prediction == "v":
        return alpha * eps - sigma * x0
    return x0


def convert_prediction(
    output: Tensor, x_t: Tensor, alpha: Tensor, sigma: Tensor, source: Prediction, target: Prediction
) -> Tensor:
    """Convert a model output between the epsilon, v and x0 parametrisations."""
    x0, eps = x0_and_eps(output, x_t, alpha, sigma, source)
    return prediction_from(x0, eps, alpha, sigma, target)


def add_noise(x0: Tensor, noise: Tensor, schedule: NoiseSchedule, t: Tensor) -> Tensor:
    """The forward process ``q(x_t | x_0)``: ``alpha_t x0 + sigma_t noise`` for per-sample ``t`` (B,)."""
    alpha = expand_like(schedule.alpha(t.cpu()).to(x0.device, torch.float32), x0)
    sigma = expand_like(schedule.sigma(t.cpu()).to(x0.device, torch.float32), x0)
    return (alpha * x0.float() + sigma * noise.float()).to(x0.dtype)


def _check_loss_options(prediction: str, cond_drop_prob: float) -> None:
    _check_prediction(prediction)
    if not 0.0 <= cond_drop_prob <= 1.0:
        raise ValueError(f"cond_drop_prob={cond_drop_prob} must lie in [0, 1]")


def ddpm_loss(
    model: Model,
    x0: Tensor,
    schedule: NoiseSchedule,
    *,
    cond: dict[str, Tensor] | None = None,
    prediction: Prediction = "epsilon",
    cond_drop_prob: float = 0.0,
    generator: torch.Generator | None = None,
    t: Tensor | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    """The DDPM training loss (MSE to the ``prediction`` target), a scalar averaged over the batch.

    ``t`` (B,) long and ``noise`` default to uniform timesteps and standard normal noise drawn from
    ``generator``. With ``cond_drop_prob > 0`` each row's condition is dropped with that probability
    by setting (or OR-ing into) ``cond["drop"]``; the input dictionary is not modified.
    """
    _check_loss_options(prediction, cond_drop_prob)
    batch = x0.shape[0]
    device = x0.device
    if t is None:
        t = torch.randint(0, schedule.num_steps, (batch,), generator=generator, device="cpu").to(device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, device="cpu", dtype=torch.float32).to(device)
    if noise.shape != x0.shape:
        raise ValueError(
            f"noise has shape {tuple(noise.shape)} but x0 has {tuple(x0.shape)}; pass matching shapes"
        )
    if cond is not None and cond_drop_prob > 0:
        drop = torch.rand(batch, generator=generator, device="cpu").to(device) < cond_drop_prob
        if "drop" in cond:
            drop = drop | cond["drop"].bool()
        cond = {**cond, "drop": drop}
    alpha = expand_like(schedule.alpha(t.cpu()).to(device, torch.float32), x0)
    sigma = expand_like(schedule.sigma(t.cpu()).to(device, torch.float32), x0)
    x_t = alpha * x0.float() + sigma * noise.float()
    target = prediction_from(x0.float(), noise.float(), alpha, sigma, prediction)
    output = model(x_t.to(x0.dtype), t.float(), cond)
    return torch.mean((output.float() - target) ** 2)


def random_given_mask(batch: int, stems: int, generator: torch.Generator | None = None) -> Tensor:
    """(batch, stems) bool: a random subset of the stems given per row, never all of them (each stem
    with probability 1/2; a row that drew every stem has one, chosen uniformly, made missing): the
    given-stems mask of arrangement training."""
    given = torch.rand(batch, stems, generator=generator) < 0.5
    all_given = given.all(1)
    pick = torch.randint(0, stems, (batch,), generator=generator)
    given[all_given, pick[all_given]] = False
    return given


def given_stems_loss(
    model: Model,
    x0: Tensor,
    schedule: NoiseSchedule,
    given: Tensor,
    *,
    cond: dict[str, Tensor] | None = None,
    prediction: Prediction = "epsilon",
    cond_drop_prob: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The DDPM loss of arrangement training: x0 (B, S, ...) with the stems where ``given`` (B, S)
    is True entered clean (not noised), the model told which through ``cond["stem_mask"]``, and the
    squared error averaged over the missing stems' elements only.

    Draws from ``generator`` in this order: timesteps (B,), noise like ``x0``, the condition
    dropout (B,) (``cond["drop"]``, always set).
    """
    _check_loss_options(prediction, cond_drop_prob)
    b, s = x0.shape[:2]
    if given.shape != (b, s) or given.dtype != torch.bool:
        raise ValueError(
            f"given must be a bool (B, S) = ({b}, {s}) mask, got {given.dtype} {tuple(given.shape)}"
        )
    if bool(given.all(1).any()):
        raise ValueError("given: every row must leave at least one stem to generate")
    device = x0.device
    given = given.to(device)
    t = torch.randint(0, schedule.num_steps, (b,), generator=generator)
    noise = torch.randn(x0.shape, generator=generator).to(device)
    drop = (torch.rand(b, generator=generator) < cond_drop_prob).to(device)
    alpha = expand_like(schedule.alpha(t).to(device, torch.float32), x0)
    sigma = expand_like(schedule.sigma(t).to(device, torch.float32), x0)
    x_t = alpha * x0 + sigma * noise
    keep = given.view(b, s, *([1] * (x0.ndim - 2)))
    x_t = torch.where(keep, x0, x_t)
    target = prediction_from(x0, noise, alpha, sigma, prediction)
    out = model(x_t, t.to(device).float(), {**(cond or {}), "stem_mask": given, "drop": drop})
    missing = (~keep).float()
    per_stem = x0[0, 0].numel()
    return ((out.float() - target) ** 2 * missing).sum() / (missing.sum() * per_stem)
