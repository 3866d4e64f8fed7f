"""Group normalisation computed in float32 (bf16-safe), over the whole volume or per time frame.

``GroupNorm32`` is Wu & He (2018) as in the latent-diffusion U-Net: statistics over (channels of a
group, C, T, F). ``FrameGroupNorm`` takes the statistics over (channels of a group, C, F) separately
for every time frame, so that no activation depends on the clip length: the normalisation of the
length-general variant (a network trained on 10 s then run on 60 s sees the same statistics, and
it is exactly equivariant to time shifts away from the edges).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """nn.GroupNorm evaluated in float32 and cast back, so bf16 activations do not lose the mean."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


class FrameGroupNorm(nn.Module):
    """GroupNorm over (group channels, C, F) per time frame of a (B, ch, C, T, F) tensor."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, c, t, f = x.shape
        xf = x.float().reshape(b, self.num_groups, ch // self.num_groups, c, t, f)
        var, mean = torch.var_mean(xf, dim=(2, 3, 5), unbiased=False, keepdim=True)
        xf = ((xf - mean) * torch.rsqrt(var + self.eps)).reshape(b, ch, c, t, f)
        shape = (1, ch, 1, 1, 1)
        return (xf * self.weight.float().view(shape) + self.bias.float().view(shape)).to(x.dtype)


def make_norm(kind: str, groups: int, channels: int) -> nn.Module:
    if kind == "group_framewise":
        return FrameGroupNorm(groups, channels)
    return GroupNorm32(groups, channels)
