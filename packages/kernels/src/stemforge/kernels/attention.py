"""One attention entry point for the stemforge U-Net, dispatching to interchangeable backends.

All backends compute softmax(q k^T * scale + bias + rel_bias) v (Vaswani et al. 2017, eq. 1) with
an optional relative-position table (Dynamic Positional Bias, Wang et al. 2021) and agree with
``reference`` within the tolerances stated in the tests.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Literal

import torch

from stemforge.kernels.reference import reference_attention
from stemforge.kernels.sdpa import sdpa_attention

Backend = Literal["auto", "reference", "sdpa", "triton"]
BACKENDS: tuple[str, ...] = ("auto", "reference", "sdpa", "triton")


def triton_available(device: torch.device | str = "cuda") -> bool:
    """True when the fused Triton backend can run on ``device``: triton importable and a CUDA tensor,
    or any device with Triton's CPU interpreter switched on (``TRITON_INTERPRET=1``)."""
    if importlib.util.find_spec("triton") is None:
        return False
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return True
    return torch.device(device).type == "cuda" and torch.cuda.is_available()


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    rel_bias_table: torch.Tensor | None = None,
    causal: bool = False,
    backend: Backend = "auto",
    scale: float | None = None,
) -> torch.Tensor:
    """Scaled dot-product attention over (B, H, L, D) queries, keys and values.

    Args:
        q: (B, H, L_q, D) queries.
        k, v: (B, H, L_k, D) keys and values (same dtype and device as ``q``).
        bias: additive float bias, or bool mask with True = attend, broadcastable to (B, H, L_q, L_k).
        rel_bias_table: (H, L_q + L_k - 1) relative-position bias; score (i, j) gets
            ``table[h, j - i + L_q - 1]``. Differentiable in every backend; the ``triton`` backend
            reads it inside the kernel and never forms an L_q x L_k bias.
        causal: keep keys j <= i only (top-left aligned, as ``is_causal`` in torch).
        backend: ``reference`` (float32 matmul + softmax, the ground truth), ``sdpa``
            (torch's scaled_dot_product_attention, biases materialised), ``triton`` (fused kernel,
            needs the ``triton`` extra and CUDA or ``TRITON_INTERPRET=1``), or ``auto``: ``triton``
            for CUDA tensors with a ``rel_bias_table`` when triton is installed, else ``sdpa``.
        scale: score scale, default ``D ** -0.5``.

    Returns:
        (B, H, L_q, D) attention output in the dtype of ``q``.
    """
    _check_inputs(q, k, v, bias, rel_bias_table)
    if backend == "auto":
        # The fused kernel's point is the in-kernel relative bias; without one, torch's own flash /
        # memory-efficient SDPA kernels already avoid any L x L tensor.
        use_triton = (
            rel_bias_table is not None and q.is_cuda and importlib.util.find_spec("triton") is not None
        )
        backend = "triton" if use_triton else "sdpa"
    if backend == "reference":
        return reference_attention(
            q, k, v, bias=bias, rel_bias_table=rel_bias_table, causal=causal, scale=scale
        )
    if backend == "sdpa":
        return sdpa_attention(q, k, v, bias=bias, rel_bias_table=rel_bias_table, causal=causal, scale=scale)
    if backend == "triton":
        _require_triton(q.device)
        from stemforge.kernels.flash_triton import flash_attention

        return flash_attention(q, k, v, bias=bias, rel_bias_table=rel_bias_table, causal=causal, scale=scale)
    raise ValueError(f"attention: unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _require_triton(device: torch.device) -> None:
    if importlib.util.find_spec("triton") is None:
        raise ImportError(
            "attention(backend='triton') needs triton, which is not installed; install the extra with "
            "`pip install stemforge-kernels[triton]` or use backend='sdpa'"
        )
    if not triton_available(device):
        raise RuntimeError(
            f"attention(backend='triton') got tensors on {device} but needs a CUDA device (or Triton's CPU "
            "interpreter, TRITON_INTERPRET=1, for testing); move the tensors to CUDA or use backend='sdpa'"
        )


def _check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None,
    table: torch.Tensor | None,
) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.ndim != 4:
            raise ValueError(
                f"attention: {name} has shape {tuple(x.shape)}; expected 4-D (batch, heads, length, dim)"
            )
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"attention: k {tuple(k.shape)} and v {tuple(v.shape)} must share batch, heads and length"
        )
    if q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"attention: q {tuple(q.shape)} and k {tuple(k.shape)} must share batch, heads and head dim; "
            "reshape them to (B, H, L, D) with the same B, H and D"
        )
    if not (q.dtype == k.dtype == v.dtype) or not q.is_floating_point():
        raise ValueError(
            f"attention: q, k, v must share one floating dtype, got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    lq, lk = q.shape[-2], k.shape[-2]
    if table is not None and (table.ndim != 2 or table.shape != (q.shape[1], lq + lk - 1)):
        raise ValueError(
            f"attention: rel_bias_table has shape {tuple(table.shape)}, expected (heads, L_q + L_k - 1) = "
            f"({q.shape[1]}, {lq + lk - 1}); index it by the offset j - i + L_q - 1"
        )
    if bias is not None:
        try:
            torch.broadcast_shapes(bias.shape, (q.shape[0], q.shape[1], lq, lk))
        except RuntimeError as err:
            raise ValueError(
                f"attention: bias of shape {tuple(bias.shape)} does not broadcast to (B, H, L_q, L_k) = "
                f"{(q.shape[0], q.shape[1], lq, lk)}"
            ) from err
