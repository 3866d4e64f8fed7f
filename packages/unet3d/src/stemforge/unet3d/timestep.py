"""Sinusoidal timestep embedding (Vaswani et al. 2017, sec. 3.5; the DDPM / latent-diffusion form).

embedding(t)_i = cos(t * w_i) for i < d/2, sin(t * w_{i - d/2}) after, w_i = max_period^(-i / (d/2)).
``t`` holds the training timestep index in [0, N-1]; fractional values are allowed.
"""

from __future__ import annotations

import math

import torch


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(B,) timesteps -> (B, dim) float32 embedding (cos half first, as in openaimodel)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding
