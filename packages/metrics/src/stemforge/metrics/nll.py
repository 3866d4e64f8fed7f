"""Coconet-style negative log-likelihood reporting (Huang et al., "Counterpoint by convolution",
ISMIR 2017, sec. 6: "frame-wise" NLL sums the log-loss of all voices in a time step and averages
over time steps; "note-wise" averages over every (voice, step) variable).

The model provides per-variable log-probabilities log p(x_{s,t} | ...) of the true tokens (e.g.
from an exact chain-rule decomposition of an absorbing-state diffusion model); this helper only
aggregates them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CoconetNLL", "coconet_nll"]


@dataclass(frozen=True)
class CoconetNLL:
    """Frame-wise and note-wise NLL in nats, with the numbers of frames and variables averaged over."""

    framewise: float
    notewise: float
    num_frames: int
    num_variables: int


def coconet_nll(log_probs: Tensor, mask: Tensor | None = None) -> CoconetNLL:
    """Aggregate (B, S, T) per-variable log-probabilities (``mask`` (B, T) marks real frames of padded pieces)."""
    if log_probs.dim() != 3:
        raise ValueError(
            f"expected (B, S, T) log-probabilities (voices S, steps T), got {tuple(log_probs.shape)}"
        )
    if not torch.isfinite(log_probs).all() or (log_probs > 1e-6).any():
        raise ValueError(
            "log-probabilities must be finite and <= 0; pass log p of the true tokens, not probabilities"
        )
    lp = log_probs.double()
    frames = torch.ones(lp.shape[0], lp.shape[2], dtype=torch.bool) if mask is None else mask.bool()
    if frames.shape != (lp.shape[0], lp.shape[2]):
        raise ValueError(f"mask must be (B, T) = {(lp.shape[0], lp.shape[2])}, got {tuple(frames.shape)}")
    num_frames = int(frames.sum())
    if num_frames == 0:
        raise ValueError("no frames to average over")
    total = -(lp * frames.unsqueeze(1)).sum()
    num_variables = num_frames * lp.shape[1]
    return CoconetNLL(float(total / num_frames), float(total / num_variables), num_frames, num_variables)
