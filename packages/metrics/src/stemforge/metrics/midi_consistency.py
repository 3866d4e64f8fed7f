"""Consistency of an inserted MIDI stem with its musical context (the given stems), for symbolic
stem insertion (Subtractive Training's MIDI extension, Villa-Renteria et al. 2024).

- Pitch-class consistency: cosine similarity of the duration-weighted 12-bin pitch-class
  histograms of the inserted stem and of the context (key / harmony agreement; cf. the
  pitch-class histogram features of Yang & Lerch, "On the evaluation of generative models in
  music", 2020).
- Rhythm consistency: cosine similarity of the onset histograms over metrical positions (steps
  modulo the bar length) of the stem and of the context, and the fraction of the stem's onsets
  that fall on a step where the context also has an onset.

Both take (T, 128) piano rolls on the same grid.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["onset_roll", "pitch_class_consistency", "rhythm_consistency"]


def _check_roll(roll: Tensor, name: str) -> Tensor:
    if roll.dim() != 2 or roll.shape[1] != 128:
        raise ValueError(f"{name}: expected a (T, 128) piano roll, got {tuple(roll.shape)}")
    return roll.bool()


def onset_roll(roll: Tensor) -> Tensor:
    """(T, 128) bool: True where a note starts (active now, inactive at the previous step)."""
    roll = _check_roll(roll, "roll")
    previous = torch.zeros_like(roll)
    previous[1:] = roll[:-1]
    return roll & ~previous


def _cosine(a: Tensor, b: Tensor) -> float:
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        return 0.0
    return float(a @ b / (na * nb))


def pitch_class_consistency(stem: Tensor, context: Tensor) -> float:
    """Cosine similarity in [0, 1] of the duration-weighted pitch-class histograms (0 if either is empty)."""
    stem, context = _check_roll(stem, "stem"), _check_roll(context, "context")

    def histogram(roll: Tensor) -> Tensor:
        per_pitch = roll.double().sum(dim=0)  # (128,)
        return torch.zeros(12, dtype=torch.float64).index_add_(0, torch.arange(128) % 12, per_pitch)

    return _cosine(histogram(stem), histogram(context))


def rhythm_consistency(stem: Tensor, context: Tensor, steps_per_bar: int = 16) -> dict[str, float]:
    """``metrical_similarity`` (cosine of onset histograms over bar positions) and
    ``onset_agreement`` (fraction of the stem's onset steps where the context has an onset)."""
    stem, context = _check_roll(stem, "stem"), _check_roll(context, "context")
    if stem.shape[0] != context.shape[0]:
        raise ValueError(
            f"stem has {stem.shape[0]} steps and context {context.shape[0]}; use the same grid and length"
        )
    stem_onsets = onset_roll(stem).any(dim=1)
    context_onsets = onset_roll(context).any(dim=1)
    positions = torch.arange(stem.shape[0]) % steps_per_bar

    def histogram(onsets: Tensor) -> Tensor:
        return torch.zeros(steps_per_bar, dtype=torch.float64).index_add_(0, positions, onsets.double())

    count = int(stem_onsets.sum())
    agreement = float((stem_onsets & context_onsets).sum()) / count if count else 0.0
    return {
        "metrical_similarity": _cosine(histogram(stem_onsets), histogram(context_onsets)),
        "onset_agreement": agreement,
    }
