"""Attention layers of the 3D U-Net, running on ``stemforge.kernels.attention``.

``SelfAttention3D`` is the "simple attention layer" of MSG-LD (Karchkhadze et al., sec. 4): the
openaimodel AttentionBlock (norm, 1x1 qkv projection, multi-head softmax attention, zero-initialised
1x1 output projection, residual), here over 3D feature maps. In ``full`` mode the C x T x F
positions form one token sequence (8192 / 2048 / 512 tokens at the paper's latent); in ``time``
mode every (C, F) position attends along T, optionally with Dynamic Positional Bias.
``CrossAttention3D`` lets the C x T x F tokens attend to text token states (latent diffusion,
Rombach et al. 2022, eq. 3-4), with a key mask for padded tokens.
"""

from __future__ import annotations

import torch
from torch import nn

from stemforge.kernels import attention
from stemforge.unet3d.dpb import DynamicPositionBias
from stemforge.unet3d.norm import make_norm
from stemforge.unet3d.resblock import zero_module


class SelfAttention3D(nn.Module):
    def __init__(
        self,
        channels: int,
        head_channels: int,
        *,
        mode: str = "full",
        positional_bias: str = "none",
        time_window: int = 0,
        dpb_hidden: int = 64,
        norm: str = "group",
        norm_groups: int = 32,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.heads = channels // head_channels
        self.mode = mode
        self.backend = backend
        self.norm = make_norm(norm, norm_groups, channels)
        # The 1x1 projections of openaimodel's AttentionBlock, as Linear layers over a token-major
        # layout so that each head's features are contiguous (what fused attention kernels want).
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = zero_module(nn.Linear(channels, channels))
        self.dpb = (
            DynamicPositionBias(self.heads, dpb_hidden, time_window) if positional_bias == "dpb" else None
        )
        self.time_window = time_window

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, ch, c, t, f = x.shape
        heads, d = self.heads, ch // self.heads
        tokens = self.norm(x).reshape(b, ch, c * t * f).transpose(1, 2)
        qkv = self.qkv(tokens)  # (B, C T F, 3 ch)
        table = None
        if self.mode == "full":
            q, k, v = qkv.reshape(b, c * t * f, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
        else:
            # One sequence along T per (C, F) position: (B C F, heads, T, d).
            qkv = qkv.reshape(b, c, t, f, 3, heads, d).permute(4, 0, 1, 3, 5, 2, 6)
            q, k, v = qkv.reshape(3, b * c * f, heads, t, d).unbind(0)
            if self.dpb is not None:
                table = self.dpb(t, x.device).to(q.dtype)
            elif self.time_window > 0:
                offsets = torch.arange(-(t - 1), t, device=x.device)
                table = torch.zeros(heads, 2 * t - 1, device=x.device, dtype=q.dtype)
                table = table.masked_fill(offsets.abs()[None] > self.time_window, float("-inf"))
        out = attention(q, k, v, rel_bias_table=table, backend=self.backend)  # type: ignore[arg-type]
        if self.mode == "full":
            out = out.transpose(1, 2).reshape(b, c * t * f, ch)
        else:
            out = out.reshape(b, c, f, heads, t, d).permute(0, 1, 4, 2, 3, 5).reshape(b, c * t * f, ch)
        return x + self.proj_out(out).transpose(1, 2).reshape(b, ch, c, t, f)


class CrossAttention3D(nn.Module):
    def __init__(
        self,
        channels: int,
        context_dim: int,
        head_channels: int,
        *,
        norm: str = "group",
        norm_groups: int = 32,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.heads = channels // head_channels
        self.backend = backend
        self.norm = make_norm(norm, norm_groups, channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_kv = nn.Linear(context_dim, 2 * channels)
        self.proj_out = zero_module(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor) -> torch.Tensor:
        """x (B, ch, C, T, F); context (B, L, D) token states; context_mask (B, L) bool, True = real token."""
        b, ch, c, t, f = x.shape
        heads, d = self.heads, ch // self.heads
        tokens = self.norm(x).reshape(b, ch, c * t * f).transpose(1, 2)
        q = self.to_q(tokens).reshape(b, c * t * f, heads, d).transpose(1, 2)
        k, v = self.to_kv(context.to(x.dtype)).reshape(b, -1, 2, heads, d).permute(2, 0, 3, 1, 4).unbind(0)
        out = attention(q, k, v, bias=context_mask[:, None, None, :], backend=self.backend)  # type: ignore[arg-type]
        out = out.transpose(1, 2).reshape(b, c * t * f, ch)
        return x + self.proj_out(out).transpose(1, 2).reshape(b, ch, c, t, f)
