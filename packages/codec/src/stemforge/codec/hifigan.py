"""HiFi-GAN V1 generator: log-mel (B, T, M) -> waveform (B, T * hop).

Kong, Kim and Bae, "HiFi-GAN: Generative Adversarial Networks for Efficient and High Fidelity
Speech Synthesis" (NeurIPS 2020), Sec. 2.1 and Fig. 1: transposed convolutions upsample the mel
by ``prod(upsample_rates)``; after each, a multi-receptive-field fusion (MRF) averages
``len(resblock_kernel_sizes)`` residual blocks (ResBlock1: two dilated convolutions per dilation
with leaky ReLU 0.1). MusicLDM's 16 kHz vocoder (used unchanged by MSG-LD) has 64 mels,
upsample rates (5, 4, 2, 2, 2) = hop 160, kernels (16, 16, 8, 4, 4) and 1024 initial channels.

Every convolution is weight-normalised (Salimans and Kingma 2016) through
``torch.nn.utils.parametrizations.weight_norm``; parameter names are HiFi-GAN's (``conv_pre``,
``ups.i``, ``resblocks.j.convs1.k``, ``conv_post``) with ``weight_g`` / ``weight_v`` stored as
``parametrizations.weight.original0`` / ``original1``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["HiFiGAN", "HiFiGANConfig"]

LRELU_SLOPE = 0.1


@dataclass(frozen=True)
class HiFiGANConfig:
    num_mels: int = 64
    upsample_rates: tuple[int, ...] = (5, 4, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16, 8, 4, 4)
    upsample_initial_channel: int = 1024
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))

    @classmethod
    def from_name(cls, name: str) -> HiFiGANConfig:
        """``"msgld"``: MusicLDM's 16 kHz V1 vocoder; ``"tiny"``: CPU-test size, same hop of 160."""
        presets = {
            "msgld": cls(),
            "tiny": cls(
                upsample_initial_channel=32, resblock_kernel_sizes=(3,), resblock_dilation_sizes=((1, 3),)
            ),
        }
        if name not in presets:
            raise ValueError(
                f"HiFiGANConfig.from_name: unknown preset {name!r}; choose one of {sorted(presets)}"
            )
        return presets[name]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HiFiGANConfig:
        return cls(
            **{
                **data,
                "upsample_rates": tuple(data["upsample_rates"]),
                "upsample_kernel_sizes": tuple(data["upsample_kernel_sizes"]),
                "resblock_kernel_sizes": tuple(data["resblock_kernel_sizes"]),
                "resblock_dilation_sizes": tuple(tuple(d) for d in data["resblock_dilation_sizes"]),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def hop_length(self) -> int:
        return math.prod(self.upsample_rates)


def _padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(
                nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_padding(kernel_size, d))
            )
            for d in dilations
        )
        self.convs2 = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, padding=_padding(kernel_size, 1)))
            for _ in dilations
        )

    def forward(self, x: Tensor) -> Tensor:
        for conv1, conv2 in zip(self.convs1, self.convs2):
            x = x + conv2(F.leaky_relu(conv1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class HiFiGAN(nn.Module):
    """The V1 generator; :meth:`forward` takes a natural-log mel (B, T, M) and returns (B, T * hop)."""

    def __init__(self, config: HiFiGANConfig | None = None) -> None:
        super().__init__()
        self.config = config or HiFiGANConfig()
        cfg = self.config
        if len(cfg.upsample_rates) != len(cfg.upsample_kernel_sizes):
            raise ValueError(
                "HiFiGANConfig: upsample_rates and upsample_kernel_sizes must have the same length"
            )
        if len(cfg.resblock_kernel_sizes) != len(cfg.resblock_dilation_sizes):
            raise ValueError(
                "HiFiGANConfig: resblock_kernel_sizes and resblock_dilation_sizes must have the same length"
            )
        channels = cfg.upsample_initial_channel
        self.conv_pre = weight_norm(nn.Conv1d(cfg.num_mels, channels, 7, padding=3))
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        for i, (rate, kernel) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)):
            in_ch, out_ch = channels // 2**i, channels // 2 ** (i + 1)
            self.ups.append(
                weight_norm(nn.ConvTranspose1d(in_ch, out_ch, kernel, rate, padding=(kernel - rate) // 2))
            )
            for k, dilations in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes):
                self.resblocks.append(ResBlock1(out_ch, k, tuple(dilations)))
        self.conv_post = weight_norm(nn.Conv1d(out_ch, 1, 7, padding=3))

    @classmethod
    def from_config(cls, config: dict[str, Any] | HiFiGANConfig) -> HiFiGAN:
        return cls(config if isinstance(config, HiFiGANConfig) else HiFiGANConfig.from_dict(config))

    def forward(self, mel: Tensor) -> Tensor:
        if mel.ndim != 3 or mel.shape[-1] != self.config.num_mels:
            raise ValueError(
                f"HiFiGAN: expected a log-mel (B, T, {self.config.num_mels}), got {tuple(mel.shape)}"
            )
        num_frames = mel.shape[1]
        x = self.conv_pre(mel.transpose(1, 2))
        num_kernels = len(self.config.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            fused = sum(self.resblocks[i * num_kernels + j](x) for j in range(num_kernels))
            x = fused / num_kernels
        # HiFi-GAN's last activation uses leaky_relu's default slope (0.01), not LRELU_SLOPE.
        wave = self.conv_post(F.leaky_relu(x)).tanh()
        # Odd (kernel - rate) gives a few extra samples (AudioLDM trims them too).
        return wave[:, 0, : num_frames * self.config.hop_length]
