"""Residual block and resampling layers of the 3D U-Net (the openaimodel ResBlock of Ho et al. 2020 /
Rombach et al. 2022 with 3x3x3 convolutions).

ResBlock: h = conv(SiLU(norm(x))); h += Linear(SiLU(emb)); h = conv0(dropout(SiLU(norm(h))));
out = skip(x) + h, with conv0 zero-initialised and skip a 1x1x1 convolution when the width changes.
Resampling acts on (T, F) only: the latent-channel axis C is never shrunk (MSG-LD).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stemforge.unet3d.norm import make_norm


def zero_module(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock3D(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        dropout: float = 0.0,
        norm: str = "group",
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            make_norm(norm, norm_groups, in_channels),
            nn.SiLU(),
            nn.Conv3d(in_channels, out_channels, 3, padding=1),
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            make_norm(norm, norm_groups, out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            zero_module(nn.Conv3d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[:, :, None, None, None]
        return self.skip(x) + self.out_layers(h)


class Downsample3D(nn.Module):
    """Strided 3x3x3 convolution halving T and F, keeping C."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv3d(channels, channels, 3, stride=(1, 2, 2), padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample3D(nn.Module):
    """Nearest-neighbour doubling of T and F, then a 3x3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))
