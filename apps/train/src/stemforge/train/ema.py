"""Exponential moving average of the weights, as latent-diffusion's ``LitEma``.

decay_n = min(decay, (1 + n) / (10 + n)) after n updates (the ``use_num_upates`` warm-up of
Rombach et al. 2022's code), decay = 0.9999 in MSG-LD. The shadow copy is fp32 on the CPU of every
rank; under ZeRO stage 3 the partitioned parameters are gathered for the update.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def _gathered(params: list[nn.Parameter]) -> contextlib.AbstractContextManager:
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()


class EMA:
    """Shadow weights ``shadow = d * shadow + (1 - d) * param`` over the trainable parameters."""

    def __init__(self, module: nn.Module, decay: float = 0.9999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.num_updates = 0
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        with _gathered([p for _, p in named]):
            self.shadow = {n: p.detach().float().cpu().clone() for n, p in named}

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        decay = self.current_decay()
        named = [(n, p) for n, p in module.named_parameters() if n in self.shadow]
        with _gathered([p for _, p in named]):
            for name, param in named:
                shadow = self.shadow[name]
                shadow.mul_(decay).add_(param.detach().float().cpu(), alpha=1.0 - decay)
        self.num_updates += 1

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors for a safetensors file; the update count travels as a 0-d int64 tensor."""
        out = {f"ema.{k}": v.contiguous() for k, v in self.shadow.items()}
        out["num_updates"] = torch.tensor(self.num_updates, dtype=torch.int64)
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        names = {k.removeprefix("ema.") for k in tensors if k.startswith("ema.")}
        if names != set(self.shadow):
            missing = sorted(set(self.shadow) - names)[:5]
            extra = sorted(names - set(self.shadow))[:5]
            raise ValueError(f"EMA state does not match the model: missing {missing}, unexpected {extra}")
        for name in self.shadow:
            self.shadow[name].copy_(tensors[f"ema.{name}"])
        self.num_updates = int(tensors["num_updates"])

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        return iter(self.shadow.items())
