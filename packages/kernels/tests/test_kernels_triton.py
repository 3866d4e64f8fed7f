"""The fused Triton kernel against the reference: on CPU through Triton's interpreter at small sizes,
and on CUDA (marked `gpu`) when a device is present."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    # Must be set before triton.jit decorates the kernels (the first import of flash_triton).
    os.environ.setdefault("TRITON_INTERPRET", "1")

from stemforge.kernels import attention, triton_available

pytest.importorskip("triton", reason="the triton extra is not installed")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (B, H, L_q, L_k, D, variant): ragged lengths (not multiples of the 16-wide interpreter tiles),
# cross-attention with L_q != L_k, head dims below the 16 minimum tile and a non-power of two.
CASES = [
    (2, 2, 40, 40, 16, "table"),
    (1, 3, 37, 37, 32, "causal+table"),
    (2, 2, 23, 45, 8, "bias+table"),
    (1, 2, 33, 17, 24, "plain"),
    (2, 1, 50, 50, 16, "bool-mask"),
]


def _run(backend: str, q, k, v, table, bias, causal, grad):
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    tab = table.detach().clone().requires_grad_() if table is not None else None
    out = attention(*leaves, rel_bias_table=tab, bias=bias, causal=causal, backend=backend)
    wrt = leaves + ([tab] if tab is not None else [])
    return (out, *torch.autograd.grad(out, wrt, grad))


@pytest.mark.skipif(not triton_available(DEVICE), reason="needs CUDA or TRITON_INTERPRET=1")
@pytest.mark.parametrize("case", CASES, ids=[c[-1] + f"-{c[2]}x{c[3]}" for c in CASES])
def test_triton_matches_reference_forward_and_backward(case: tuple) -> None:
    b, h, lq, lk, d, variant = case
    gen = torch.Generator().manual_seed(lq * 7 + lk)
    q, k, v = (torch.randn(b, h, n, d, generator=gen).to(DEVICE) for n in (lq, lk, lk))
    table = torch.randn(h, lq + lk - 1, generator=gen).to(DEVICE) if "table" in variant else None
    bias = None
    if "bias" in variant:
        bias = torch.randn(b, 1, lq, lk, generator=gen).to(DEVICE)
    if variant == "bool-mask":
        bias = (torch.rand(b, 1, 1, lk, generator=gen) > 0.4).to(DEVICE)
        bias[..., 0] = True
    causal = "causal" in variant
    grad = torch.randn(b, h, lq, d, generator=gen).to(DEVICE)
    got = _run("triton", q, k, v, table, bias, causal, grad)
    want = _run("reference", q.double(), k.double(), v.double(),
                table.double() if table is not None else None,
                bias.double() if bias is not None and bias.dtype != torch.bool else bias, causal, grad.double())  # fmt: skip
    # float32 with IEEE dots (no TF32): the online softmax reorders sums over at most 50 keys, so
    # errors stay near 1e-6; 2e-5 leaves margin. The table gradient sums up to B * L entries.
    for name, g, w in zip(["out", "dq", "dk", "dv", "dtable"], got, want):
        torch.testing.assert_close(g.double(), w, rtol=2e-5, atol=2e-5, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.skipif(not triton_available(DEVICE), reason="needs CUDA or TRITON_INTERPRET=1")
def test_triton_keeps_input_dtype_and_refuses_a_differentiable_bias() -> None:
    q = torch.randn(1, 1, 20, 16, device=DEVICE)
    out = attention(q, q, q, backend="triton")
    assert out.dtype == q.dtype and out.shape == q.shape
    bias = torch.zeros(1, 1, 20, 20, device=DEVICE, requires_grad=True)
    with pytest.raises(ValueError, match="rel_bias_table"):
        attention(q, q, q, bias=bias, backend="triton")


@pytest.mark.skipif(not triton_available(DEVICE), reason="needs CUDA or TRITON_INTERPRET=1")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_half_precision_forward_and_backward(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, 2, 40, 32, generator=gen).to(DEVICE, dtype) for _ in range(3))
    table = torch.randn(2, 79, generator=gen).to(DEVICE)
    grad = torch.randn(2, 2, 40, 32, generator=gen).to(DEVICE, dtype)
    got = _run("triton", q, k, v, table, None, False, grad)
    # Ground truth on the same rounded inputs in float64: what remains is the kernel's rounding of
    # P (and dS) to the input dtype before the second matmuls, a few 2^-8 (bf16) or 2^-11 (fp16)
    # relative steps on O(1) values summed over 40 keys.
    want = _run("reference", q.double(), k.double(), v.double(), table.double(), None, False, grad.double())
    tol = 3e-2 if dtype == torch.bfloat16 else 5e-3
    assert got[0].dtype == dtype and got[4].dtype == torch.float32
    for name, g, w in zip(["out", "dq", "dk", "dv", "dtable"], got, want):
        torch.testing.assert_close(g.double(), w, rtol=tol, atol=tol, msg=lambda m, n=name: f"{n}: {m}")


def test_triton_backend_without_cuda_or_interpreter_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        attention(q, q, q, backend="triton")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("length", [512, 2048])
def test_triton_bf16_on_cuda_is_close_to_reference(length: int) -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(1, 8, length, 32, device="cuda", generator=gen) for _ in range(3))
    table = torch.randn(8, 2 * length - 1, device="cuda", generator=gen)
    out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), rel_bias_table=table, backend="triton")
    ref = attention(q, k, v, rel_bias_table=table, backend="reference")
    # bf16 inputs and P rounded to bf16 before P V: a few 2^-8 relative steps on O(1) outputs.
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=3e-2)


def test_triton_backend_without_triton_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "triton" else real(name, *a)
    )
    q = torch.randn(1, 1, 8, 16)
    with pytest.raises(ImportError, match=r"stemforge-kernels\[triton\]"):
        attention(q, q, q, backend="triton")
