"""HiFi-GAN's multi-period (MPD) and multi-scale (MSD) discriminators.

Kong, Kim and Bae (NeurIPS 2020), Sec. 2.2-2.3: the MPD reshapes the waveform into
(T / p, p) for periods p in {2, 3, 5, 7, 11} and applies 2-D convolutions with kernel (5, 1); the
MSD runs 1-D grouped convolutions on the raw audio and on x2 and x4 average-pooled versions, the
first with spectral normalisation, the others with weight normalisation. ``channels`` scales every
layer width (1.0 = the paper) so that tests and short CPU runs can use a narrower copy.
Both return ``(scores, feature_maps)``: one score tensor and one list of feature maps per
sub-discriminator, as the losses in :mod:`stemforge.codec.losses` expect.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

__all__ = ["MultiPeriodDiscriminator", "MultiScaleDiscriminator"]

LRELU_SLOPE = 0.1


def _width(channels: int, scale: float) -> int:
    return max(16, round(channels * scale / 16) * 16)


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, scale: float = 1.0) -> None:
        super().__init__()
        self.period = period
        widths = [1, *(_width(c, scale) for c in (32, 128, 512, 1024))]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(cin, cout, (5, 1), (3, 1), padding=(2, 0)))
            for cin, cout in itertools.pairwise(widths)
        )
        self.convs.append(weight_norm(nn.Conv2d(widths[-1], widths[-1], (5, 1), 1, padding=(2, 0))))
        self.conv_post = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wave: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, c, n = wave.shape
        if n % self.period:
            wave = F.pad(wave, (0, self.period - n % self.period), mode="reflect")
            n = wave.shape[-1]
        x = wave.view(b, c, n // self.period, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        x = self.conv_post(x)
        features.append(x)
        return x.flatten(1), features


class ScaleDiscriminator(nn.Module):
    def __init__(self, use_spectral_norm: bool = False, scale: float = 1.0) -> None:
        super().__init__()
        norm: Callable[[nn.Module], nn.Module] = spectral_norm if use_spectral_norm else weight_norm
        w = [_width(c, scale) for c in (128, 128, 256, 512, 1024, 1024, 1024)]
        # Groups as the paper (4, 16, 16, 16, 16), reduced so that they divide narrower widths.
        layers = [
            nn.Conv1d(1, w[0], 15, 1, padding=7),
            nn.Conv1d(w[0], w[1], 41, 2, groups=min(4, w[0] // 16), padding=20),
            nn.Conv1d(w[1], w[2], 41, 2, groups=min(16, w[1] // 16), padding=20),
            nn.Conv1d(w[2], w[3], 41, 4, groups=min(16, w[2] // 16), padding=20),
            nn.Conv1d(w[3], w[4], 41, 4, groups=min(16, w[3] // 16), padding=20),
            nn.Conv1d(w[4], w[5], 41, 1, groups=min(16, w[4] // 16), padding=20),
            nn.Conv1d(w[5], w[6], 5, 1, padding=2),
        ]
        self.convs = nn.ModuleList(norm(layer) for layer in layers)
        self.conv_post = norm(nn.Conv1d(w[6], 1, 3, 1, padding=1))

    def forward(self, wave: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = wave
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            features.append(x)
        x = self.conv_post(x)
        features.append(x)
        return x.flatten(1), features


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), channels: float = 1.0) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, channels) for p in periods)

    def forward(self, wave: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """``wave`` (B, N) or (B, 1, N)."""
        wave = wave.unsqueeze(1) if wave.ndim == 2 else wave
        outputs = [d(wave) for d in self.discriminators]
        return [score for score, _ in outputs], [features for _, features in outputs]


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, channels: float = 1.0) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList(
            [
                ScaleDiscriminator(use_spectral_norm=True, scale=channels),
                ScaleDiscriminator(scale=channels),
                ScaleDiscriminator(scale=channels),
            ]
        )
        self.meanpools = nn.ModuleList([nn.AvgPool1d(4, 2, padding=2), nn.AvgPool1d(4, 2, padding=2)])

    def forward(self, wave: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """``wave`` (B, N) or (B, 1, N)."""
        x = wave.unsqueeze(1) if wave.ndim == 2 else wave
        scores, features = [], []
        for i, discriminator in enumerate(self.discriminators):
            if i > 0:
                x = self.meanpools[i - 1](x)
            score, fmaps = discriminator(x)
            scores.append(score)
            features.append(fmaps)
        return scores, features
