"""Masked (absorbing-state) discrete diffusion for symbolic data: the model contract, the training
loss, and sampling by unmasking.

Absorbing-state diffusion (Austin et al. 2021, "Structured Denoising Diffusion Models in Discrete
State-Spaces", section 3.2 and appendix A.2) corrupts each variable independently into a MASK
state; its reverse model predicts every masked variable given the unmasked ones, which is the
orderless autoregressive model of Uria et al. 2014 ("A Deep and Tractable Density Estimator",
section 3; Coconet, Huang et al. 2017, section 4). Contract of ``model(x, visible, cond)``:

- ``x``: (B, ...) the variables, ``long`` tokens in ``[0, K)`` for ``kind="categorical"`` or float
  ``{0, 1}`` for ``kind="bernoulli"``; entries where ``visible`` is False are set to 0 and carry no
  information (the model must read ``visible``, never those values);
- ``visible``: (B, ...) bool, True = the value is given (unmasked);
- ``cond``: None or a dict of batch-first tensors (instruction, mixture ...);
- returns logits for every variable: (B, ..., K) for categorical, (B, ...) for Bernoulli
  (``log p(1) - log p(0)``). Only the hidden variables' logits are used.

Loss (Uria et al. 2014 eq. 9-10; Coconet section 5): for each sample draw the number ``d`` of
visible free variables uniformly from ``{0, ..., D-1}`` and a random subset of that size, then

    L = D / (D - d) * sum_{hidden i} -log p(x_i | x_visible)

is an unbiased estimate of the negative log-likelihood averaged over variable orders; it is
returned per variable (divided by ``D``). ``weighting="mean"`` averages the hidden cross-entropies
instead (Coconet's training objective). Variables in ``given`` (e.g. given stems) are always
visible and never scored.

Sampling by unmasking: starting from the given variables, each step reveals a share of the hidden
ones (``schedule="linear"``, or MaskGIT's ``"cosine"``, Chang et al. 2022, eq. 3), each drawn from
its conditional. ``order="random"`` reveals a uniformly random subset: with one variable per step
(``num_steps=None``) this is exact ancestral sampling of the model's joint. ``order="confidence"``
reveals the draws with the highest probability (MaskGIT section 3.2), which trades diversity for
coherence. Inpainting of given stems is the same call with those stems visible.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from stemforge.samplers._common import Progress, StepCallback, StepInfo, steps

Kind = Literal["categorical", "bernoulli"]
DiscreteModel = Callable[[Tensor, Tensor, "dict[str, Tensor] | None"], Tensor]


def _check_kind(kind: str) -> None:
    if kind not in ("categorical", "bernoulli"):
        raise ValueError(f"kind={kind!r} is unknown; use 'categorical' or 'bernoulli'")


def masked_input(x: Tensor, visible: Tensor) -> Tensor:
    """``x`` with every hidden entry set to 0 (the model input of the contract)."""
    if visible.shape != x.shape or visible.dtype != torch.bool:
        raise ValueError(
            f"visible must be a bool tensor shaped like x {tuple(x.shape)}, got {visible.dtype} {tuple(visible.shape)}"
        )
    return torch.where(visible, x, torch.zeros_like(x))


def call_model(
    model: DiscreteModel, x: Tensor, visible: Tensor, cond: dict[str, Tensor] | None, kind: Kind
) -> Tensor:
    """Call ``model`` on the masked input and check the logits' shape."""
    logits = model(masked_input(x, visible), visible, cond)
    expected = (*x.shape, logits.shape[-1]) if kind == "categorical" else tuple(x.shape)
    if tuple(logits.shape) != expected or (kind == "categorical" and logits.ndim != x.ndim + 1):
        raise ValueError(
            f"the model returned logits of shape {tuple(logits.shape)} for variables {tuple(x.shape)}; "
            f"{kind} variables need {'(B, ..., K)' if kind == 'categorical' else '(B, ...)'}"
        )
    return logits.float()


def log_prob(logits: Tensor, x: Tensor, kind: Kind) -> Tensor:
    """``log p(x_i)`` of every variable under its logits: (B, ...)."""
    if kind == "categorical":
        return torch.log_softmax(logits, -1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)
    return -torch.nn.functional.binary_cross_entropy_with_logits(logits, x.float(), reduction="none")


def draw(logits: Tensor, kind: Kind, temperature: float, generator: torch.Generator | None) -> Tensor:
    """One draw of every variable from its (tempered) conditional."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0")
    scaled = logits / temperature
    device = generator.device if generator is not None else logits.device
    if kind == "categorical":
        probs = torch.softmax(scaled, -1).reshape(-1, scaled.shape[-1]).to(device)
        return torch.multinomial(probs, 1, generator=generator).reshape(logits.shape[:-1]).to(logits.device)
    u = torch.rand(logits.shape, generator=generator, device=device).to(logits.device)
    return (u < torch.sigmoid(scaled)).float()


def random_ranks(free: Tensor, generator: torch.Generator | None) -> Tensor:
    """A uniformly random order of the free variables of every row: rank (B, ...) in ``0 .. D_b-1``,
    non-free variables ranked after them."""
    device = generator.device if generator is not None else free.device
    scores = torch.rand(free.shape, generator=generator, device=device).to(free.device)
    scores = torch.where(free, scores, torch.full_like(scores, 2.0)).reshape(free.shape[0], -1)
    return scores.argsort(1).argsort(1).reshape(free.shape)


def masked_diffusion_loss(
    model: DiscreteModel,
    x: Tensor,
    *,
    kind: Kind = "categorical",
    given: Tensor | None = None,
    cond: dict[str, Tensor] | None = None,
    weighting: Literal["nll", "mean"] = "nll",
    generator: torch.Generator | None = None,
) -> Tensor:
    """The training loss (nats per free variable for ``weighting="nll"``), a scalar."""
    _check_kind(kind)
    given = torch.zeros_like(x, dtype=torch.bool) if given is None else given.bool()
    free = ~given
    num_free = free.reshape(x.shape[0], -1).sum(1)
    if bool((num_free == 0).any()):
        raise ValueError("a row has no free variable (everything is given); nothing to learn from it")
    device = generator.device if generator is not None else x.device
    u = torch.rand(x.shape[0], generator=generator, device=device).to(x.device)
    num_visible = (u * num_free).floor().long()  # uniform on {0, ..., D-1}
    rank = random_ranks(free, generator)
    shape = (-1, *([1] * (x.ndim - 1)))
    visible = given | (free & (rank < num_visible.reshape(shape)))
    hidden = ~visible
    nll = -log_prob(call_model(model, x, visible, cond, kind), x, kind) * hidden
    nll_rows = nll.reshape(x.shape[0], -1).sum(1)
    num_hidden = hidden.reshape(x.shape[0], -1).sum(1)
    if weighting == "nll":
        return (nll_rows / num_hidden).mean()  # = D / (D - d) * sum / D
    if weighting == "mean":
        return nll_rows.sum() / num_hidden.sum()
    raise ValueError(f"weighting={weighting!r} is unknown; use 'nll' or 'mean'")


def unmask_sample(
    model: DiscreteModel,
    x: Tensor,
    visible: Tensor,
    *,
    kind: Kind = "categorical",
    num_steps: int | None = None,
    order: Literal["random", "confidence"] = "random",
    schedule: Literal["linear", "cosine"] = "linear",
    temperature: float = 1.0,
    cond: dict[str, Tensor] | None = None,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    progress: Progress | None = None,
) -> Tensor:
    """Fill the hidden variables of ``x`` (where ``visible`` is False) by iterative unmasking.

    ``num_steps=None`` reveals one variable per step (exact ancestral sampling with
    ``order="random"``). Visible variables are returned unchanged.
    """
    _check_kind(kind)
    if order not in ("random", "confidence") or schedule not in ("linear", "cosine"):
        raise ValueError(
            f"order={order!r} / schedule={schedule!r}: use 'random'|'confidence' and 'linear'|'cosine'"
        )
    visible = visible.bool().clone()
    x = masked_input(x, visible).clone()
    batch = x.shape[0]
    num_hidden = (~visible).reshape(batch, -1).sum(1)
    total = int(num_hidden.max()) if num_steps is None else num_steps
    if total < 1:
        return x
    revealed_before = torch.zeros_like(num_hidden)
    for k in steps(total, progress):
        frac = (k + 1) / total
        if schedule == "cosine":
            frac = 1 - math.cos(math.pi / 2 * frac)
        target = torch.ceil(num_hidden.double() * frac - 1e-9).long() if k + 1 < total else num_hidden
        count = (target - revealed_before).clamp(min=0)
        revealed_before = revealed_before + count
        if int(count.max()) == 0:
            continue
        logits = call_model(model, x, visible, cond, kind)
        proposal = draw(logits, kind, temperature, generator)
        hidden = ~visible
        if order == "random":
            device = generator.device if generator is not None else x.device
            score = torch.rand(x.shape, generator=generator, device=device).to(x.device)
        else:
            score = log_prob(logits / temperature, proposal, kind).exp()
        score = torch.where(hidden, score, torch.full_like(score, -1.0)).reshape(batch, -1)
        rank = score.argsort(1, descending=True).argsort(1).reshape(x.shape)
        reveal = hidden & (rank < count.reshape(-1, *([1] * (x.ndim - 1))))
        x = torch.where(reveal, proposal.to(x.dtype), x)
        visible = visible | reveal
        if callback is not None:
            callback(StepInfo(k, total, frac, x, proposal))
    return x
