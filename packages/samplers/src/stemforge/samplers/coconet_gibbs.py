"""Annealed blocked Gibbs sampling (Huang et al. 2017, "Counterpoint by Convolution", section 6,
Algorithm 1, after Yao et al. 2014).

Starting with every free variable masked, each of ``num_steps`` steps masks a random block of the
free variables, each with probability

    alpha_n = max(alpha_min, alpha_max - n (alpha_max - alpha_min) / (eta N))

(Coconet: alpha_max = 1, alpha_min = 0.05, eta = 3/4), and redraws the block's variables
independently from the model's conditionals given the rest. Large early blocks explore like
independent sampling; small late blocks approach ordinary Gibbs sampling, which with exact
conditionals and single-variable blocks leaves the joint distribution invariant. Every row masks at
least one variable per step. Given variables (e.g. given stems) are never masked: that is inpainting.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stemforge.samplers._common import Progress, StepCallback, StepInfo, steps
from stemforge.samplers.masked_discrete import (
    DiscreteModel,
    Kind,
    _check_kind,
    call_model,
    draw,
    random_ranks,
)


def gibbs_sample(
    model: DiscreteModel,
    x: Tensor,
    visible: Tensor,
    *,
    kind: Kind = "categorical",
    num_steps: int = 100,
    max_mask_prob: float = 1.0,
    min_mask_prob: float = 0.05,
    anneal_fraction: float = 0.75,
    temperature: float = 1.0,
    cond: dict[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """Fill the variables of ``x`` where ``visible`` (the given ones) is False by annealed Gibbs."""
    _check_kind(kind)
    if not 0 < min_mask_prob <= max_mask_prob <= 1 or not 0 < anneal_fraction <= 1 or num_steps < 1:
        raise ValueError(
            "need 0 < min_mask_prob <= max_mask_prob <= 1, 0 < anneal_fraction <= 1 and num_steps >= 1; got "
            f"{min_mask_prob}, {max_mask_prob}, {anneal_fraction}, {num_steps}"
        )
    given = visible.bool()
    free = ~given
    batch = x.shape[0]
    x = torch.where(given, x, torch.zeros_like(x))
    shape = (-1, *([1] * (x.ndim - 1)))
    device = generator.device if generator is not None else x.device
    for n in steps(num_steps, progress):
        if n == 0:
            block = free
        else:
            p = max(
                min_mask_prob,
                max_mask_prob - n * (max_mask_prob - min_mask_prob) / (anneal_fraction * num_steps),
            )
            u = torch.rand(x.shape, generator=generator, device=device).to(x.device)
            block = free & (u < p)
            empty = block.reshape(batch, -1).sum(1) == 0
            if bool(empty.any()):  # every row redraws at least one variable
                one = free & (random_ranks(free, generator) == 0)
                block = block | (one & empty.reshape(shape))
        logits = call_model(model, x, ~block, cond, kind)
        x = torch.where(block, draw(logits, kind, temperature, generator).to(x.dtype), x)
        if callback is not None:
            callback(StepInfo(n, num_steps, float(n) / num_steps, x, x))
    return x
