"""The waveform-autoencoder codec (Pasini et al. 2024): stems (B, S, N) <-> latents (B, S, C, N / hop).

Wraps :class:`stemforge.codec.waveform_autoencoder.WaveformAutoencoder` in the :class:`Codec`
interface; the latent is multiplied by a stored scale factor (1 / std over training data) so that
the diffusion model sees unit-variance latents.

With ``latent_freq = F > 0`` the codec presents the autoencoder's (latent_dim, T) latent as
(latent_dim / F, T, F): channel ``c * F + f`` becomes row ``c``, column ``f``. The numbers are the
same; the layout is the (C, T, F) one that stemforge-unet3d's 3D U-Net takes, so a waveform codec
can back a multi-track LDM (stemforge-insert's demonstration model).
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
        freq = self.config.latent_freq
        if freq < 0 or (freq and self.config.latent_dim % freq):
            raise ValueError(
                f"WaveformCodec: latent_freq {freq} must be 0 (1-D latents) or divide latent_dim "
                f"{self.config.latent_dim}"
            )
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
        return self.config.latent_dim // (self.config.latent_freq or 1)

    @property
    def latent_freq(self) -> int | None:
        return self.config.latent_freq or None

    def _encode(self, wave: Tensor) -> Tensor:
        latent = self.autoencoder.encode(wave)
        freq = self.config.latent_freq
        if not freq:
            return latent
        b, _, t = latent.shape
        return latent.reshape(b, -1, freq, t).transpose(2, 3)

    def _decode(self, latent: Tensor) -> Tensor:
        if self.config.latent_freq:
            b, c, t, f = latent.shape
            latent = latent.transpose(2, 3).reshape(b, c * f, t)
        return self.autoencoder.decode(latent)
