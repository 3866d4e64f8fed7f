"""HiFi-GAN discriminators: structure of their outputs and the period reshaping (Kong et al. 2020, Sec. 2.2)."""

from __future__ import annotations

import torch

from stemforge.codec import MultiPeriodDiscriminator, MultiScaleDiscriminator


def test_period_and_scale_discriminator_outputs() -> None:
    torch.manual_seed(0)
    mpd, msd = MultiPeriodDiscriminator(channels=1 / 16), MultiScaleDiscriminator(channels=1 / 16)
    wave = 0.1 * torch.randn(2, 1601)  # odd length: each period pads to a multiple of itself
    scores, features = mpd(wave)
    assert len(scores) == len(features) == 5
    for period, fmaps in zip((2, 3, 5, 7, 11), features):
        assert len(fmaps) == 6  # 5 convolutions + conv_post
        assert fmaps[0].shape[-1] == period  # (B, C, frames, period)
    scores, features = msd(wave)
    assert len(scores) == len(features) == 3 and all(len(f) == 8 for f in features)
    # The x2 and x4 average-pooled inputs give shorter score maps.
    assert scores[0].shape[-1] > scores[1].shape[-1] > scores[2].shape[-1]


def test_period_discriminator_sees_the_period_grid() -> None:
    """A signal periodic in p looks constant along the frame axis of the period-p discriminator's input."""
    torch.manual_seed(0)
    mpd = MultiPeriodDiscriminator(periods=(3,), channels=1 / 16)
    pattern = torch.randn(3)
    periodic = pattern.repeat(400)[None]
    _, features = mpd(periodic)
    first = features[0][0][0]  # (C, frames, period)
    interior = first[:, 2:-2, :]
    assert torch.allclose(interior, interior[:, :1, :].expand_as(interior), atol=1e-5)
    shifted = torch.roll(periodic, 1, dims=-1)
    _, shifted_features = mpd(shifted)
    assert not torch.allclose(shifted_features[0][0][0][:, 2:-2], interior, atol=1e-3)
