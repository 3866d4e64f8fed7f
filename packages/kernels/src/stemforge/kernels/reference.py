"""Reference scaled dot-product attention: the ground truth every other backend is tested against.

Plain matmul + softmax (Vaswani et al. 2017, eq. 1), softmax(q k^T * scale + bias) v, computed in
float32 (float64 inputs stay float64) with the full L_q x L_k score matrix in memory. Slow and
memory-hungry on purpose: it is the obviously correct version.
"""

from __future__ import annotations

import torch

from stemforge.kernels.bias import relative_bias_from_table


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    rel_bias_table: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(q k^T * scale + bias + rel_bias) v over (B, H, L, D) tensors, in float32 or wider.

    ``bias`` is an additive float tensor (or a bool mask, True = attend) broadcastable to
    (B, H, L_q, L_k); ``rel_bias_table`` is (H, L_q + L_k - 1) and adds ``table[h, j - i + L_q - 1]``
    to score (i, j); ``causal`` keeps keys j <= i (top-left aligned, as torch's ``is_causal``).
    """
    compute = torch.promote_types(q.dtype, torch.float32)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    qf, kf, vf = q.to(compute), k.to(compute), v.to(compute)
    scores = torch.matmul(qf, kf.transpose(-1, -2)) * scale
    if rel_bias_table is not None:
        scores = scores + relative_bias_from_table(rel_bias_table, q.shape[-2], k.shape[-2]).to(compute)
    if bias is not None:
        scores = scores + _additive(bias, compute)
    if causal:
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights, vf).to(q.dtype)


def _additive(bias: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if bias.dtype == torch.bool:
        return torch.zeros(bias.shape, dtype=dtype, device=bias.device).masked_fill(~bias, float("-inf"))
    return bias.to(dtype)
