"""Mixture-pyramid conditioning of MSG-LD (Karchkhadze et al., sec. 3 and fig. 1).

The mixture latent (B, C, T, F) is average-pooled to each U-Net level's (C, T_l, F_l) size; the
U-Net repeats it over the level's feature channels and adds it to the block input. No learned
weights; the unconditional branch adds zeros.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def mixture_pyramid(mix_latent: torch.Tensor, sizes: Sequence[tuple[int, int, int]]) -> list[torch.Tensor]:
    """Average-pool a (B, C, T, F) mixture latent to every (C_l, T_l, F_l) in ``sizes``.

    Each size must divide the input size on every axis (pooling windows do not overlap, so the
    pyramid commutes with shifts by multiples of the window). Returns one (B, C_l, T_l, F_l) tensor
    per size, in the order given.
    """
    if mix_latent.ndim != 4:
        raise ValueError(
            f"mixture_pyramid: mix_latent has shape {tuple(mix_latent.shape)}; expected (B, C, T, F), "
            "the mixture latent without a stem axis"
        )
    full = tuple(mix_latent.shape[1:])
    compute = torch.promote_types(mix_latent.dtype, torch.float32)
    levels = []
    for size in sizes:
        if len(size) != 3 or any(s < 1 or n % s for n, s in zip(full, size)):
            raise ValueError(
                f"mixture_pyramid: level size {tuple(size)} does not divide the mixture size {full}; "
                "give (C, T, F) sizes that divide it on every axis"
            )
        kernel = tuple(n // s for n, s in zip(full, size))
        if kernel == (1, 1, 1):
            levels.append(mix_latent)
        else:
            # Averages in float32 at least: bf16 pooling is inaccurate (and missing on CPU).
            pooled = F.avg_pool3d(mix_latent.unsqueeze(1).to(compute), kernel, stride=kernel)
            levels.append(pooled.squeeze(1).to(mix_latent.dtype))
    return levels
