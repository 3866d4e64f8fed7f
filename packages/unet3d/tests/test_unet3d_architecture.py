"""Parameter counts, shapes, presets and the building blocks of the 3D U-Net against references."""

from __future__ import annotations

import json
import math

import pytest
import torch

from stemforge.kernels import reference_attention
from stemforge.unet3d import (
    PRESETS,
    DynamicPositionBias,
    FrameGroupNorm,
    GroupNorm32,
    UNet3D,
    UNet3DConfig,
    mixture_pyramid,
    timestep_embedding,
)
from stemforge.unet3d.attention import SelfAttention3D


def _meta_model(name: str, **overrides) -> UNet3D:
    with torch.device("meta"):
        return UNet3D(UNet3DConfig.from_name(name, **overrides))


def test_paper_parameter_count_128_channels() -> None:
    # MSG-LD, sec. 4: "Our model has 305M parameters in the LDM".
    n = _meta_model("msgld-slakh").num_parameters()
    assert n == 305_165_444
    assert round(n / 1e6, 1) == 305.2


def test_parameter_count_192_channels() -> None:
    n = _meta_model("msgld-slakh-192").num_parameters()
    assert n == 686_513_860
    assert round(n / 1e6, 1) == 686.5


def _openaimodel_count(mc: int, mult=(1, 2, 3, 5), nrb=2, attn_ds=(2, 4, 8), stems=4) -> int:
    """Closed-form parameter count of the openaimodel UNet layout with 3x3x3 convolutions."""

    def conv(cin, cout, k=27):
        return cin * cout * k + cout

    def res(cin, cout, emb):
        return (
            2 * cin
            + conv(cin, cout)
            + emb * cout
            + cout
            + 2 * cout
            + conv(cout, cout)
            + (conv(cin, cout, 1) if cin != cout else 0)
        )

    def attn(c):
        return 2 * c + conv(c, 3 * c, 1) + conv(c, c, 1)

    emb = 4 * mc
    total = mc * emb + emb + emb * emb + emb + conv(stems, mc)
    ch, chans, ds = mc, [mc], 1
    for level, m in enumerate(mult):
        for _ in range(nrb):
            total += res(ch, m * mc, emb) + (attn(m * mc) if ds in attn_ds else 0)
            ch = m * mc
            chans.append(ch)
        if level != len(mult) - 1:
            total += conv(ch, ch)
            chans.append(ch)
            ds *= 2
    total += 2 * res(ch, ch, emb) + attn(ch)
    for level, m in reversed(list(enumerate(mult))):
        for i in range(nrb + 1):
            total += res(ch + chans.pop(), m * mc, emb)
            ch = m * mc
            total += attn(ch) if ds in attn_ds else 0
            if level and i == nrb:
                total += conv(ch, ch)
                ds //= 2
    return total + 2 * ch + conv(mc, stems)


@pytest.mark.parametrize("channels", [64, 128, 192])
def test_parameter_count_matches_closed_form(channels: int) -> None:
    assert _meta_model("msgld-slakh", model_channels=channels).num_parameters() == _openaimodel_count(
        channels
    )


def test_paper_attention_token_counts() -> None:
    # Attention over the flattened C x T x F tokens at downsampling 2, 4, 8 of the (8, 256, 16) latent.
    model = _meta_model("msgld-slakh")
    tokens = set()
    for module in model.modules():
        if isinstance(module, SelfAttention3D):
            module.register_forward_pre_hook(
                lambda m, args: tokens.add((m.heads, math.prod(args[0].shape[2:])))
            )
    x = torch.empty(1, 4, 8, 256, 16, device="meta")
    model(x, torch.zeros(1, device="meta"), {"mix_latent": torch.empty(1, 8, 256, 16, device="meta")})
    assert tokens == {(8, 8192), (12, 2048), (20, 512)}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_and_round_trips_through_json(name: str) -> None:
    config = UNet3DConfig.from_name(name)
    again = UNet3DConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert _meta_model(name).num_parameters() > 0


def test_tiny_forward_shape_dtype_and_speed() -> None:
    import time

    torch.manual_seed(0)
    model = UNet3D(UNet3DConfig.from_name("tiny")).eval()
    x = torch.randn(2, 4, 8, 32, 16)
    with torch.no_grad():
        model(x, torch.tensor([3.0, 900.5]))
        # CPU seconds, not wall time: the bound is on the work, whatever else shares the machine.
        start = time.process_time()
        out = model(x, torch.tensor([3.0, 900.5]), {"mix_latent": torch.randn(2, 8, 32, 16)})
        elapsed = time.process_time() - start
    assert out.shape == (2, 4, 8, 32, 16) and out.dtype == torch.float32
    assert elapsed < 2.0, f"tiny forward took {elapsed:.2f} CPU s"


def test_pianoroll_configuration_shapes() -> None:
    torch.manual_seed(0)
    config = UNet3DConfig.from_name("pianoroll-small")
    model = UNet3D(config).eval()
    planes = torch.rand(1, 4, 2, 8, 128).round()
    still_masked = torch.rand(1, 4, 2, 8, 128) < 0.5
    x = torch.cat([planes.masked_fill(still_masked, 0.0), still_masked.float()], dim=1)
    with torch.no_grad():
        logits = model(x, torch.tensor([0.3]))
    assert config.stems == ("soprano", "alto", "tenor", "bass")
    assert logits.shape == (1, 4, 2, 8, 128)
    # Classes per stem for categorical voices: out_channels = S * 129.
    with torch.device("meta"):
        voices = UNet3D(UNet3DConfig.from_name("pianoroll-small", out_channels=4 * 129))
    assert voices(x.to("meta"), torch.zeros(1, device="meta")).shape == (1, 4 * 129, 2, 8, 128)


def test_mixture_pyramid_matches_loop_average() -> None:
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(2, 4, 16, 8, generator=gen, dtype=torch.float64)
    levels = mixture_pyramid(mix, [(4, 16, 8), (4, 8, 4), (2, 4, 2)])
    assert levels[0] is mix
    for level, (c, t, f) in zip(levels[1:], [(4, 8, 4), (2, 4, 2)]):
        kc, kt, kf = 4 // c, 16 // t, 8 // f
        expected = torch.empty(2, c, t, f, dtype=torch.float64)
        for i in range(c):
            for j in range(t):
                for k in range(f):
                    expected[:, i, j, k] = mix[
                        :, i * kc : (i + 1) * kc, j * kt : (j + 1) * kt, k * kf : (k + 1) * kf
                    ].mean(dim=(1, 2, 3))
        torch.testing.assert_close(level, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="does not divide"):
        mixture_pyramid(mix, [(4, 5, 8)])
    with pytest.raises(ValueError, match="without a stem axis"):
        mixture_pyramid(mix[:, None], [(4, 16, 8)])


def test_timestep_embedding_matches_formula() -> None:
    t = torch.tensor([0.0, 1.5, 999.0])
    emb = timestep_embedding(t, 8)
    for row, step in enumerate(t.tolist()):
        for i in range(4):
            w = 10000.0 ** (-i / 4)
            assert emb[row, i].item() == pytest.approx(math.cos(step * w), abs=1e-5)
            assert emb[row, 4 + i].item() == pytest.approx(math.sin(step * w), abs=1e-5)


def _frame_norm_reference(x: torch.Tensor, norm: FrameGroupNorm) -> torch.Tensor:
    b, ch, c, t, f = x.shape
    xd = x.double().reshape(b, norm.num_groups, ch // norm.num_groups, c, t, f)
    mean = xd.mean(dim=(2, 3, 5), keepdim=True)
    var = xd.var(dim=(2, 3, 5), unbiased=False, keepdim=True)
    out = ((xd - mean) / torch.sqrt(var + norm.eps)).reshape(x.shape)
    return out * norm.weight.double().view(1, ch, 1, 1, 1) + norm.bias.double().view(1, ch, 1, 1, 1)


def test_group_norms_match_reference_and_are_bf16_safe() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 3, 5, 4, generator=gen) * 3 + 100.0  # a large mean, where bf16 sums go wrong
    frame = FrameGroupNorm(2, 8)
    with torch.no_grad():
        frame.weight.copy_(torch.randn(8, generator=gen))
        frame.bias.copy_(torch.randn(8, generator=gen))
        torch.testing.assert_close(frame(x).double(), _frame_norm_reference(x, frame), rtol=1e-4, atol=1e-4)
        # bf16 input: statistics in float32 leave only the bf16 rounding of the output (2^-8 relative
        # on values of at most ~4), compared with the exact norm of the same bf16 input.
        xb = x.bfloat16()
        out = frame(xb)
        assert out.dtype == torch.bfloat16
        torch.testing.assert_close(out.double(), _frame_norm_reference(xb, frame), rtol=0, atol=0.04)
        group = GroupNorm32(2, 8)
        ref = torch.nn.functional.group_norm(xb.double(), 2, group.weight.double(), group.bias.double())
        torch.testing.assert_close(group(xb).double(), ref, rtol=0, atol=0.04)


def test_dynamic_position_bias_table_is_length_general() -> None:
    torch.manual_seed(0)
    dpb = DynamicPositionBias(heads=3, hidden=8)
    short, long = dpb(10), dpb(25)
    assert short.shape == (3, 19) and long.shape == (3, 49)
    # The bias for offset d does not depend on the sequence length.
    torch.testing.assert_close(short, long[:, 15:34])
    windowed = DynamicPositionBias(heads=3, hidden=8, window=2)(6)
    offsets = torch.arange(-5, 6)
    assert (
        torch.isinf(windowed[:, offsets.abs() > 2]).all()
        and torch.isfinite(windowed[:, offsets.abs() <= 2]).all()
    )


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(
                torch.randn(p.shape, generator=gen) * 0.2 + (1.0 if p.ndim == 1 and (p == 1).all() else 0.0)
            )


@pytest.mark.parametrize("mode", ["full", "time"])
def test_self_attention_layer_matches_per_sequence_reference(mode: str) -> None:
    layer = SelfAttention3D(
        32, 16, mode=mode, positional_bias="dpb" if mode == "time" else "none", dpb_hidden=8, norm_groups=8
    )
    _randomize(layer)
    x = torch.randn(2, 32, 3, 6, 4, generator=torch.Generator().manual_seed(1))
    out = layer(x)
    tokens = layer.norm(x).reshape(2, 32, -1).transpose(1, 2)
    qkv = layer.qkv(tokens).reshape(2, 3, 6, 4, 3, 2, 16)  # (B, C, T, F, qkv, heads, d)
    mixed = torch.empty(2, 3, 6, 4, 2, 16)
    if mode == "full":
        q, k, v = (qkv[..., i, :, :].reshape(2, -1, 2, 16).transpose(1, 2) for i in range(3))
        mixed = reference_attention(q, k, v).transpose(1, 2).reshape(2, 3, 6, 4, 2, 16)
    else:
        table = layer.dpb(6)
        for c in range(3):
            for f in range(4):
                q, k, v = (qkv[:, c, :, f, i].transpose(1, 2) for i in range(3))  # (B, heads, T, d)
                mixed[:, c, :, f] = reference_attention(q, k, v, rel_bias_table=table).transpose(1, 2)
    expected = x + layer.proj_out(mixed.reshape(2, -1, 32)).transpose(1, 2).reshape(x.shape)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_bad_configs_and_inputs_fail_clearly() -> None:
    with pytest.raises(ValueError, match="no preset"):
        UNet3DConfig.from_name("msgld")
    with pytest.raises(ValueError, match="needs attention='time'"):
        UNet3DConfig(positional_bias="dpb")
    with pytest.raises(ValueError, match="downsampling factors"):
        UNet3DConfig(attention_downsample=(16,))
    with pytest.raises(ValueError, match="unknown keys"):
        UNet3DConfig.from_dict({"channels": 3})
    model = _meta_model("tiny")
    x = torch.empty(1, 4, 8, 32, 16, device="meta")
    t = torch.zeros(1, device="meta")
    with pytest.raises(ValueError, match="divisible by 2"):
        model(torch.empty(1, 4, 8, 31, 16, device="meta"), t)
    with pytest.raises(ValueError, match=r"expected \(B, 4, C, T, F\)"):
        model(torch.empty(1, 3, 8, 32, 16, device="meta"), t)
    with pytest.raises(ValueError, match="one timestep per row"):
        model(x, torch.zeros(2, device="meta"))
    with pytest.raises(ValueError, match="unknown cond keys"):
        model(x, t, {"mixture": x})
    with pytest.raises(ValueError, match="text_dim off"):
        model(x, t, {"text": torch.empty(1, 3, 8, device="meta")})
    with pytest.raises(ValueError, match="mix_latent"):
        model(x, t, {"mix_latent": torch.empty(1, 8, 16, 16, device="meta")})
