"""1-D convolutional waveform autoencoder (the codec of the bass-accompaniment paper).

Pasini, Grachten and Lattner, "Bass Accompaniment Generation via Latent Diffusion" (2024), Sec. 3:
"audio autoencoders that efficiently compress audio waveform samples into invertible latent
representations", trained end to end with spectral losses. The paper gives no layer table, so the
layers follow the common strided-convolution design of SoundStream / EnCodec (Zeghidour et al.
2021, Fig. 3): each encoder stage is three dilated residual units (dilations 1, 3, 9) and a strided
convolution (kernel 2 * stride) that doubles the width; the decoder mirrors it with transposed
convolutions. The latent is deterministic (no quantiser, no KL), (B, latent_dim, N / hop) with
``hop = prod(strides)``; the losses are in :mod:`stemforge.codec.losses` (L1 + multi-scale spectral
magnitude and phase, optional adversarial term with HiFi-GAN's discriminators).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor, nn

__all__ = ["WaveformAutoencoder", "WaveformAutoencoderConfig"]


@dataclass(frozen=True)
class WaveformAutoencoderConfig:
    sample_rate: int = 16000
    channels: int = 32
    max_channels: int = 512
    strides: tuple[int, ...] = (2, 4, 5, 8)
    latent_dim: int = 32
    kernel_size: int = 7
    #: 0: 1-D latents (latent_dim, T). F > 0: the codec presents them as (latent_dim / F, T, F), the
    #: (C, T, F) layout of the 3D U-Net (the autoencoder itself is unchanged).
    latent_freq: int = 0

    @classmethod
    def from_name(cls, name: str) -> WaveformAutoencoderConfig:
        """``"base"``: hop 320 (50 latent frames/s at 16 kHz), 32 latent channels; ``"tiny"``: CPU tests."""
        presets = {
            "base": cls(),
            "tiny": cls(channels=8, max_channels=32, strides=(2, 4, 4), latent_dim=8),
        }
        if name not in presets:
            raise ValueError(
                f"WaveformAutoencoderConfig.from_name: unknown preset {name!r}; choose one of {sorted(presets)}"
            )
        return presets[name]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WaveformAutoencoderConfig:
        return cls(**{**data, "strides": tuple(data["strides"])})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def hop_length(self) -> int:
        return math.prod(self.strides)

    def width(self, stage: int) -> int:
        return min(self.channels * 2**stage, self.max_channels)


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ELU(),
            nn.Conv1d(
                channels, channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2
            ),
            nn.ELU(),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)


def _residual_units(channels: int, kernel_size: int) -> list[nn.Module]:
    return [ResidualUnit(channels, kernel_size, d) for d in (1, 3, 9)]


class WaveformAutoencoder(nn.Module):
    """Waveform (B, N) with ``N % hop == 0`` <-> latent (B, latent_dim, N / hop)."""

    def __init__(self, config: WaveformAutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or WaveformAutoencoderConfig()
        cfg = self.config
        if cfg.kernel_size % 2 == 0:
            raise ValueError(f"WaveformAutoencoderConfig.kernel_size must be odd, got {cfg.kernel_size}")
        pad = cfg.kernel_size // 2
        encoder: list[nn.Module] = [nn.Conv1d(1, cfg.width(0), cfg.kernel_size, padding=pad)]
        for stage, stride in enumerate(cfg.strides):
            encoder += _residual_units(cfg.width(stage), cfg.kernel_size)
            # Kernel 2s, padding ceil(s/2): exactly N / s output frames for N divisible by s.
            encoder += [
                nn.ELU(),
                nn.Conv1d(
                    cfg.width(stage), cfg.width(stage + 1), 2 * stride, stride, padding=(stride + 1) // 2
                ),
            ]
        encoder += [nn.ELU(), nn.Conv1d(cfg.width(len(cfg.strides)), cfg.latent_dim, 3, padding=1)]
        self.encoder = nn.Sequential(*encoder)

        decoder: list[nn.Module] = [
            nn.Conv1d(cfg.latent_dim, cfg.width(len(cfg.strides)), cfg.kernel_size, padding=pad)
        ]
        for stage, stride in reversed(list(enumerate(cfg.strides))):
            decoder += [
                nn.ELU(),
                nn.ConvTranspose1d(
                    cfg.width(stage + 1),
                    cfg.width(stage),
                    2 * stride,
                    stride,
                    padding=(stride + 1) // 2,
                    output_padding=stride % 2,
                ),
            ]
            decoder += _residual_units(cfg.width(stage), cfg.kernel_size)
        decoder += [nn.ELU(), nn.Conv1d(cfg.width(0), 1, cfg.kernel_size, padding=pad)]
        self.decoder = nn.Sequential(*decoder)

    @classmethod
    def from_config(cls, config: dict[str, Any] | WaveformAutoencoderConfig) -> WaveformAutoencoder:
        return cls(
            config
            if isinstance(config, WaveformAutoencoderConfig)
            else WaveformAutoencoderConfig.from_dict(config)
        )

    def encode(self, wave: Tensor) -> Tensor:
        hop = self.config.hop_length
        if wave.ndim != 2 or wave.shape[-1] % hop:
            raise ValueError(
                f"WaveformAutoencoder.encode: expected (B, N) with N divisible by hop {hop}, got {tuple(wave.shape)}"
            )
        return self.encoder(wave.unsqueeze(1))

    def decode(self, latent: Tensor) -> Tensor:
        if latent.ndim != 3 or latent.shape[1] != self.config.latent_dim:
            raise ValueError(
                f"WaveformAutoencoder.decode: expected (B, {self.config.latent_dim}, T), got {tuple(latent.shape)}"
            )
        return self.decoder(latent).squeeze(1)

    def forward(self, wave: Tensor) -> Tensor:
        return self.decode(self.encode(wave))
