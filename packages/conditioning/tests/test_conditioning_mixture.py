"""Mixture conditioner: the shared pyramid, stem-mask embeddings, nulls and CFG drop rates."""

import dataclasses

import pytest
import torch

from stemforge.conditioning import MixtureConditioner, MixtureConditionerConfig
from stemforge.unet3d import UNet3D, UNet3DConfig, mixture_pyramid


def _reference_pool(x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Block means by explicit reshaping, in float64."""
    b, c, t, f = x.shape
    kc, kt, kf = c // size[0], t // size[1], f // size[2]
    return x.double().reshape(b, size[0], kc, size[1], kt, size[2], kf).mean(dim=(2, 4, 6))


def test_pyramid_is_the_unet3d_function_and_block_means():
    torch.manual_seed(0)
    cond = MixtureConditioner(MixtureConditionerConfig.from_name("tiny"))
    mix = torch.randn(3, 8, 32, 16)
    sizes = [(8, 32, 16), (8, 16, 8), (8, 8, 4), (8, 4, 2)]
    ours = cond.pyramid(mix, sizes)
    shared = mixture_pyramid(mix, sizes)
    for level, same, size in zip(ours, shared, sizes):
        assert torch.equal(level, same)
        torch.testing.assert_close(level.double(), _reference_pool(mix, size), rtol=1e-6, atol=1e-6)
    drop = torch.tensor([False, True, False])
    dropped = cond.pyramid(mix, sizes, drop)
    for level, full in zip(dropped, ours):
        assert (level[1] == 0).all() and torch.equal(level[0], full[0]) and torch.equal(level[2], full[2])


def test_stem_mask_embedding_is_a_sum_of_table_rows():
    torch.manual_seed(1)
    cond = MixtureConditioner(MixtureConditionerConfig.from_name("tiny"))
    mask = torch.tensor([[True, False, False, True], [False, False, False, False]])
    emb = cond.stem_mask_embedding(mask)
    table = cond.stem_mask_table
    expected = torch.stack(
        [sum(table[int(mask[b, s]), s] for s in range(4)) for b in range(2)]  # type: ignore[misc]
    )
    torch.testing.assert_close(emb, expected)
    assert not torch.allclose(emb[0], emb[1])
    dropped = cond.stem_mask_embedding(mask, torch.tensor([True, False]))
    assert torch.equal(dropped[0], cond.null_stem_mask.detach()) and torch.equal(dropped[1], emb[1])
    with pytest.raises(ValueError, match="bool tensor in the stem order"):
        cond.stem_mask_embedding(torch.ones(2, 3, dtype=torch.bool))


def test_drop_rates_follow_the_config():
    cfg = MixtureConditionerConfig(
        p_drop_all=0.05, p_drop_mix=0.1, p_drop_text=0.3, p_drop_style=0.0, p_drop_stem_mask=1.0
    )
    cond = MixtureConditioner(cfg)
    drops = cond.sample_drops(20000, generator=torch.Generator().manual_seed(2))
    # Binomial standard error at n = 20000 is <= 0.0035; 4 sigma tolerance.
    assert drops["drop"].float().mean().item() == pytest.approx(0.05, abs=0.014)
    assert drops["drop_mix"].float().mean().item() == pytest.approx(0.1, abs=0.014)
    assert drops["drop_text"].float().mean().item() == pytest.approx(0.3, abs=0.014)
    assert not drops["drop_style"].any() and drops["drop_stem_mask"].all()
    # Independent inputs: joint rate is the product.
    both = (drops["drop_mix"] & drops["drop_text"]).float().mean().item()
    assert both == pytest.approx(0.03, abs=0.01)
    with pytest.raises(ValueError, match="p_drop_mix"):
        MixtureConditionerConfig(p_drop_mix=1.5)


def test_apply_nulls_replaces_only_dropped_rows_and_leaves_input_untouched():
    torch.manual_seed(3)
    cond = MixtureConditioner(MixtureConditionerConfig.from_name("tiny"))
    inputs = {
        "mix_latent": torch.randn(3, 8, 16, 8),
        "text": torch.randn(3, 5, 8),
        "text_mask": torch.ones(3, 5, dtype=torch.bool),
        "text_pooled": torch.randn(3, 8),
        "style": torch.randn(3, 8),
        "stem_mask": torch.tensor([[True, False, True, False]] * 3),
    }
    before = {k: v.clone() for k, v in inputs.items()}
    drops = {"drop": torch.tensor([False, False, True]), "drop_text": torch.tensor([True, False, False])}
    out = cond.apply_nulls(inputs, drops)
    for k, v in inputs.items():
        assert torch.equal(v, before[k])
    assert torch.equal(out["mix_latent"][0], inputs["mix_latent"][0]) and (out["mix_latent"][2] == 0).all()
    assert torch.equal(out["text"][0, 0], cond.null_text[0].detach()) and not out["text_mask"][0, 1:].any()
    assert torch.equal(out["text"][1], inputs["text"][1]) and torch.equal(out["style"][1], inputs["style"][1])
    assert torch.equal(out["style"][2], cond.null_style.detach())
    assert torch.equal(out["stem_mask_embedding"][2], cond.null_stem_mask.detach())


def test_build_feeds_the_unet3d_contract():
    torch.manual_seed(4)
    cfg = dataclasses.replace(UNet3DConfig.from_name("tiny"), stem_mask=True)
    unet = UNet3D(cfg).eval()
    with torch.no_grad():  # the output layer is zero-initialised: give every weight a random value
        for p in unet.parameters():
            p.normal_(0.0, 0.05)
    cond = MixtureConditioner(MixtureConditionerConfig(stem_names=cfg.stems))
    x = torch.randn(2, cfg.num_stems, 2, 16, 8)  # (B, S, C, T, F) with a small latent
    mix = x.sum(dim=1)
    stem_mask = torch.tensor([[True, False, False, False]] * 2)
    c = cond.build(mix, stem_mask=stem_mask, drops={"drop_mix": torch.tensor([False, True])})
    assert set(c) == {"mix_latent", "stem_mask", "drop_mix"}
    t = torch.tensor([10.0, 10.0])
    with torch.no_grad():
        out = unet(x, t, c)
        no_mix = unet(x, t, {"stem_mask": stem_mask})
    assert out.shape == x.shape
    # The dropped row behaves as if the mixture were absent (zeros), the kept row does not.
    torch.testing.assert_close(out[1], no_mix[1], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out[0], no_mix[0], atol=1e-4)
    with pytest.raises(ValueError, match="mix_latent must be"):
        cond.build(torch.randn(2, 3))
