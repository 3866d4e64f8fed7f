"""Every CPU backend of `attention` against the reference, and the reference against a loop."""

from __future__ import annotations

import math

import pytest
import torch

from stemforge.kernels import attention, reference_attention, relative_bias_from_table


def _inputs(b: int, h: int, lq: int, lk: int, d: int, dtype: torch.dtype = torch.float32, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, d, generator=gen, dtype=torch.float64) for n in (lq, lk, lk))
    table = torch.randn(h, lq + lk - 1, generator=gen, dtype=torch.float64)
    bias = torch.randn(b, 1, lq, lk, generator=gen, dtype=torch.float64)
    return [x.to(dtype) for x in (q, k, v, table, bias)]


def test_reference_matches_an_explicit_loop() -> None:
    q, k, v, table, bias = _inputs(2, 3, 5, 7, 4, torch.float64)
    out = reference_attention(q, k, v, bias=bias, rel_bias_table=table, causal=True)
    expected = torch.empty_like(out)
    for b in range(2):
        for h in range(3):
            for i in range(5):
                scores = [
                    float(q[b, h, i] @ k[b, h, j]) / math.sqrt(4)
                    + float(bias[b, 0, i, j])
                    + float(table[h, j - i + 4])
                    if j <= i
                    else -math.inf
                    for j in range(7)
                ]
                top = max(scores)
                weights = [math.exp(s - top) for s in scores]
                total = sum(weights)
                expected[b, h, i] = sum(w / total * v[b, h, j] for j, w in enumerate(weights))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


def test_relative_table_expands_to_toeplitz_bias() -> None:
    table = torch.arange(2 * 9, dtype=torch.float32).reshape(2, 9)
    bias = relative_bias_from_table(table, 4, 6)
    assert bias.shape == (1, 2, 4, 6)
    for i in range(4):
        for j in range(6):
            assert bias[0, 1, i, j] == table[1, j - i + 3]


SHAPES = [(2, 4, 64, 64, 32), (1, 3, 37, 37, 16), (2, 2, 19, 45, 8), (1, 8, 130, 130, 32)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("variant", ["plain", "table", "bias", "causal+table", "bool-mask"])
def test_sdpa_matches_reference_forward_and_backward(shape: tuple[int, ...], variant: str) -> None:
    # float32 against a float64 reference: softmax over <= 130 keys of O(1) scores loses at most a few
    # ulps per term, so 1e-5 absolute/relative is a comfortable bound.
    q, k, v, table, bias = _inputs(*shape)
    lq, lk = shape[2], shape[3]
    kwargs: dict = {}
    if "table" in variant:
        kwargs["rel_bias_table"] = table.requires_grad_()
    if variant == "bias":
        kwargs["bias"] = bias
    if variant == "bool-mask":
        keep = torch.rand(shape[0], 1, 1, lk, generator=torch.Generator().manual_seed(3)) > 0.3
        keep[..., 0] = True
        kwargs["bias"] = keep
    causal = "causal" in variant and lq == lk
    for x in (q, k, v):
        x.requires_grad_()
    out = attention(q, k, v, causal=causal, backend="sdpa", **kwargs)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    wrt = [q, k, v] + ([kwargs["rel_bias_table"]] if "rel_bias_table" in kwargs else [])
    grads = torch.autograd.grad(out, wrt, grad)

    ref_wrt = [x.detach().double().requires_grad_() for x in wrt]
    ref_kwargs = dict(kwargs)
    if "rel_bias_table" in kwargs:
        ref_kwargs["rel_bias_table"] = ref_wrt[3]
    if variant == "bias":
        ref_kwargs["bias"] = bias.double()
    ref = attention(*ref_wrt[:3], causal=causal, backend="reference", **ref_kwargs)
    ref_grads = torch.autograd.grad(ref, ref_wrt, grad.double())
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_bf16_sdpa_is_close_to_the_float32_reference() -> None:
    # bf16 keeps 8 mantissa bits (relative step 2^-8 = 0.004); outputs are averages of O(1) values,
    # so 3e-2 absolute bounds a few rounding steps.
    q, k, v, table, _ = _inputs(2, 4, 96, 96, 32)
    out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), rel_bias_table=table.bfloat16(), backend="sdpa")
    ref = attention(q, k, v, rel_bias_table=table, backend="reference")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0, atol=3e-2)


def test_auto_uses_sdpa_on_cpu_and_returns_input_dtype() -> None:
    q, k, v, table, _ = _inputs(1, 2, 16, 16, 8)
    out = attention(q, k, v, rel_bias_table=table)
    torch.testing.assert_close(out, attention(q, k, v, rel_bias_table=table, backend="sdpa"), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"backend": "cudnn"}, "unknown backend"),
        ({"rel_bias_table": torch.randn(2, 10)}, "rel_bias_table has shape"),
        ({"bias": torch.randn(3, 1, 8, 8)}, "does not broadcast"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, message: str) -> None:
    q, k, v, *_ = _inputs(2, 2, 8, 8, 4)
    with pytest.raises(ValueError, match=message):
        attention(q, k, v, **kwargs)


def test_mismatched_shapes_are_rejected() -> None:
    q, k, v, *_ = _inputs(2, 2, 8, 8, 4)
    with pytest.raises(ValueError, match="4-D"):
        attention(q[0], k, v)
    with pytest.raises(ValueError, match="share batch, heads and head dim"):
        attention(q, k[:, :1], v[:, :1])
    with pytest.raises(ValueError, match="one floating dtype"):
        attention(q, k.double(), v)
