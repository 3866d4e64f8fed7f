"""Shared fixtures of the stemforge-unet3d tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from stemforge.unet3d import UNet3D, UNet3DConfig


def _randomized(config: UNet3DConfig, seed: int = 0) -> UNet3D:
    """A model whose zero-initialised layers (output conv, attention projections, FiLM) are random,
    so that every input path reaches the output."""
    torch.manual_seed(seed)
    model = UNet3D(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


@pytest.fixture
def randomized() -> Callable[..., UNet3D]:
    return _randomized
