"""Mixture-pyramid wiring, per-row drop for classifier-free guidance, text / style / stem-mask inputs."""

from __future__ import annotations

import pytest
import torch

from stemforge.unet3d import UNet3DConfig, mixture_pyramid

SHAPE = (2, 4, 4, 16, 8)  # (B, S, C, T, F)


def _inputs(seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*SHAPE, generator=gen)
    t = torch.tensor([17.0, 640.25])
    mix = torch.randn(SHAPE[0], *SHAPE[2:], generator=gen)
    return x, t, mix


def test_mixture_is_added_before_every_encoder_block_and_after_every_skip_concatenation(randomized) -> None:
    model = randomized(UNet3DConfig.from_name("tiny"))
    x, t, mix = _inputs()
    seen: dict[str, list] = {"in": [], "out": []}
    hooks = []
    for name, blocks in (
        ("enc", model.input_blocks),
        ("mid", [model.middle_block]),
        ("dec", model.output_blocks),
    ):
        for block in blocks:
            hooks.append(
                block.register_forward_hook(lambda m, args, out, n=name: seen["in"].append((n, args[0], out)))
            )
    with torch.no_grad():
        model(x, t, {"mix_latent": mix})
    for h in hooks:
        h.remove()
    sizes = [(4, 16 // 2**lvl, 8 // 2**lvl) for lvl in range(2)]
    pyramid = [p.unsqueeze(1) for p in mixture_pyramid(mix, sizes)]
    calls = seen["in"]
    enc = [c for c in calls if c[0] == "enc"]
    dec = [c for c in calls if c[0] == "dec"]
    mid = next(c for c in calls if c[0] == "mid")
    # Encoder: block i sees (output of block i-1) + pyramid at its level; block 0 sees x + pyramid.
    previous = x
    for (_, block_in, block_out), level in zip(enc, model.input_levels):
        torch.testing.assert_close(block_in, previous + pyramid[level], rtol=0, atol=1e-6)
        previous = block_out
    torch.testing.assert_close(mid[1], previous, rtol=0, atol=0)  # nothing added before the middle block
    skips = [out for _, _, out in enc]
    previous = mid[2]
    for (_, block_in, block_out), level in zip(dec, model.output_levels):
        expected = torch.cat([previous, skips.pop()], dim=1) + pyramid[level]
        torch.testing.assert_close(block_in, expected, rtol=0, atol=1e-6)
        previous = block_out


def test_dropped_rows_equal_absent_and_zero_mixture_and_batch_rows_are_independent(randomized) -> None:
    model = randomized(UNet3DConfig.from_name("tiny"))
    x, t, mix = _inputs()
    with torch.no_grad():
        cond = model(x, t, {"mix_latent": mix})
        absent = model(x, t)
        zeros = model(x, t, {"mix_latent": torch.zeros_like(mix)})
        both_dropped = model(x, t, {"mix_latent": mix, "drop": torch.tensor([True, True])})
        mixed = model(x, t, {"mix_latent": mix, "drop": torch.tensor([False, True])})
    assert (cond - absent).abs().max() > 1e-2, "the mixture does not reach the output"
    torch.testing.assert_close(absent, zeros, rtol=0, atol=1e-6)
    torch.testing.assert_close(both_dropped, absent, rtol=0, atol=1e-6)
    # One batch holding a conditional and an unconditional row (CFG in one pass).
    torch.testing.assert_close(mixed[0], cond[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(mixed[1], absent[1], rtol=0, atol=1e-5)


def test_batched_cfg_pass_equals_two_separate_passes(randomized) -> None:
    model = randomized(UNet3DConfig.from_name("tiny"))
    x, t, mix = _inputs()
    with torch.no_grad():
        cond = model(x, t, {"mix_latent": mix})
        uncond = model(x, t, {"mix_latent": mix, "drop": torch.ones(2, dtype=torch.bool)})
        batched = model(
            torch.cat([x, x]),
            torch.cat([t, t]),
            {"mix_latent": torch.cat([mix, mix]), "drop": torch.tensor([False, False, True, True])},
        )
    torch.testing.assert_close(batched, torch.cat([cond, uncond]), rtol=1e-5, atol=1e-5)


def _full_config() -> UNet3DConfig:
    return UNet3DConfig.from_name("tiny", text_dim=12, style_dim=6, stem_mask=True)


def _full_cond(seed: int = 2) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "text": torch.randn(2, 5, 12, generator=gen),
        "text_mask": torch.tensor([[True] * 5, [True, True, True, False, False]]),
        "text_pooled": torch.randn(2, 12, generator=gen),
        "style": torch.randn(2, 6, generator=gen),
        "stem_mask": torch.tensor([[True, False, True, False], [False, False, False, True]]),
    }


@pytest.mark.parametrize(
    ("key", "drop_key", "null_keys"),
    [
        ("text", "drop_text", ("text", "text_mask", "text_pooled")),
        ("style", "drop_style", ("style",)),
        ("stem_mask", "drop_stem_mask", ("stem_mask",)),
    ],
)
def test_each_input_matters_and_its_drop_uses_the_learned_null(
    randomized, key: str, drop_key: str, null_keys: tuple
) -> None:
    model = randomized(_full_config())
    x, t, mix = _inputs()
    cond = {"mix_latent": mix, **_full_cond()}
    changed = dict(cond)
    if key == "stem_mask":
        changed[key] = ~cond[key]
    else:
        changed[key] = cond[key] + torch.randn(cond[key].shape)
    without = {k: v for k, v in cond.items() if k not in null_keys}
    with torch.no_grad():
        out = model(x, t, cond)
        out_changed = model(x, t, changed)
        dropped = model(x, t, {**cond, drop_key: torch.tensor([True, False])})
        absent = model(x, t, without)
    assert (out - out_changed).abs().max() > 1e-3, f"cond[{key!r}] does not reach the output"
    torch.testing.assert_close(dropped[0], absent[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dropped[1], out[1], rtol=1e-5, atol=1e-5)
    # A per-input drop leaves the mixture in place: dropping everything differs.
    with torch.no_grad():
        all_dropped = model(x, t, {**cond, "drop": torch.tensor([True, False])})
    assert (all_dropped[0] - dropped[0]).abs().max() > 1e-3


def test_masked_text_tokens_are_ignored(randomized) -> None:
    model = randomized(_full_config())
    x, t, mix = _inputs()
    cond = {"mix_latent": mix, **_full_cond()}
    edited = dict(cond)
    edited["text"] = cond["text"].clone()
    edited["text"][1, 3:] = 100.0  # masked-out positions of row 1
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, edited), model(x, t, cond), rtol=1e-5, atol=1e-5)


def test_drop_mask_nulls_every_input_at_once(randomized) -> None:
    model = randomized(_full_config())
    x, t, mix = _inputs()
    cond = {"mix_latent": mix, **_full_cond()}
    with torch.no_grad():
        dropped = model(x, t, {**cond, "drop": torch.ones(2, dtype=torch.bool)})
        absent = model(x, t)
    torch.testing.assert_close(dropped, absent, rtol=1e-5, atol=1e-5)


def test_conditioning_shapes_are_checked(randomized) -> None:
    model = randomized(_full_config())
    x, t, _ = _inputs()
    with pytest.raises(ValueError, match=r"cond\['style'\] has shape"):
        model(x, t, {"style": torch.randn(2, 5)})
    with pytest.raises(ValueError, match="must be a bool tensor"):
        model(x, t, {"stem_mask": torch.ones(2, 4)})
    with pytest.raises(ValueError, match=r"cond\['text_mask'\] has shape"):
        model(x, t, {"text": torch.randn(2, 5, 12), "text_mask": torch.ones(2, 4, dtype=torch.bool)})


def test_attention_backends_agree_inside_the_network(randomized) -> None:
    # Self-attention and masked text cross-attention through the reference and SDPA backends.
    x, t, mix = _inputs()
    cond = {"mix_latent": mix, **_full_cond()}
    outs = []
    for backend in ("reference", "sdpa"):
        model = randomized(
            UNet3DConfig.from_name(
                "tiny", text_dim=12, style_dim=6, stem_mask=True, attention_backend=backend
            )
        )
        with torch.no_grad():
            outs.append(model(x, t, cond))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
