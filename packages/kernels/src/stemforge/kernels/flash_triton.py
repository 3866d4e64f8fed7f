"""Fused flash attention in Triton with a relative-position bias read from a table inside the kernel.

Forward: the online-softmax tiling of FlashAttention-2 (Dao 2023, Algorithm 1): for each query
block, key blocks stream through on-chip memory with the running max m_i, normaliser l_i and
accumulator rescaled by exp(m_old - m_new); the log-sum-exp L_i = m_i + log l_i is kept for the
backward pass. The score tile adds ``table[h, j - i + L_q - 1]`` gathered from the (H, L_q + L_k - 1)
relative table, so no L_q x L_k bias is ever stored (this is what makes Dynamic Positional Bias
affordable at 8192 tokens).

Backward (FlashAttention-2, Algorithm 2): P = exp(S - L) is recomputed tile by tile with the same
on-the-fly bias; D_i = rowsum(dO o O); dV = P^T dO, dP = dO V^T, dS = P o (dP - D), dK = dS^T Q * scale,
dQ = dS K * scale. The table gradient is the sum of dS along each diagonal j - i, accumulated
with atomic adds in the dQ kernel.

Importing this module needs triton; ``stemforge.kernels.attention`` imports it only when the
``triton`` backend is asked for.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import triton
import triton.language as tl


@triton.jit
def _dot(a, b, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """tl.dot, with bf16 operands upcast to float32 where asked (Triton's CPU interpreter has no
    bf16 matmul); on GPUs bf16 tiles go to the tensor cores as they are."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    return tl.dot(a, b, input_precision=PRECISION)


@triton.jit
def _score_tile(
    q,
    k,
    offs_m,
    offs_n,
    h,
    Table,
    stride_th,
    Bias,
    bias_base,
    stride_bm,
    stride_bn,
    LQ,
    LK,
    scale,
    HAS_TABLE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr,
    UPCAST: tl.constexpr,
):
    """Scores of one (BLOCK_M, BLOCK_N) tile with biases added and invalid keys at -inf."""
    s = _dot(q, tl.trans(k), PRECISION, UPCAST) * scale
    valid = (offs_n[None, :] < LK) & (offs_m[:, None] < LQ)
    if CAUSAL:
        valid = valid & (offs_n[None, :] <= offs_m[:, None])
    if HAS_TABLE:
        rel = offs_n[None, :] - offs_m[:, None] + LQ - 1
        s += tl.load(Table + h * stride_th + rel, mask=valid, other=0.0)
    if HAS_BIAS:
        ptrs = Bias + bias_base + offs_m[:, None] * stride_bm + offs_n[None, :] * stride_bn
        s += tl.load(ptrs, mask=valid, other=0.0).to(tl.float32)
    return tl.where(valid, s, float("-inf")), valid


@triton.jit
def _fwd_kernel(
    Q, K, V, Out, LSE, Table, Bias,
    sqb, sqh, sqm, sqd,
    skb, skh, skn, skd,
    svb, svh, svn, svd,
    sob, soh, som, sod,
    sbb, sbh, sbm, sbn,
    stride_th,
    H, LQ, LK, D, scale,
    HAS_TABLE: tl.constexpr, HAS_BIAS: tl.constexpr, CAUSAL: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d[None, :] < D
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd,
                mask=(offs_m[:, None] < LQ) & d_ok, other=0.0)  # fmt: skip
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    hi = LK
    if CAUSAL:
        hi = tl.minimum(LK, (pid_m + 1) * BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_ok = (offs_n[:, None] < LK) & d_ok
        k = tl.load(
            K + b * skb + h * skh + offs_n[:, None] * skn + offs_d[None, :] * skd, mask=kv_ok, other=0.0
        )
        v = tl.load(
            V + b * svb + h * svh + offs_n[:, None] * svn + offs_d[None, :] * svd, mask=kv_ok, other=0.0
        )
        s, _ = _score_tile(q, k, offs_m, offs_n, h, Table, stride_th, Bias, b * sbb + h * sbh,
                           sbm, sbn, LQ, LK, scale, HAS_TABLE, HAS_BIAS, CAUSAL, PRECISION, UPCAST)  # fmt: skip
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A row whose keys are all masked so far keeps m = -inf; shift by 0 to avoid inf - inf.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(s - m_safe[:, None])
        alpha = tl.exp(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + _dot(p.to(v.dtype), v, PRECISION, UPCAST)
        m_i = m_new
    row_ok = offs_m < LQ
    # Padding rows past L_q have l_i = 0; divide by 1 there (they are never stored).
    l_i = tl.where(row_ok, l_i, 1.0)
    out = acc / l_i[:, None]
    tl.store(Out + b * sob + h * soh + offs_m[:, None] * som + offs_d[None, :] * sod,
             out.to(Out.dtype.element_ty), mask=row_ok[:, None] & d_ok)  # fmt: skip
    tl.store(LSE + pid_bh * LQ + offs_m, m_i + tl.log(l_i), mask=row_ok)


@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, Table, Bias,
    sqb, sqh, sqm, sqd,
    skb, skh, skn, skd,
    svb, svh, svn, svd,
    sdob, sdoh, sdom, sdod,
    sbb, sbh, sbm, sbn,
    stride_th,
    H, LQ, LK, D, scale,
    HAS_TABLE: tl.constexpr, HAS_BIAS: tl.constexpr, CAUSAL: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d[None, :] < D
    kv_ok = (offs_n[:, None] < LK) & d_ok
    k = tl.load(K + b * skb + h * skh + offs_n[:, None] * skn + offs_d[None, :] * skd, mask=kv_ok, other=0.0)
    v = tl.load(V + b * svb + h * svh + offs_n[:, None] * svn + offs_d[None, :] * svd, mask=kv_ok, other=0.0)
    dk = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    dv = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
    lo = 0
    if CAUSAL:
        lo = (pid_n * BLOCK_N // BLOCK_M) * BLOCK_M
    for start_m in range(lo, LQ, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_ok = (offs_m[:, None] < LQ) & d_ok
        q = tl.load(
            Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd, mask=q_ok, other=0.0
        )
        do = tl.load(
            DO + b * sdob + h * sdoh + offs_m[:, None] * sdom + offs_d[None, :] * sdod, mask=q_ok, other=0.0
        )
        lse = tl.load(LSE + pid_bh * LQ + offs_m, mask=offs_m < LQ, other=0.0)
        delta = tl.load(DELTA + pid_bh * LQ + offs_m, mask=offs_m < LQ, other=0.0)
        s, valid = _score_tile(q, k, offs_m, offs_n, h, Table, stride_th, Bias, b * sbb + h * sbh,
                               sbm, sbn, LQ, LK, scale, HAS_TABLE, HAS_BIAS, CAUSAL, PRECISION, UPCAST)  # fmt: skip
        p = tl.where(valid, tl.exp(s - lse[:, None]), 0.0)
        dv += _dot(tl.trans(p.to(do.dtype)), do, PRECISION, UPCAST)
        dp = _dot(do, tl.trans(v), PRECISION, UPCAST)
        ds = p * (dp - delta[:, None])
        dk += _dot(tl.trans(ds.to(q.dtype)), q, PRECISION, UPCAST) * scale
    # DK and DV are contiguous (B, H, LK, D) buffers allocated by the wrapper.
    base = pid_bh * LK * D + offs_n[:, None] * D + offs_d[None, :]
    tl.store(DK + base, dk.to(DK.dtype.element_ty), mask=kv_ok)
    tl.store(DV + base, dv.to(DV.dtype.element_ty), mask=kv_ok)


@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, DTable, Table, Bias,
    sqb, sqh, sqm, sqd,
    skb, skh, skn, skd,
    svb, svh, svn, svd,
    sdob, sdoh, sdom, sdod,
    sbb, sbh, sbm, sbn,
    stride_th,
    H, LQ, LK, D, scale,
    HAS_TABLE: tl.constexpr, TABLE_GRAD: tl.constexpr, HAS_BIAS: tl.constexpr, CAUSAL: tl.constexpr,
    PRECISION: tl.constexpr, UPCAST: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    d_ok = offs_d[None, :] < D
    q_ok = (offs_m[:, None] < LQ) & d_ok
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :] * sqd, mask=q_ok, other=0.0)
    do = tl.load(
        DO + b * sdob + h * sdoh + offs_m[:, None] * sdom + offs_d[None, :] * sdod, mask=q_ok, other=0.0
    )
    lse = tl.load(LSE + pid_bh * LQ + offs_m, mask=offs_m < LQ, other=0.0)
    delta = tl.load(DELTA + pid_bh * LQ + offs_m, mask=offs_m < LQ, other=0.0)
    dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
    hi = LK
    if CAUSAL:
        hi = tl.minimum(LK, (pid_m + 1) * BLOCK_M)
    for start_n in range(0, hi, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_ok = (offs_n[:, None] < LK) & d_ok
        k = tl.load(
            K + b * skb + h * skh + offs_n[:, None] * skn + offs_d[None, :] * skd, mask=kv_ok, other=0.0
        )
        v = tl.load(
            V + b * svb + h * svh + offs_n[:, None] * svn + offs_d[None, :] * svd, mask=kv_ok, other=0.0
        )
        s, valid = _score_tile(q, k, offs_m, offs_n, h, Table, stride_th, Bias, b * sbb + h * sbh,
                               sbm, sbn, LQ, LK, scale, HAS_TABLE, HAS_BIAS, CAUSAL, PRECISION, UPCAST)  # fmt: skip
        p = tl.where(valid, tl.exp(s - lse[:, None]), 0.0)
        dp = _dot(do, tl.trans(v), PRECISION, UPCAST)
        ds = p * (dp - delta[:, None])
        dq += _dot(ds.to(k.dtype), k, PRECISION, UPCAST) * scale
        if TABLE_GRAD:
            rel = offs_n[None, :] - offs_m[:, None] + LQ - 1
            tl.atomic_add(DTable + h * (LQ + LK - 1) + rel, ds, mask=valid)
    tl.store(
        DQ + pid_bh * LQ * D + offs_m[:, None] * D + offs_d[None, :], dq.to(DQ.dtype.element_ty), mask=q_ok
    )


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _launch_config(q: torch.Tensor) -> tuple[int, int, int, str, bool]:
    block_d = max(16, triton.next_power_of_2(q.shape[-1]))
    # Small tiles under the interpreter keep CPU tests fast and exercise several tiles per row.
    block = 16 if _interpreting() else (64 if block_d <= 64 else 32)
    precision = "ieee" if q.dtype == torch.float32 else "tf32"
    upcast = _interpreting() and q.dtype == torch.bfloat16
    return block, block, block_d, precision, upcast


def _bias_strides(bias: torch.Tensor | None, shape: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    if bias is None:
        return (0, 0, 0, 0)
    s = bias.expand(shape).stride()
    return (s[0], s[1], s[2], s[3])


class _FlashRelBias(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        bias: torch.Tensor | None,
        table: torch.Tensor | None,
        causal: bool,
        scale: float,
    ) -> torch.Tensor:
        bsz, heads, lq, dim = q.shape
        lk = k.shape[-2]
        block_m, block_n, block_d, precision, upcast = _launch_config(q)
        out = torch.empty_like(q)
        lse = torch.empty(bsz, heads, lq, device=q.device, dtype=torch.float32)
        table32 = table.float().contiguous() if table is not None else None
        grid = (triton.cdiv(lq, block_m), bsz * heads)
        _fwd_kernel[grid](
            q, k, v, out, lse, table32 if table32 is not None else q, bias if bias is not None else q,
            *q.stride(), *k.stride(), *v.stride(), *out.stride(), *_bias_strides(bias, (bsz, heads, lq, lk)),
            table32.stride(0) if table32 is not None else 0,
            heads, lq, lk, dim, scale,
            HAS_TABLE=table32 is not None, HAS_BIAS=bias is not None, CAUSAL=causal, PRECISION=precision, UPCAST=upcast,
            BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_D=block_d,
        )  # fmt: skip
        ctx.save_for_backward(q, k, v, out, lse, bias, table32)
        ctx.causal = causal
        ctx.scale = scale
        ctx.table_dtype = table.dtype if table is not None else None
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor):  # type: ignore[override]
        q, k, v, out, lse, bias, table32 = ctx.saved_tensors
        bsz, heads, lq, dim = q.shape
        lk = k.shape[-2]
        block_m, block_n, block_d, precision, upcast = _launch_config(q)
        grad_out = grad_out.contiguous()
        delta = (grad_out.float() * out.float()).sum(-1).contiguous()
        dq = torch.empty(bsz, heads, lq, dim, device=q.device, dtype=q.dtype)
        dk = torch.empty(bsz, heads, lk, dim, device=q.device, dtype=k.dtype)
        dv = torch.empty(bsz, heads, lk, dim, device=q.device, dtype=v.dtype)
        table_grad = table32 is not None and ctx.needs_input_grad[4]
        dtable = torch.zeros_like(table32) if table_grad else None
        common = (
            *q.stride(), *k.stride(), *v.stride(), *grad_out.stride(),
            *_bias_strides(bias, (bsz, heads, lq, lk)),
            table32.stride(0) if table32 is not None else 0,
            heads, lq, lk, dim, ctx.scale,
        )  # fmt: skip
        table_arg = table32 if table32 is not None else q
        bias_arg = bias if bias is not None else q
        flags = {"HAS_TABLE": table32 is not None, "HAS_BIAS": bias is not None, "CAUSAL": ctx.causal}
        blocks = {
            "PRECISION": precision,
            "UPCAST": upcast,
            "BLOCK_M": block_m,
            "BLOCK_N": block_n,
            "BLOCK_D": block_d,
        }
        _bwd_dkdv_kernel[(triton.cdiv(lk, block_n), bsz * heads)](
            q, k, v, grad_out, lse, delta, dk, dv, table_arg, bias_arg, *common, **flags, **blocks
        )
        _bwd_dq_kernel[(triton.cdiv(lq, block_m), bsz * heads)](
            q, k, v, grad_out, lse, delta, dq, dtable if dtable is not None else q, table_arg, bias_arg,
            *common, TABLE_GRAD=table_grad, **flags, **blocks,
        )  # fmt: skip
        grad_table = dtable.to(ctx.table_dtype) if dtable is not None else None
        return dq, dk, dv, None, grad_table, None, None


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    rel_bias_table: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Fused attention over (B, H, L, D) tensors; differentiable in q, k, v and the table."""
    if bias is not None:
        if bias.requires_grad:
            raise ValueError(
                "backend='triton' does not differentiate through `bias`; pass a learned relative bias as "
                "rel_bias_table (differentiable) or use backend='sdpa'"
            )
        if bias.dtype == torch.bool:
            bias = torch.zeros(bias.shape, device=q.device, dtype=torch.float32).masked_fill(
                ~bias, float("-inf")
            )
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    return _FlashRelBias.apply(q, k, v, bias, rel_bias_table, causal, scale)
