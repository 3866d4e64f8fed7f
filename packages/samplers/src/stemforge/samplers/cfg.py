"""Classifier-free guidance in one batched model call, with CFG rescale.

Guidance (Ho & Salimans 2021, eq. 6, in MSG-LD's notation, section II-B):

    pred = w pred_c + (1 - w) pred_u

so ``w = 0`` is the unconditional model (MSG-LD's total generation), ``w = 1`` the conditional
model and ``w > 1`` extrapolates past it (MSG-LD separates with ``w = 2``). For ``0 < w != 1`` the
conditional and unconditional rows run in ONE call: ``x`` and ``t`` are duplicated and every key of
the condition and null-condition dictionaries is concatenated row-wise (``torch.cat``), conditional
rows first. ``w = 0`` and ``w = 1`` need one branch only and call the model on ``B`` rows.

CFG rescale (Lin et al. 2023, section 3.4, eq. 15-16; used by Pasini et al. for the
bass-accompaniment model): the guided prediction is rescaled to the per-sample standard deviation
of the conditional one and blended with factor ``phi``:

    pred_rescaled = pred * std(pred_c) / std(pred);   pred_final = phi pred_rescaled + (1 - phi) pred

The null condition defaults to the condition with ``"drop"`` set for every row (stemforge-unet3d
replaces dropped rows by its null conditioning).
"""

from __future__ import annotations

import torch
from torch import Tensor

from stemforge.samplers.objectives import Model


def cfg_rescale(guided: Tensor, conditional: Tensor, phi: float) -> Tensor:
    """Lin et al. 2023 eq. 15-16: match ``guided``'s per-sample std to ``conditional``'s, blend by ``phi``."""
    dims = tuple(range(1, guided.ndim))
    std_cond = conditional.std(dim=dims, keepdim=True)
    std_guided = guided.std(dim=dims, keepdim=True).clamp(min=1e-12)
    rescaled = guided * (std_cond / std_guided)
    return phi * rescaled + (1 - phi) * guided


class ClassifierFreeGuidance:
    """Wrap ``model(x, t, cond)`` into a guided model with the same contract.

    ``scale`` is MSG-LD's ``w``; ``rescale`` is ``phi`` in [0, 1]; ``uncond`` is the null condition
    (same keys as the condition), by default the condition with ``drop = True`` on every row.
    Calling the wrapper with ``cond=None`` calls the model unconditionally.
    """

    def __init__(
        self, model: Model, scale: float, *, rescale: float = 0.0, uncond: dict[str, Tensor] | None = None
    ) -> None:
        if not 0.0 <= rescale <= 1.0:
            raise ValueError(f"rescale (phi) = {rescale} must lie in [0, 1]")
        if scale < 0:
            raise ValueError(f"guidance scale w = {scale} must be >= 0 (0: unconditional, 1: conditional)")
        self.model = model
        self.scale = float(scale)
        self.rescale = float(rescale)
        self.uncond = uncond

    def _null(self, cond: dict[str, Tensor], batch: int, device: torch.device) -> dict[str, Tensor]:
        if self.uncond is None:
            return {**cond, "drop": torch.ones(batch, dtype=torch.bool, device=device)}
        if set(self.uncond) != set(cond):
            raise ValueError(
                f"the null condition has keys {sorted(self.uncond)} but the condition has {sorted(cond)}; "
                "pass the same keys so that the rows can be concatenated"
            )
        return self.uncond

    def __call__(self, x: Tensor, t: Tensor, cond: dict[str, Tensor] | None) -> Tensor:
        if cond is None:
            return self.model(x, t, None)
        batch = x.shape[0]
        if "drop" not in cond:
            cond = {**cond, "drop": torch.zeros(batch, dtype=torch.bool, device=x.device)}
        null = self._null(cond, batch, x.device)
        if self.scale == 0.0:
            return self.model(x, t, null)
        if self.scale == 1.0:
            return self.model(x, t, cond)
        both = {key: torch.cat([cond[key], null[key]]) for key in cond}
        pred_c, pred_u = self.model(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
        guided = self.scale * pred_c + (1 - self.scale) * pred_u
        if self.rescale > 0:
            guided = cfg_rescale(guided.float(), pred_c.float(), self.rescale).to(guided.dtype)
        return guided
