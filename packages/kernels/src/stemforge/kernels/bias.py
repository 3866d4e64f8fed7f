"""Relative-position bias tables: the (heads, L_q + L_k - 1) layout shared by every backend.

Score (i, j) receives ``table[h, j - i + L_q - 1]``, so a self-attention over L tokens reads a
(heads, 2L - 1) table (the T5 / Swin relative bias, and Dynamic Positional Bias of Wang et al. 2021,
"CrossFormer", sec. 3.3, whose MLP produces the table). Only the reference and SDPA paths expand it
to L_q x L_k; the fused Triton kernel reads the table directly.
"""

from __future__ import annotations

import torch


def relative_offsets(lq: int, lk: int, device: torch.device | None = None) -> torch.Tensor:
    """(L_q, L_k) long tensor of table indices ``j - i + L_q - 1``, all in [0, L_q + L_k - 2]."""
    rows = torch.arange(lq, device=device)[:, None]
    cols = torch.arange(lk, device=device)[None, :]
    return cols - rows + (lq - 1)


def relative_bias_from_table(table: torch.Tensor, lq: int, lk: int) -> torch.Tensor:
    """Expand a (H, L_q + L_k - 1) table to the (1, H, L_q, L_k) bias it stands for."""
    if table.ndim != 2 or table.shape[1] != lq + lk - 1:
        raise ValueError(
            f"rel_bias_table has shape {tuple(table.shape)}, expected (heads, {lq + lk - 1}) for "
            f"{lq} queries and {lk} keys (one entry per offset j - i); build it for these lengths"
        )
    return table[:, relative_offsets(lq, lk, table.device)].unsqueeze(0)
