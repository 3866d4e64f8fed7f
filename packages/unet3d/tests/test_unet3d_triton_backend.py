"""The U-Net's DPB time attention through the fused Triton kernel (CPU interpreter) matches SDPA,
forward and backward, including the gradient that flows into the DPB MLP through the bias table."""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the first use of the triton backend

from stemforge.kernels import triton_available
from stemforge.unet3d import UNet3DConfig

pytest.importorskip("triton", reason="the triton extra is not installed")


@pytest.mark.slow  # the Triton interpreter runs every tile in Python
@pytest.mark.skipif(
    not triton_available("cuda" if torch.cuda.is_available() else "cpu"), reason="no CUDA, no interpreter"
)
def test_triton_backend_matches_sdpa_in_the_unet(randomized) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    models = {}
    for backend in ("sdpa", "triton"):
        models[backend] = randomized(UNet3DConfig.from_name("tiny-dpb", attention_backend=backend)).to(device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 2, 16, 8, generator=gen).to(device)
    t = torch.tensor([321.0], device=device)
    outs, grads = {}, {}
    for backend, model in models.items():
        out = model(x, t, {"mix_latent": x.sum(1)})
        out.square().mean().backward()
        outs[backend] = out.detach()
        grads[backend] = {n: p.grad for n, p in model.named_parameters() if "dpb" in n}
    torch.testing.assert_close(outs["triton"], outs["sdpa"], rtol=1e-4, atol=1e-5)
    assert grads["sdpa"], "the DPB parameters got no gradient"
    for name, grad in grads["sdpa"].items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(
            grads["triton"][name], grad, rtol=1e-3, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}"
        )
