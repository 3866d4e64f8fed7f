"""The MSG-LD codec: log-mel front end -> AutoencoderKL -> latent, and latent -> mel -> HiFi-GAN.

Karchkhadze et al. (MSG-LD), Sec. III and Fig. 1: each stem's waveform becomes a 1024 x 64 log-mel
(10.24 s at 16 kHz), the VAE encoder compresses it by r = 4 to an 8 x 256 x 16 latent, the latent is
multiplied by a scale factor (Rombach et al. 2022, Sec. 4.3.2: 1 / std of the latents, estimated
from data with :func:`stemforge.codec.steps.estimate_scale_factor`), and decoding runs the VAE
decoder and the HiFi-GAN vocoder. The encoder uses the posterior mean (deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from stemforge.codec.autoencoder_kl import AutoencoderKL, AutoencoderKLConfig
from stemforge.codec.base import Codec
from stemforge.codec.hifigan import HiFiGAN, HiFiGANConfig
from stemforge.codec.mel import MelConfig, MelFrontEnd

__all__ = ["MelVAECodec", "MelVAECodecConfig"]


@dataclass(frozen=True)
class MelVAECodecConfig:
    mel: MelConfig = field(default_factory=MelConfig)
    vae: AutoencoderKLConfig = field(default_factory=AutoencoderKLConfig)
    vocoder: HiFiGANConfig = field(default_factory=HiFiGANConfig)

    @classmethod
    def from_name(cls, name: str) -> MelVAECodecConfig:
        """``"msgld"``: the MSG-LD / MusicLDM reference; ``"tiny"``: same front end, small networks."""
        if name not in ("msgld", "tiny"):
            raise ValueError(
                f"MelVAECodecConfig.from_name: unknown preset {name!r}; choose 'msgld' or 'tiny'"
            )
        return cls(
            MelConfig.from_name("msgld"), AutoencoderKLConfig.from_name(name), HiFiGANConfig.from_name(name)
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MelVAECodecConfig:
        return cls(
            MelConfig(**data["mel"]),
            AutoencoderKLConfig.from_dict(data["vae"]),
            HiFiGANConfig.from_dict(data["vocoder"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"mel": self.mel.to_dict(), "vae": self.vae.to_dict(), "vocoder": self.vocoder.to_dict()}

    def __post_init__(self) -> None:
        if self.vocoder.num_mels != self.mel.n_mels or self.vocoder.hop_length != self.mel.hop_length:
            raise ValueError(
                f"MelVAECodecConfig: the vocoder ({self.vocoder.num_mels} mels, hop {self.vocoder.hop_length}) must "
                f"match the front end ({self.mel.n_mels} mels, hop {self.mel.hop_length})"
            )
        if self.mel.n_mels % self.vae.compression:
            raise ValueError(
                f"MelVAECodecConfig: n_mels {self.mel.n_mels} is not divisible by the VAE compression {self.vae.compression}"
            )


class MelVAECodec(Codec):
    """Stems (B, S, N) <-> latents (B, S, embed_dim, N / (hop * r), n_mels / r)."""

    kind = "mel_vae"

    def __init__(self, config: MelVAECodecConfig | None = None) -> None:
        super().__init__()
        self.config = config or MelVAECodecConfig()
        self.front_end = MelFrontEnd(self.config.mel)
        self.vae = AutoencoderKL(self.config.vae)
        self.vocoder = HiFiGAN(self.config.vocoder)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MelVAECodec:
        return cls(MelVAECodecConfig.from_dict(config))

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    @property
    def sample_rate(self) -> int:
        return self.config.mel.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.mel.hop_length * self.config.vae.compression

    @property
    def latent_channels(self) -> int:
        return self.config.vae.embed_dim

    @property
    def latent_freq(self) -> int:
        return self.config.mel.n_mels // self.config.vae.compression

    def mel(self, wave: Tensor) -> Tensor:
        """The codec's own log-mel front end: (..., N) -> (..., N // hop, n_mels)."""
        return self.front_end(wave)

    def _encode(self, wave: Tensor) -> Tensor:
        return self.vae.encode(self.front_end(wave)).mode()

    def _decode(self, latent: Tensor) -> Tensor:
        return self.vocoder(self.vae.decode(latent))
