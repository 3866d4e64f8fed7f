"""Style grounding against a per-element reference implementation, and inside a sampler."""

from __future__ import annotations

import pytest
import torch

from stemforge.samplers import DiagonalGaussianDenoiser, StyleGrounding, ddim_sample, ground_style


def reference_grounding(x0: torch.Tensor, ref: torch.Tensor, lam: float) -> torch.Tensor:
    """Loop over every (b, s, c, f) series along time, statistics written out by hand."""
    out = torch.empty_like(x0)
    b_n, s_n, c_n, t_n, f_n = x0.shape
    for b in range(b_n):
        for s in range(s_n):
            for c in range(c_n):
                for f in range(f_n):
                    series = x0[b, s, c, :, f]
                    r = ref[0, s, c, :, f]
                    mean, std = sum(series) / t_n, (sum((series - series.mean()) ** 2) / (t_n - 1)) ** 0.5
                    r_mean, r_std = r.mean(), r.std()
                    target_mean = (1 - lam) * mean + lam * r_mean
                    target_std = (1 - lam) * std + lam * r_std
                    out[b, s, c, :, f] = (series - mean) / (std + 1e-5) * target_std + target_mean
    return out


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_grounding_matches_the_reference(lam: float) -> None:
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 2, 3, 16, 4, generator=gen, dtype=torch.float64) * 2 + 1
    ref = torch.randn(1, 2, 3, 40, 4, generator=gen, dtype=torch.float64) * 0.5 - 3
    out = ground_style(x0, ref, lam)
    expected = x0 if lam == 0.0 else reference_grounding(x0, ref, lam)
    assert torch.allclose(out.double(), expected, atol=1e-5)
    if lam == 1.0:  # the reference statistics exactly (up to the 1e-5 stabiliser)
        assert torch.allclose(out.mean(-2), ref.to(out.dtype).mean(-2).expand_as(out.mean(-2)), atol=1e-4)
        assert torch.allclose(out.std(-2), ref.to(out.dtype).std(-2).expand_as(out.std(-2)), atol=1e-4)


def test_waveform_latent_layout_and_errors() -> None:
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(2, 1, 8, 32, generator=gen)  # (B, S, C, T)
    ref = torch.randn(1, 1, 8, 50, generator=gen) + 2
    out = StyleGrounding(ref, 1.0, time_dim=-1)(x0, torch.zeros(2))
    assert torch.allclose(out.mean(-1), ref.mean(-1).expand(2, 1, 8), atol=1e-4)
    with pytest.raises(ValueError, match="lambda"):
        StyleGrounding(ref, 1.5)
    with pytest.raises(ValueError, match="rank"):
        StyleGrounding(ref, 0.5, time_dim=-1)(torch.randn(2, 8, 32), torch.zeros(2))


def test_grounding_moves_samples_toward_the_reference_style(msgld_schedule) -> None:
    """Sampling N(0, 1) stems while grounding to a reference with channel means +2 and sd 0.5:
    the generated per-channel statistics land between, closer to the reference as lambda grows."""
    gen = torch.Generator().manual_seed(2)
    shape = (1, 4, 64, 2)  # (S, C, T, F)
    oracle = DiagonalGaussianDenoiser(torch.zeros(shape), torch.ones(shape), msgld_schedule)
    ref = 2 + 0.5 * torch.randn(1, *shape, generator=gen)
    x_T = torch.randn(64, *shape, generator=gen)
    means = {}
    for lam in (0.0, 0.2, 1.0):
        out = ddim_sample(
            oracle,
            x_T,
            msgld_schedule,
            num_steps=50,
            eta=0.0,
            denoised_fn=StyleGrounding(ref, lam) if lam else None,
        )
        means[lam] = out.mean(-2).mean().item()
        if lam == 1.0:
            assert abs(out.std(-2).mean().item() - 0.5) < 0.05
    assert abs(means[0.0]) < 0.05 and means[0.0] < means[0.2] < means[1.0]
    assert abs(means[1.0] - ref.mean(-2).mean().item()) < 0.01


def test_strength_schedule_by_timestep() -> None:
    """A callable strength grounds only where it says: here, only at high noise (t > 500)."""
    gen = torch.Generator().manual_seed(3)
    x0 = torch.randn(2, 1, 2, 16, 3, generator=gen)
    ref = torch.randn(1, 1, 2, 16, 3, generator=gen) + 4
    grounding = StyleGrounding(ref, lambda t: 1.0 if float(t[0]) > 500 else 0.0)
    assert torch.equal(grounding(x0, torch.full((2,), 100.0)), x0)
    assert torch.allclose(
        grounding(x0, torch.full((2,), 900.0)).mean(-2), ref.mean(-2).expand(2, 1, 2, 3), atol=1e-4
    )
