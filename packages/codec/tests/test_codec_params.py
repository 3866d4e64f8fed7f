"""Parameter counts of the MSG-LD VAE and vocoder, printed and checked against counts computed
layer by layer from the configuration (MSG-LD reports 128M for VAE + vocoder together; see README)."""

from __future__ import annotations

import pytest

from stemforge.codec import (
    AutoencoderKL,
    AutoencoderKLConfig,
    HiFiGAN,
    HiFiGANConfig,
    MelVAECodec,
    MelVAECodecConfig,
)


def conv(cin: int, cout: int, k: int, dims: int = 2) -> int:
    return cin * cout * k**dims + cout


def resnet(cin: int, cout: int) -> int:
    return (
        2 * cin
        + conv(cin, cout, 3)
        + 2 * cout
        + conv(cout, cout, 3)
        + (conv(cin, cout, 1) if cin != cout else 0)
    )


def attention(c: int) -> int:
    return 2 * c + 4 * conv(c, c, 1)


def expected_vae(cfg: AutoencoderKLConfig) -> int:
    ch, mult, nres = cfg.ch, cfg.ch_mult, cfg.num_res_blocks
    mid = 2 * resnet(ch * mult[-1], ch * mult[-1]) + (attention(ch * mult[-1]) if cfg.mid_attention else 0)
    enc = conv(cfg.in_channels, ch, 3)
    c = ch
    for level, m in enumerate(mult):
        for _ in range(nres):
            enc += resnet(c, ch * m)
            c = ch * m
        enc += conv(c, c, 3) if level < len(mult) - 1 else 0
    enc += mid + 2 * c + conv(c, 2 * cfg.z_channels, 3)
    dec = conv(cfg.z_channels, c, 3) + mid
    for level in reversed(range(len(mult))):
        for _ in range(nres + 1):
            dec += resnet(c, ch * mult[level])
            c = ch * mult[level]
        dec += conv(c, c, 3) if level > 0 else 0
    dec += 2 * c + conv(c, cfg.in_channels, 3)
    quant = conv(2 * cfg.z_channels, 2 * cfg.embed_dim, 1) + conv(cfg.embed_dim, cfg.z_channels, 1)
    return enc + dec + quant


def expected_vocoder(cfg: HiFiGANConfig, with_weight_norm_gains: bool) -> int:
    """Weights + biases; ``weight_g`` adds one gain per output (conv) or input (transposed conv) channel."""
    c = cfg.upsample_initial_channel
    total = conv(cfg.num_mels, c, 7, 1) + (c if with_weight_norm_gains else 0)
    for i, k in enumerate(cfg.upsample_kernel_sizes):
        cin, cout = c // 2**i, c // 2 ** (i + 1)
        total += conv(cin, cout, k, 1) + (cin if with_weight_norm_gains else 0)
        for rk, dilations in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes):
            total += 2 * len(dilations) * (conv(cout, cout, rk, 1) + (cout if with_weight_norm_gains else 0))
    return total + conv(cout, 1, 7, 1) + (1 if with_weight_norm_gains else 0)


@pytest.mark.parametrize("preset", ["msgld", "tiny"])
def test_parameter_counts_match_configuration(preset: str) -> None:
    vae_cfg, voc_cfg = AutoencoderKLConfig.from_name(preset), HiFiGANConfig.from_name(preset)
    vae = sum(p.numel() for p in AutoencoderKL(vae_cfg).parameters())
    vocoder = HiFiGAN(voc_cfg)
    trainable = sum(p.numel() for p in vocoder.parameters())
    inference = trainable - sum(
        p.numel()
        for name, p in vocoder.named_parameters()
        if name.endswith("parametrizations.weight.original0")
    )
    print(
        f"\n[{preset}] VAE {vae:,} | vocoder {trainable:,} trainable ({inference:,} with weight norm folded) | "
        f"VAE + vocoder {vae + inference:,}"
    )
    assert vae == expected_vae(vae_cfg)
    assert trainable == expected_vocoder(voc_cfg, with_weight_norm_gains=True)
    assert inference == expected_vocoder(voc_cfg, with_weight_norm_gains=False)
    if preset == "msgld":
        assert vae_cfg.ch == 128 and vae_cfg.ch_mult == (1, 2, 4) and vae_cfg.z_channels == 8
        assert voc_cfg.hop_length == 160 and voc_cfg.num_mels == 64
        without_attention = (
            vae - sum(p.numel() for p in AutoencoderKL(vae_cfg).encoder.mid.attn_1.parameters()) * 2
        )
        print(f"[{preset}] VAE without the middle attention layers: {without_attention:,}")
        assert vae + inference == 110_641_770


def test_msgld_codec_shapes() -> None:
    """10.24 s at 16 kHz -> 1024 x 64 mel -> 8 x 256 x 16 latent per stem (MSG-LD, Sec. IV)."""
    codec = MelVAECodec(MelVAECodecConfig.from_name("msgld"))
    assert codec.front_end.num_frames(163840) == 1024 and codec.config.mel.n_mels == 64
    assert codec.latent_shape(163840) == (8, 256, 16)
    assert codec.hop_length == 640 and codec.latent_rate == 25.0
