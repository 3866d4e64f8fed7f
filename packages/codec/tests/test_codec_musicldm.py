"""Loading MusicLDM / AudioLDM / HiFi-GAN checkpoints from disk.

The reference modules below are written in the style of latent-diffusion's
``ldm/modules/diffusionmodules/model.py`` and HiFi-GAN's ``models.py`` (module names, the old
``torch.nn.utils.weight_norm`` with ``weight_g``/``weight_v``), independently of stemforge's
modules. Their state dicts are saved with ``torch.save`` in MusicLDM's layout, loaded through the
name mapping, and the outputs compared: a wrong mapping (swapped tensors, a wrong level order, g
and v exchanged) changes the outputs and fails the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from stemforge.codec import (
    AutoencoderKLConfig,
    HiFiGANConfig,
    MelVAECodecConfig,
    load_musicldm_codec,
    load_musicldm_vae,
    load_musicldm_vocoder,
)
from stemforge.codec.mel import MelConfig

pytestmark = pytest.mark.filterwarnings("ignore:.*weight_norm.*:FutureWarning")


# ----- latent-diffusion reference (names as in ldm/modules/diffusionmodules/model.py) -----------
def Normalize(c: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class RefResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = Normalize(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2, self.conv2 = Normalize(cout), nn.Conv2d(cout, cout, 3, 1, 1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.norm1(x) * torch.sigmoid(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class RefAttnBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.norm = Normalize(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape
        q = q.reshape(b, c, hh * ww).permute(0, 2, 1)
        w_ = torch.bmm(q, k.reshape(b, c, hh * ww)) * (c**-0.5)
        w_ = torch.softmax(w_, dim=2)
        h = torch.bmm(v.reshape(b, c, hh * ww), w_.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(h)


class RefEncoder(nn.Module):
    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, z: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(1, ch, 3, 1, 1)
        in_ch_mult = (1, *ch_mult)
        self.down = nn.ModuleList()
        for i_level in range(len(ch_mult)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i_level], ch * ch_mult[i_level]
            for _ in range(num_res_blocks):
                block.append(RefResnetBlock(block_in, block_out))
                block_in = block_out
            down = nn.Module()
            down.block, down.attn = block, attn
            if i_level != len(ch_mult) - 1:
                down.downsample = nn.Module()
                down.downsample.conv = nn.Conv2d(block_in, block_in, 3, 2, 0)
            self.down.append(down)
        self.mid = nn.Module()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = (
            RefResnetBlock(block_in, block_in),
            RefAttnBlock(block_in),
            RefResnetBlock(block_in, block_in),
        )
        self.norm_out, self.conv_out = Normalize(block_in), nn.Conv2d(block_in, 2 * z, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for down in self.down:
            for block in down.block:
                h = block(h)
            if hasattr(down, "downsample"):
                h = down.downsample.conv(F.pad(h, (0, 1, 0, 1), mode="constant", value=0))
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class RefDecoder(nn.Module):
    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, z: int) -> None:
        super().__init__()
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z, block_in, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1, self.mid.attn_1, self.mid.block_2 = (
            RefResnetBlock(block_in, block_in),
            RefAttnBlock(block_in),
            RefResnetBlock(block_in, block_in),
        )
        self.up = nn.ModuleList()
        for i_level in reversed(range(len(ch_mult))):
            block = nn.ModuleList()
            block_out = ch * ch_mult[i_level]
            for _ in range(num_res_blocks + 1):
                block.append(RefResnetBlock(block_in, block_out))
                block_in = block_out
            up = nn.Module()
            up.block, up.attn = block, nn.ModuleList()
            if i_level != 0:
                up.upsample = nn.Module()
                up.upsample.conv = nn.Conv2d(block_in, block_in, 3, 1, 1)
            self.up.insert(0, up)
        self.norm_out, self.conv_out = Normalize(block_in), nn.Conv2d(block_in, 1, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for i_level in reversed(range(len(self.up))):
            for block in self.up[i_level].block:
                h = block(h)
            if i_level != 0:
                h = self.up[i_level].upsample.conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class RefAutoencoderKL(nn.Module):
    def __init__(self, ch: int = 32, ch_mult: tuple[int, ...] = (1, 2, 4), nres: int = 2, z: int = 8) -> None:
        super().__init__()
        self.encoder, self.decoder = RefEncoder(ch, ch_mult, nres, z), RefDecoder(ch, ch_mult, nres, z)
        self.quant_conv, self.post_quant_conv = nn.Conv2d(2 * z, 2 * z, 1), nn.Conv2d(z, z, 1)


# ----- HiFi-GAN reference (names as in jik876/hifi-gan models.py) ----------------------------------
def get_padding(k: int, d: int = 1) -> int:
    return int((k * d - d) / 2)


class RefResBlock1(nn.Module):
    def __init__(self, ch: int, k: int, dilation: tuple[int, ...]) -> None:
        super().__init__()
        wn = nn.utils.weight_norm
        self.convs1 = nn.ModuleList(
            wn(nn.Conv1d(ch, ch, k, 1, dilation=d, padding=get_padding(k, d))) for d in dilation
        )
        self.convs2 = nn.ModuleList(
            wn(nn.Conv1d(ch, ch, k, 1, dilation=1, padding=get_padding(k, 1))) for _ in dilation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = c2(F.leaky_relu(c1(F.leaky_relu(x, 0.1)), 0.1))
            x = xt + x
        return x


class RefGenerator(nn.Module):
    def __init__(self, h: HiFiGANConfig) -> None:
        super().__init__()
        wn = nn.utils.weight_norm
        self.num_kernels = len(h.resblock_kernel_sizes)
        self.conv_pre = wn(nn.Conv1d(h.num_mels, h.upsample_initial_channel, 7, 1, padding=3))
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(h.upsample_rates, h.upsample_kernel_sizes)):
            c = h.upsample_initial_channel
            self.ups.append(
                wn(nn.ConvTranspose1d(c // (2**i), c // (2 ** (i + 1)), k, u, padding=(k - u) // 2))
            )
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = h.upsample_initial_channel // (2 ** (i + 1))
            for k, d in zip(h.resblock_kernel_sizes, h.resblock_dilation_sizes):
                self.resblocks.append(RefResBlock1(ch, k, d))
        self.conv_post = wn(nn.Conv1d(ch, 1, 7, 1, padding=3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(x)
        for i in range(len(self.ups)):
            x = self.ups[i](F.leaky_relu(x, 0.1))
            xs = None
            for j in range(self.num_kernels):
                out = self.resblocks[i * self.num_kernels + j](x)
                xs = out if xs is None else xs + out
            x = xs / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


VAE_CFG = AutoencoderKLConfig(ch=32, ch_mult=(1, 2, 4), num_res_blocks=2, z_channels=8, embed_dim=8)
VOC_CFG = HiFiGANConfig(upsample_initial_channel=64)
CODEC_CFG = MelVAECodecConfig(MelConfig(), VAE_CFG, VOC_CFG)


def _randomise(module: nn.Module) -> None:
    """Move every parameter away from its init (GroupNorm gains of 1, zero biases) so none is trivial."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.05 * torch.randn_like(p))


@pytest.fixture(scope="module")
def references() -> tuple[RefAutoencoderKL, RefGenerator]:
    torch.manual_seed(0)
    vae, gen = RefAutoencoderKL().eval(), RefGenerator(VOC_CFG).eval()
    _randomise(vae)
    _randomise(gen)
    return vae, gen


@pytest.fixture(scope="module")
def musicldm_file(
    tmp_path_factory: pytest.TempPathFactory, references: tuple[RefAutoencoderKL, RefGenerator]
) -> Path:
    """A Lightning-style MusicLDM checkpoint: VAE + bundled vocoder (weight norm folded) + scale_factor."""
    vae, gen = references
    state = {f"first_stage_model.{k}": v for k, v in vae.state_dict().items()}
    folded = RefGenerator(VOC_CFG)
    folded.load_state_dict(gen.state_dict())
    for module in folded.modules():
        if hasattr(module, "weight_g"):
            nn.utils.remove_weight_norm(module)
    state |= {f"first_stage_model.vocoder.{k}": v for k, v in folded.state_dict().items()}
    state |= {
        "scale_factor": torch.tensor(0.9227),
        "model.diffusion_model.input_blocks.0.0.weight": torch.randn(4, 4),
    }
    path = tmp_path_factory.mktemp("musicldm") / "musicldm-ckpt.ckpt"
    torch.save({"state_dict": state, "epoch": 3, "global_step": 1000}, path)
    return path


@pytest.fixture(scope="module")
def hifigan_file(
    tmp_path_factory: pytest.TempPathFactory, references: tuple[RefAutoencoderKL, RefGenerator]
) -> Path:
    """An original HiFi-GAN generator file: {"generator": state dict with weight_g / weight_v}."""
    path = tmp_path_factory.mktemp("hifigan") / "g_01000000"
    state = references[1].state_dict()
    assert "ups.0.weight_g" in state and "resblocks.0.convs1.0.weight_v" in state
    torch.save({"generator": state}, path)
    return path


@torch.no_grad()
def test_vae_mapping_reproduces_reference_outputs(references, musicldm_file: Path) -> None:
    ref, _ = references
    vae, scale = load_musicldm_vae(musicldm_file, VAE_CFG)
    assert scale == pytest.approx(0.9227)
    mel = torch.randn(2, 32, 64)
    ref_mean = ref.quant_conv(ref.encoder(mel[:, None])).chunk(2, dim=1)[0]
    torch.testing.assert_close(vae.encode(mel).mean, ref_mean, rtol=1e-4, atol=1e-4)
    z = torch.randn(2, 8, 8, 16)
    torch.testing.assert_close(vae.decode(z), ref.decoder(ref.post_quant_conv(z))[:, 0], rtol=1e-4, atol=1e-4)


@torch.no_grad()
@pytest.mark.parametrize("which", ["hifigan", "musicldm"])
def test_vocoder_mapping_reproduces_reference_outputs(
    references, hifigan_file: Path, musicldm_file: Path, which: str
) -> None:
    _, ref = references
    vocoder = load_musicldm_vocoder(hifigan_file if which == "hifigan" else musicldm_file, VOC_CFG)
    mel = torch.randn(2, 12, 64)
    expected = ref(mel.transpose(1, 2))[:, 0, : 12 * 160]
    torch.testing.assert_close(vocoder(mel), expected, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_codec_from_musicldm_checkpoint(references, musicldm_file: Path, hifigan_file: Path) -> None:
    codec = load_musicldm_codec(musicldm_file, hifigan_file, CODEC_CFG)
    assert float(codec.scale_factor) == pytest.approx(0.9227)
    wave = 0.1 * torch.randn(1, 2, 2560)
    latent = codec.encode(wave)
    ref_vae, _ = references
    mel = codec.mel(wave[0])
    ref_latent = ref_vae.quant_conv(ref_vae.encoder(mel[:, None])).chunk(2, dim=1)[0] * 0.9227
    torch.testing.assert_close(latent[0], ref_latent, rtol=1e-4, atol=1e-4)
    assert codec.decode(latent).shape == (1, 2, 2560)
    assert float(load_musicldm_codec(musicldm_file, config=CODEC_CFG, scale_factor=0.5).scale_factor) == 0.5


def test_a_wrong_mapping_would_be_caught(references, musicldm_file: Path) -> None:
    """Exchanging two same-shaped tensors (q and k of the attention) changes the output."""
    ref, _ = references
    vae, _ = load_musicldm_vae(musicldm_file, VAE_CFG)
    state = vae.state_dict()
    state["encoder.mid.attn_1.q.weight"], state["encoder.mid.attn_1.k.weight"] = (
        state["encoder.mid.attn_1.k.weight"],
        state["encoder.mid.attn_1.q.weight"],
    )
    vae.load_state_dict(state)
    mel = torch.randn(1, 32, 64)
    with torch.no_grad():
        ref_mean = ref.quant_conv(ref.encoder(mel[:, None])).chunk(2, dim=1)[0]
        assert not torch.allclose(vae.encode(mel).mean, ref_mean, rtol=1e-4, atol=1e-4)


def test_files_that_are_not_what_they_claim(tmp_path: Path, musicldm_file: Path, hifigan_file: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_musicldm_vae(tmp_path / "missing.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(ValueError, match=r"garbage\.ckpt: not a PyTorch checkpoint"):
        load_musicldm_vae(garbage)
    pickled = tmp_path / "object.ckpt"
    torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(1)}, "cfg": Path("x")}, pickled)
    with pytest.raises(ValueError, match="weights_only"):
        load_musicldm_vae(pickled)
    with pytest.raises(ValueError, match="no latent-diffusion VAE weights"):
        load_musicldm_vae(hifigan_file)
    vae_only = tmp_path / "vae_only.ckpt"
    torch.save(
        {
            k: v
            for k, v in torch.load(musicldm_file, weights_only=True)["state_dict"].items()
            if ".vocoder." not in k
        },
        vae_only,
    )
    with pytest.raises(ValueError, match="no HiFi-GAN generator weights"):
        load_musicldm_vocoder(vae_only)
    # The real MSG-LD shapes differ from this small file: the error names the file and the shapes.
    with pytest.raises(
        ValueError, match=r"musicldm-ckpt.ckpt: does not match the AutoencoderKL configuration"
    ):
        load_musicldm_vae(musicldm_file)
    with pytest.raises(ValueError, match="HiFiGAN configuration"):
        load_musicldm_vocoder(
            hifigan_file,
            HiFiGANConfig(
                upsample_initial_channel=64,
                resblock_kernel_sizes=(3, 7),
                resblock_dilation_sizes=((1, 3, 5),) * 2,
            ),
        )
