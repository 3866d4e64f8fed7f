"""Attention through torch.nn.functional.scaled_dot_product_attention.

Without a bias, torch picks its fused flash / memory-efficient kernel and nothing L x L is stored.
A relative-position table is expanded here to a (1, H, L_q, L_k) additive mask: the materialised-bias
baseline that the fused Triton kernel is measured against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from stemforge.kernels.bias import relative_bias_from_table


def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    rel_bias_table: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """scaled_dot_product_attention with the bias and relative table folded into one float mask."""
    lq, lk = q.shape[-2], k.shape[-2]
    mask: torch.Tensor | None = None
    if rel_bias_table is not None:
        mask = relative_bias_from_table(rel_bias_table, lq, lk).to(q.dtype)
    if bias is not None:
        if bias.dtype == torch.bool:
            extra = torch.zeros(bias.shape, dtype=q.dtype, device=q.device).masked_fill(~bias, float("-inf"))
        else:
            extra = bias.to(q.dtype)
        mask = extra if mask is None else mask + extra
    if causal and mask is not None:
        keep = torch.ones(lq, lk, dtype=torch.bool, device=q.device).tril()
        mask = mask.masked_fill(~keep, float("-inf"))
        causal = False
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)
