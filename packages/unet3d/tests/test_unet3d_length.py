"""Length generalisation of the time-attention variant with Dynamic Positional Bias (Pasini et al.)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from stemforge.unet3d import UNet3DConfig

FRAMES_60S = 1500


@pytest.mark.parametrize("window", [4, 0], ids=["local", "global"])
def test_sixty_second_latent_gives_finite_output(randomized, window: int) -> None:
    model = randomized(UNet3DConfig.from_name("tiny-dpb", time_window=window))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 2, FRAMES_60S, 8, generator=gen)
    mix = torch.randn(1, 2, FRAMES_60S, 8, generator=gen)
    with torch.no_grad():
        out = model(x, torch.tensor([500.0]), {"mix_latent": mix})
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    assert out.std() > 0.01


def test_time_shift_equivariance_away_from_the_edges(randomized) -> None:
    """Cropping s frames off the start shifts the output by s, except within the receptive field of
    the edges: a model run on a long latent computes what it computes on shorter windows of it."""
    model = randomized(UNet3DConfig.from_name("tiny-dpb"))
    gen = torch.Generator().manual_seed(1)
    length, shift, margin = 192, 16, 64  # shift: a multiple of the downsampling factor 2
    x = torch.randn(1, 4, 2, length, 8, generator=gen)
    mix = torch.randn(1, 2, length, 8, generator=gen)
    t = torch.tensor([250.0])
    with torch.no_grad():
        full = model(x, t, {"mix_latent": mix})
        cropped = model(x[..., shift:, :], t, {"mix_latent": mix[..., shift:, :]})
    inner_full = full[..., shift + margin : length - margin, :]
    inner_cropped = cropped[..., margin : length - shift - margin, :]
    assert inner_full.shape[-2] == 48
    torch.testing.assert_close(inner_cropped, inner_full, rtol=1e-4, atol=1e-4)
    # Not vacuous: the outputs are far from zero and the edges (zero padding) do differ.
    assert inner_full.abs().mean() > 0.05
    assert (full[..., shift : shift + 4, :] - cropped[..., :4, :]).abs().max() > 1e-2


def test_receptive_field_is_finite_with_a_time_window(randomized) -> None:
    model = randomized(UNet3DConfig.from_name("tiny-dpb"))
    x = torch.randn(1, 4, 2, 160, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([10.0])
    bumped = x.clone()
    bumped[..., 80, :] += 1.0
    with torch.no_grad():
        diff = (model(bumped, t) - model(x, t)).abs().amax(dim=(0, 1, 2, 4))
    reached = torch.nonzero(diff > 1e-6).flatten()
    assert reached.min() > 0 and reached.max() < 159
    assert 80 - reached.min() <= 64 and reached.max() - 80 <= 64


def test_global_dpb_config_uses_frame_norm_and_time_attention() -> None:
    config = UNet3DConfig.from_name("msgld-slakh-dpb")
    assert (config.attention, config.positional_bias, config.norm) == ("time", "dpb", "group_framewise")
    assert dataclasses.replace(config, time_window=32).time_window == 32


@pytest.mark.slow
def test_sixty_second_latent_at_the_paper_latent_shape(randomized) -> None:
    model = randomized(UNet3DConfig.from_name("tiny-dpb"))
    x = torch.randn(1, 4, 8, FRAMES_60S, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model(x, torch.tensor([999.0]), {"mix_latent": x.sum(1)})
    assert torch.isfinite(out).all()
