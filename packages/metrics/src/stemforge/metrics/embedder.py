"""The interface every FAD embedder satisfies: a sample rate, a window, an embedding size and a name.

An embedder maps (B, N) audio at ``sample_rate`` to (B, W, D) embeddings, one per analysis window
of ``window_samples`` samples taken every ``hop_samples``. Every FAD value carries the embedder's
``name`` so that figures computed with different embedders are never compared by mistake.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Embedder"]


class Embedder(nn.Module):
    """Base class of FAD embedders (subclasses set the four attributes and implement ``forward``)."""

    name: str
    sample_rate: int
    window_samples: int
    hop_samples: int
    embedding_dim: int

    def _check_wave(self, wave: Tensor) -> Tensor:
        if wave.dim() == 1:
            wave = wave.unsqueeze(0)
        if wave.dim() != 2:
            raise ValueError(
                f"{self.name}: expected audio of shape (B, N) at {self.sample_rate} Hz, got {tuple(wave.shape)}; "
                "mix or select stems first"
            )
        if not torch.isfinite(wave).all():
            raise ValueError(f"{self.name}: the audio holds NaN or infinite samples")
        return wave.float()

    def forward(self, wave: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed_frames(self, wave: Tensor) -> Tensor:
        """All window embeddings of a batch of clips, flattened to (B * W, D) float64 for FAD statistics."""
        return self(wave).flatten(0, 1).double()
