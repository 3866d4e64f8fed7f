"""AutoencoderKL on log-mel spectrograms (the VAE of AudioLDM / MusicLDM / MSG-LD).

Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models" (CVPR 2022),
Sec. 3.1 and Appendix G: a convolutional encoder E and decoder D with a KL-regularised latent,
``q(z|x) = N(mu(x), diag(sigma(x)^2))``; the loss is the reconstruction term plus
``beta * KL(q(z|x) || N(0, I))``. MSG-LD (Karchkhadze et al., Sec. III) encodes each stem's 1024 x 64
mel separately into an 8 x 256 x 16 latent with ch 128, ch_mult [1, 2, 4], 2 res blocks, z 8 and
no attention at any resolution.

Module and parameter names follow latent-diffusion's ``ldm/modules/diffusionmodules/model.py``
(``encoder.down.0.block.0.norm1.weight`` ...) so that MusicLDM's released weights map onto them
one to one (see :mod:`stemforge.codec.musicldm`). latent-diffusion always places one
self-attention layer in the middle block (``mid.attn_1``) whatever ``attn_resolutions`` says;
``mid_attention=True`` keeps it so that those checkpoints load.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["AutoencoderKL", "AutoencoderKLConfig", "DiagonalGaussian"]


@dataclass(frozen=True)
class AutoencoderKLConfig:
    """Hyper-parameters of :class:`AutoencoderKL` (latent-diffusion's ``ddconfig`` + ``embed_dim``)."""

    in_channels: int = 1
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 8
    embed_dim: int = 8
    mid_attention: bool = True
    norm_groups: int = 32

    @classmethod
    def from_name(cls, name: str) -> AutoencoderKLConfig:
        """``"msgld"``: MSG-LD / MusicLDM reference; ``"tiny"``: a CPU-test size with the same shape rules."""
        presets = {
            "msgld": cls(),
            "tiny": cls(ch=16, ch_mult=(1, 2, 2), num_res_blocks=1, norm_groups=8),
        }
        if name not in presets:
            raise ValueError(
                f"AutoencoderKLConfig.from_name: unknown preset {name!r}; choose one of {sorted(presets)}"
            )
        return presets[name]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutoencoderKLConfig:
        return cls(**{**data, "ch_mult": tuple(data["ch_mult"])})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def compression(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return shortcut + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all (T x F) positions with 1x1 projections."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, f = x.shape
        h = self.norm(x)
        q, k, v = (proj(h).reshape(b, 1, c, t * f).transpose(-1, -2) for proj in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(attended.transpose(-1, -2).reshape(b, c, t, f))


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        # Asymmetric padding as latent-diffusion: pad right/bottom by one.
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution level: ``block`` (res blocks) and an optional ``downsample``/``upsample``."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()

    def forward(self, h: Tensor) -> Tensor:
        for block in self.block:
            h = block(h)
        for name in ("downsample", "upsample"):
            resample = self._modules.get(name)
            if resample is not None:
                h = resample(h)
        return h


class _Mid(nn.Module):
    def __init__(self, channels: int, attention: bool, groups: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups)
        self.attn_1 = AttnBlock(channels, groups) if attention else None
        self.block_2 = ResnetBlock(channels, channels, groups)

    def forward(self, x: Tensor) -> Tensor:
        x = self.block_1(x)
        if self.attn_1 is not None:
            x = self.attn_1(x)
        return self.block_2(x)


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderKLConfig) -> None:
        super().__init__()
        g = cfg.norm_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        in_mult = (1, *cfg.ch_mult)
        self.down = nn.ModuleList()
        for level, mult in enumerate(cfg.ch_mult):
            stage = _Level()
            block_in, block_out = cfg.ch * in_mult[level], cfg.ch * mult
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, g))
                block_in = block_out
            if level != len(cfg.ch_mult) - 1:
                stage.downsample = Downsample(block_in)
            self.down.append(stage)
        self.mid = _Mid(block_in, cfg.mid_attention, g)
        self.norm_out = _norm(block_in, g)
        self.conv_out = nn.Conv2d(block_in, 2 * cfg.z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderKLConfig) -> None:
        super().__init__()
        g = cfg.norm_groups
        block_in = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in, cfg.mid_attention, g)
        levels: list[_Level] = []
        for level in reversed(range(len(cfg.ch_mult))):
            stage = _Level()
            block_out = cfg.ch * cfg.ch_mult[level]
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, g))
                block_in = block_out
            if level != 0:
                stage.upsample = Upsample(block_in)
            levels.insert(0, stage)
        # Indexed by resolution level as latent-diffusion (``up.0`` is the finest).
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(block_in, g)
        self.conv_out = nn.Conv2d(block_in, cfg.in_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            h = stage(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class DiagonalGaussian:
    """``q(z|x)`` with log-variance clamped to [-30, 20] (latent-diffusion)."""

    def __init__(self, moments: Tensor) -> None:
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = torch.clamp(logvar, -30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * noise

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) summed over latent elements, one value per batch row."""
        return 0.5 * torch.sum(self.mean.square() + self.logvar.exp() - 1.0 - self.logvar, dim=(1, 2, 3))


class AutoencoderKL(nn.Module):
    """Mel (B, T, M) <-> latent (B, embed_dim, T / r, M / r), r = ``2 ** (len(ch_mult) - 1)``."""

    def __init__(self, config: AutoencoderKLConfig | None = None) -> None:
        super().__init__()
        self.config = config or AutoencoderKLConfig()
        cfg = self.config
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    @classmethod
    def from_config(cls, config: dict[str, Any] | AutoencoderKLConfig) -> AutoencoderKL:
        return cls(
            config if isinstance(config, AutoencoderKLConfig) else AutoencoderKLConfig.from_dict(config)
        )

    def encode(self, mel: Tensor) -> DiagonalGaussian:
        r = self.config.compression
        if mel.ndim != 3 or mel.shape[1] % r or mel.shape[2] % r:
            raise ValueError(
                f"AutoencoderKL.encode: expected a mel (B, T, M) with T and M divisible by {r}, got "
                f"{tuple(mel.shape)}; pad the waveform to a multiple of {r} hops"
            )
        return DiagonalGaussian(self.quant_conv(self.encoder(mel.unsqueeze(1))))

    def decode(self, z: Tensor) -> Tensor:
        if z.ndim != 4 or z.shape[1] != self.config.embed_dim:
            raise ValueError(
                f"AutoencoderKL.decode: expected a latent (B, {self.config.embed_dim}, T, F), got {tuple(z.shape)}"
            )
        return self.decoder(self.post_quant_conv(z)).squeeze(1)

    def forward(self, mel: Tensor, sample: bool = True) -> tuple[Tensor, DiagonalGaussian]:
        posterior = self.encode(mel)
        z = posterior.sample() if sample else posterior.mode()
        return self.decode(z), posterior
