"""Activation checkpointing, bf16, torch.compile tracing and the safetensors + JSON checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from stemforge.unet3d import UNet3D, UNet3DConfig
from stemforge.unet3d.__about__ import __version__ as unet3d_version


def _batch(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 4, 16, 8, generator=gen)
    cond = {"mix_latent": torch.randn(2, 4, 16, 8, generator=gen), "drop": torch.tensor([False, True])}
    return x, torch.tensor([3.0, 700.0]), cond


@pytest.mark.parametrize("name", ["tiny", "tiny-dpb"])
def test_activation_checkpointing_gives_the_same_loss_and_gradients(randomized, name: str) -> None:
    plain = randomized(UNet3DConfig.from_name(name)).train()
    ckpt = randomized(UNet3DConfig.from_name(name, gradient_checkpointing=True)).train()
    x, t, cond = _batch()
    target = torch.randn(x.shape, generator=torch.Generator().manual_seed(9))
    losses = []
    for model in (plain, ckpt):
        loss = torch.nn.functional.mse_loss(model(x, t, cond), target)
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-6, atol=1e-7)
    for (name_a, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        assert a.grad is not None, name_a
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=lambda m, n=name_a: f"{n}: {m}")


def test_checkpointing_saves_activation_memory(randomized) -> None:
    # Saved-for-backward tensors with and without checkpointing, counted through autograd hooks.
    def saved_bytes(model: UNet3D) -> int:
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        x, t, cond = _batch()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x, t, cond).sum()
        return total

    plain = saved_bytes(randomized(UNet3DConfig.from_name("tiny")).train())
    ckpt = saved_bytes(randomized(UNet3DConfig.from_name("tiny", gradient_checkpointing=True)).train())
    assert ckpt < plain / 2


def test_bf16_forward_is_finite_and_close_to_float32(randomized) -> None:
    model = randomized(UNet3DConfig.from_name("tiny-dpb")).eval()
    x, t, cond = _batch()
    with torch.no_grad():
        ref = model(x, t, cond)
        out = model.to(torch.bfloat16)(
            x.bfloat16(), t, {k: v.bfloat16() if v.is_floating_point() else v for k, v in cond.items()}
        )
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    # bf16 weights and activations through ~15 layers: relative error of a few percent of the scale.
    err = (out.float() - ref).abs().max() / ref.abs().max()
    assert err < 0.1, f"bf16 relative error {err:.3f}"


@pytest.mark.parametrize("name", ["tiny", "tiny-dpb"])
def test_forward_traces_without_graph_breaks(randomized, name: str) -> None:
    torch._dynamo.reset()
    model = randomized(UNet3DConfig.from_name(name, text_dim=8, style_dim=4, stem_mask=True)).eval()
    x, t, cond = _batch()
    cond = {
        **cond,
        "text": torch.randn(2, 3, 8),
        "text_mask": torch.tensor([[True, True, False], [True, True, True]]),
        "text_pooled": torch.randn(2, 8),
        "style": torch.randn(2, 4),
        "stem_mask": torch.tensor([[True, False, False, True], [False] * 4]),
    }
    with torch.no_grad():
        explanation = torch._dynamo.explain(model)(x, t, cond)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_save_and_load_round_trip(randomized, tmp_path) -> None:
    config = UNet3DConfig.from_name("tiny", text_dim=8, stem_mask=True)
    model = randomized(config).eval()
    out_dir = model.save(tmp_path / "ckpt")
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.json", "model.safetensors"]
    meta = json.loads((out_dir / "config.json").read_text())
    assert meta["config"]["stems"] == ["bass", "drums", "guitar", "piano"]
    assert meta["package_versions"]["stemforge-unet3d"] == unet3d_version
    again = UNet3D.load(out_dir).eval()
    assert again.config == config
    x, t, cond = _batch()
    with torch.no_grad():
        torch.testing.assert_close(again(x, t, cond), model(x, t, cond), rtol=0, atol=0)
    rebuilt = UNet3D.from_config(meta["config"])
    assert rebuilt.num_parameters() == model.num_parameters()


def test_load_names_the_missing_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"config\.json is missing"):
        UNet3D.load(tmp_path)
