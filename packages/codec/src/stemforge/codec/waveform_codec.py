"""The waveform-autoencoder codec (Pasini et al. 2024): stems (B, S, N) <-> latents (B, S, C, N / hop).

Wraps :class:`stemforge.codec.waveform_autoencoder.WaveformAutoencoder` in the :class:`Codec`
interface; the latent is multiplied by a stored scale factor (1 / std over training data) so that
the diffusion model sees unit-variance latents.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from stemforge.codec.base import Codec
from stemforge.codec.waveform_autoencoder import WaveformAutoencoder, WaveformAutoencoderConfig

__all__ = ["WaveformCodec"]


class WaveformCodec(Codec):
    kind = "waveform_autoencoder"
    default_chunk_frames = 1024
    default_overlap_frames = 32
    default_context_frames = 32

    def __init__(self, config: WaveformAutoencoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or WaveformAutoencoderConfig()
        self.autoencoder = WaveformAutoencoder(self.config)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WaveformCodec:
        return cls(WaveformAutoencoderConfig.from_dict(config))

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def latent_channels(self) -> int:
        return self.config.latent_dim

    def _encode(self, wave: Tensor) -> Tensor:
        return self.autoencoder.encode(wave)

    def _decode(self, latent: Tensor) -> Tensor:
        return self.autoencoder.decode(latent)
