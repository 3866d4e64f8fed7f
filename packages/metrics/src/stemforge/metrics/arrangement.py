"""MSG-LD's arrangement-generation FAD protocol (Karchkhadze et al., sec. 4, after MSDM's sub-FAD,
Mariani et al. 2024, sec. 5.2): for a subset G of generated stems, the generated stems in G are
mixed with the ORIGINAL stems outside G, and FAD compares these mixtures with the original
mixtures. With four stems there are 14 subsets (every non-empty proper subset: 4 single stems,
6 pairs, 4 triples), MSG-LD's Table I.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

from stemforge.metrics.embedder import Embedder
from stemforge.metrics.frechet import FADScore, FrechetAudioDistance

__all__ = ["SubMixtureFAD", "arrangement_subsets", "submixture"]


def arrangement_subsets(stem_names: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty proper subset of ``stem_names`` (the generated stems), by size then stem order."""
    names = tuple(stem_names)
    return [combo for k in range(1, len(names)) for combo in itertools.combinations(names, k)]


def submixture(
    generated: Tensor, originals: Tensor, generated_stems: Sequence[str], stem_names: Sequence[str]
) -> Tensor:
    """(B, N) mixture of the generated stems in ``generated_stems`` and the original stems elsewhere."""
    names = tuple(stem_names)
    if generated.shape != originals.shape or generated.dim() != 3 or generated.shape[1] != len(names):
        raise ValueError(
            f"generated {tuple(generated.shape)} and originals {tuple(originals.shape)} must both be (B, S, N) with "
            f"S = {len(names)} stems {names}"
        )
    unknown = set(generated_stems) - set(names)
    if unknown:
        raise ValueError(f"unknown stems {sorted(unknown)}; the stems are {names}")
    use_generated = torch.tensor([n in generated_stems for n in names], device=generated.device).view(
        1, -1, 1
    )
    return torch.where(use_generated, generated, originals).sum(dim=1)


class SubMixtureFAD(Metric):
    """Sub-mixture FAD for one subset of generated stems; ``update(generated, originals)`` per batch."""

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(
        self, embedder: Embedder, generated_stems: Sequence[str], stem_names: Sequence[str], **kwargs: object
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stem_names = tuple(stem_names)
        self.generated_stems = tuple(generated_stems)
        if not self.generated_stems or set(self.generated_stems) - set(self.stem_names):
            raise ValueError(
                f"generated_stems={self.generated_stems} must be a non-empty subset of {self.stem_names}"
            )
        self.fad = FrechetAudioDistance(embedder)

    def update(self, generated: Tensor, originals: Tensor) -> None:
        fake = submixture(generated, originals, self.generated_stems, self.stem_names)
        self.fad.update(originals.sum(dim=1), real=True)
        self.fad.update(fake, real=False)

    def compute(self) -> FADScore:
        return self.fad.compute()

    def reset(self) -> None:
        super().reset()
        self.fad.reset()
