"""Dynamic Positional Bias (Wang et al. 2021, "CrossFormer", sec. 3.3; used for length-general
generation by Pasini et al., "Bass Accompaniment Generation via Latent Diffusion").

An MLP maps every relative offset d = j - i in [-(L-1), L-1] to one bias per head, so the bias table
exists for any length L. The offset enters as sign(d) * log(1 + |d|) so that offsets longer than
those seen in training stay in the range the MLP was fitted on. An optional window (radius w)
sets the bias of |d| > w to -inf: local attention, which makes the network's receptive field finite.
"""

from __future__ import annotations

import torch
from torch import nn


class DynamicPositionBias(nn.Module):
    def __init__(self, heads: int, hidden: int = 64, window: int = 0) -> None:
        super().__init__()
        self.window = window
        self.mlp = nn.Sequential(
            nn.Linear(1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, heads)
        )

    def forward(self, length: int, device: torch.device | None = None) -> torch.Tensor:
        """(heads, 2 L - 1) float32 table; entry k is the bias for offset d = k - (L - 1)."""
        offsets = torch.arange(-(length - 1), length, device=device, dtype=torch.float32)
        features = torch.sign(offsets) * torch.log1p(offsets.abs())
        weight_dtype = next(self.mlp.parameters()).dtype
        table = self.mlp(features[:, None].to(weight_dtype)).float().t()
        if self.window > 0:
            table = table.masked_fill(offsets.abs()[None, :] > self.window, float("-inf"))
        return table
