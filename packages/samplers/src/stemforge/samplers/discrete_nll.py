"""Exact chain-rule negative log-likelihood of a masked (orderless) discrete model.

For a random order ``o`` of the free variables (Uria et al. 2014, section 3; Coconet, Huang et al.
2017, section 7, their evaluation of "frame-wise" likelihoods)

    -log p(x) = sum_{i=1}^{D} -log p(x_{o_i} | x_{o_1}, ..., x_{o_{i-1}}, x_given),

which needs ``D`` model calls, one per variable (batched over the rows). The result is exact for a
model whose conditionals are consistent with one joint distribution, and an estimate of the
order-averaged NLL otherwise. Coconet reports nats per frame summed over the voices: divide the
returned total by the number of frames (time steps) of the row.
"""

from __future__ import annotations

import torch
from torch import Tensor

from stemforge.samplers._common import Progress, steps
from stemforge.samplers.masked_discrete import (
    DiscreteModel,
    Kind,
    _check_kind,
    call_model,
    log_prob,
    random_ranks,
)


def chain_rule_nll(
    model: DiscreteModel,
    x: Tensor,
    *,
    kind: Kind = "categorical",
    given: Tensor | None = None,
    cond: dict[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
    progress: Progress | None = None,
    ranks: Tensor | None = None,
) -> Tensor:
    """Total negative log-likelihood in nats (B,) of the free variables of ``x`` (not in ``given``)
    under one random variable order per row, or under the order ``ranks`` gives: an integer tensor
    of ``x``'s shape ranking each row's free variables 0, 1, ... (e.g. Coconet's frame-major order,
    frames in random order and the voices of a frame in random order)."""
    _check_kind(kind)
    given = torch.zeros_like(x, dtype=torch.bool) if given is None else given.bool()
    free = ~given
    if ranks is None:
        rank = random_ranks(free, generator)
    else:
        if ranks.shape != x.shape:
            raise ValueError(f"ranks {tuple(ranks.shape)} must have the shape of x {tuple(x.shape)}")
        counts = free.reshape(x.shape[0], -1).sum(1)
        expected = torch.arange(int(counts.max()) if counts.numel() else 0, device=x.device)
        for b in range(x.shape[0]):
            got = ranks[b][free[b]].sort().values.to(x.device)
            if not torch.equal(got, expected[: int(counts[b])]):
                raise ValueError(
                    f"ranks of row {b}: the free variables must be ranked 0 .. {int(counts[b]) - 1}, once each"
                )
        rank = torch.where(free, ranks.to(x.device), torch.full_like(ranks.to(x.device), x[0].numel()))
    num_free = int(free.reshape(x.shape[0], -1).sum(1).max())
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for i in steps(num_free, progress):
        visible = given | (free & (rank < i))
        current = free & (rank == i)
        lp = log_prob(call_model(model, x, visible, cond, kind), x, kind)
        total -= (lp.double() * current).reshape(x.shape[0], -1).sum(1)
    return total


def nats_per_frame(total_nll: Tensor, num_frames: int | Tensor) -> Tensor:
    """Coconet's frame-wise NLL: the total over voices and time divided by the number of frames."""
    return total_nll / torch.as_tensor(num_frames, dtype=total_nll.dtype, device=total_nll.device)
