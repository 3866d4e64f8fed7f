"""Mel-MSE, MSG-LD's separation metric (Karchkhadze et al., sec. 4: "the Mel mean square distance,
as SI-SDR is unsuitable for our model", since the HiFi-GAN vocoder does not preserve phase).

For every stem, the mean over clips of the mean squared difference between the model's log-mel of
the separated stem and of the ground-truth stem. The mel function is passed in (apps pass the
codec's own front end, e.g. ``codec.mel``), so this package does not depend on a codec.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["MelMSE", "mel_mse"]

MelFn = Callable[[Tensor], Tensor]


def _check(estimates: Tensor, references: Tensor, num_stems: int | None = None) -> None:
    if estimates.dim() != 3 or estimates.shape != references.shape:
        raise ValueError(
            f"estimates and references must both be (B, S, N) stems, got {tuple(estimates.shape)} and "
            f"{tuple(references.shape)}"
        )
    if num_stems is not None and estimates.shape[1] != num_stems:
        raise ValueError(
            f"got {estimates.shape[1]} stems, expected {num_stems}; pass stems in the metric's stem order"
        )
    if not (torch.isfinite(estimates).all() and torch.isfinite(references).all()):
        raise ValueError("estimates or references hold NaN / infinite samples")


def mel_mse(estimates: Tensor, references: Tensor, mel_fn: MelFn) -> Tensor:
    """(B, S) mean squared log-mel difference of every clip and stem; ``mel_fn`` maps (K, N) audio to (K, ...)."""
    _check(estimates, references)
    b, s, n = estimates.shape
    mel_est = mel_fn(estimates.reshape(b * s, n)).double()
    mel_ref = mel_fn(references.reshape(b * s, n)).double()
    if mel_est.shape[0] != b * s:
        raise ValueError(
            f"mel_fn returned leading size {mel_est.shape[0]} for {b * s} clips; it must map (K, N) -> (K, ...)"
        )
    return (mel_est - mel_ref).square().flatten(1).mean(dim=1).reshape(b, s)


class MelMSE(Metric):
    """Per-stem Mel-MSE averaged over clips (sums and counts reduce across processes)."""

    full_state_update = False
    total: Tensor
    count: Tensor
    higher_is_better = False
    is_differentiable = False

    def __init__(self, mel_fn: MelFn, stem_names: Sequence[str], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.mel_fn = mel_fn
        self.stem_names = tuple(stem_names)
        self.add_state("total", torch.zeros(len(self.stem_names), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, estimates: Tensor, references: Tensor) -> None:
        _check(estimates, references, len(self.stem_names))
        values = mel_mse(estimates, references, self.mel_fn)
        self.total = self.total + values.sum(dim=0).to(self.total)
        self.count = self.count + values.shape[0]

    def compute(self) -> dict[str, float]:
        if int(self.count.item()) == 0:
            raise ValueError("MelMSE.compute() called before any update")
        per_stem = self.total / self.count
        result = {name: float(v) for name, v in zip(self.stem_names, per_stem)}
        result["mean"] = float(per_stem.mean())
        result["num_clips"] = float(self.count)
        return result
