"""Schedules against their formulas, written out here a second time element by element in float64."""

from __future__ import annotations

import math

import pytest
import torch

from stemforge.samplers import NoiseSchedule, ScheduleConfig, timesteps


def reference_alpha_bar(betas: list[float]) -> list[float]:
    out, prod = [], 1.0
    for beta in betas:
        prod *= 1.0 - beta
        out.append(prod)
    return out


def test_msgld_sqrt_linear_betas_match_the_ldm_formula() -> None:
    schedule = NoiseSchedule.from_name("msgld")
    n, b0, b1 = 1000, 0.0015, 0.0195
    expected = [(math.sqrt(b0) + i / (n - 1) * (math.sqrt(b1) - math.sqrt(b0))) ** 2 for i in range(n)]
    assert torch.allclose(schedule.betas, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)
    assert torch.allclose(
        schedule.alphas_cumprod, torch.tensor(reference_alpha_bar(expected), dtype=torch.float64), rtol=1e-10
    )
    assert schedule.betas[0].item() == pytest.approx(0.0015) and schedule.betas[-1].item() == pytest.approx(
        0.0195
    )


def test_linear_and_cosine_betas() -> None:
    linear = NoiseSchedule.from_name("ddpm-linear")
    assert torch.allclose(
        linear.betas, torch.tensor([1e-4 + i * (0.02 - 1e-4) / 999 for i in range(1000)], dtype=torch.float64)
    )
    cosine = NoiseSchedule(ScheduleConfig(kind="cosine", num_steps=50))
    s = 0.008

    def f(t: float) -> float:
        return math.cos((t / 50 + s) / (1 + s) * math.pi / 2) ** 2

    expected = [min(1 - f(i + 1) / f(i), 0.999) for i in range(50)]
    assert torch.allclose(cosine.betas, torch.tensor(expected, dtype=torch.float64), rtol=1e-12)


@pytest.mark.parametrize("name", ["msgld", "ddpm-linear", "cosine"])
def test_zero_terminal_snr_rescaling(name: str) -> None:
    base = NoiseSchedule.from_name(name)
    config = ScheduleConfig(**{**base.config.to_dict(), "zero_terminal_snr": True})
    rescaled = NoiseSchedule(config)
    assert rescaled.alphas_cumprod[-1].item() == pytest.approx(0.0, abs=1e-15)
    assert rescaled.alphas_cumprod[0].item() == pytest.approx(base.alphas_cumprod[0].item(), rel=1e-12)
    # Lin et al. Algorithm 1: sqrt(abar) is an affine map of the original sqrt(abar)
    a, b = base.alphas_cumprod.sqrt(), rescaled.alphas_cumprod.sqrt()
    expected = (a - a[-1]) * a[0] / (a[0] - a[-1])
    assert torch.allclose(b, expected, atol=1e-12)
    assert bool((rescaled.alphas_cumprod[1:] < rescaled.alphas_cumprod[:-1]).all())
    assert rescaled.log_snr(999).item() == -math.inf


def test_continuous_views_are_consistent() -> None:
    schedule = NoiseSchedule.from_name("msgld")
    t = torch.rand(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 999
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    assert torch.allclose(alpha**2 + sigma**2, torch.ones_like(t), atol=1e-12)
    assert torch.allclose(schedule.log_snr(t), torch.log(alpha**2 / sigma**2), atol=1e-9)
    assert torch.allclose(schedule.ve_sigma(t), sigma / alpha)
    # integer timesteps reproduce the table; fractional ones interpolate alpha_bar linearly
    assert torch.allclose(
        schedule.alpha_bar(torch.tensor([0.0, 500.0, 999.0])), schedule.alphas_cumprod[[0, 500, 999]]
    )
    mid = schedule.alpha_bar(10.25)
    assert mid.item() == pytest.approx(
        0.75 * schedule.alphas_cumprod[10].item() + 0.25 * schedule.alphas_cumprod[11].item()
    )
    assert schedule.alpha_bar(-1).item() == 1.0
    back = schedule.timestep_from_log_snr(schedule.log_snr(t))
    assert torch.allclose(back, t, atol=1e-6)
    with pytest.raises(ValueError, match="timesteps must lie"):
        schedule.alpha_bar(1000.0)


def test_config_round_trip_and_errors() -> None:
    config = ScheduleConfig.from_name("msgld-zero-snr")
    assert ScheduleConfig(**config.to_dict()) == config
    assert NoiseSchedule.from_config(config.to_dict()).to_dict() == config.to_dict()
    with pytest.raises(ValueError, match="unknown schedule preset"):
        ScheduleConfig.from_name("nope")
    with pytest.raises(ValueError, match="kind"):
        ScheduleConfig(kind="quadratic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="beta_start"):
        ScheduleConfig(beta_start=0.1, beta_end=0.01)


def test_timestep_grids() -> None:
    schedule = NoiseSchedule.from_name("msgld")
    trailing = timesteps(schedule, 200, "trailing")
    assert trailing[0] == 999 and trailing[-1] == 4 and len(set(trailing)) == 200
    leading = timesteps(schedule, 200, "leading")  # Latent Diffusion's "uniform" DDIM grid
    assert leading == [i * 5 + 1 for i in range(200)][::-1]
    lin = timesteps(schedule, 10, "linspace")
    assert lin[0] == 999 and lin[-1] == 0
    log_grid = timesteps(schedule, 20, "log_snr")
    assert log_grid[0] == 999.0 and log_grid[-1] == 0.0
    lam = schedule.log_snr(torch.tensor(log_grid))
    assert torch.allclose(lam.diff(), lam.diff().mean().expand(19), rtol=1e-6)  # uniform in log-SNR
    with pytest.raises(ValueError, match="num_steps"):
        timesteps(schedule, 1001)
    with pytest.raises(ValueError, match="finite SNR"):
        timesteps(NoiseSchedule.from_name("msgld-zero-snr"), 10, "log_snr")
