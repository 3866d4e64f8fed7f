"""Every continuous sampler, fed the exact optimal denoiser of a known Gaussian mixture, must
reproduce the mixture: its mean and covariance (within 5 standard errors) and its distribution
(two-sample KS on projections), see conftest.py for the tolerances and their justification.

Step counts are chosen so that each sampler's discretisation bias stays well inside those bands
(measured: covariance bias below 0.03 for DDIM/DDPM at 100/250 steps and DPM-Solver++(2M) at 20,
against 5 SE = 0.2-0.4 at n = 6000; the KS statistic of the deterministic samplers, 0.016-0.025
against a critical 0.030, is the tightest band). Few-step accuracy is checked separately, against
the converged ODE solution."""

from __future__ import annotations

import pytest
import torch

from stemforge.samplers import (
    GaussianMixtureDenoiser,
    NoiseSchedule,
    ddim_invert,
    ddim_sample,
    ddpm_sample,
    dpm_solver_pp_2m_sample,
    dpm_solver_pp_3m_sample,
    msdm_dirac_separate,
)

N = 6000


def run(name: str, model, x_T, schedule, prediction: str, gen: torch.Generator) -> torch.Tensor:
    if name == "ddim-eta1":
        return ddim_sample(model, x_T, schedule, num_steps=100, eta=1.0, prediction=prediction, generator=gen)
    if name == "ddim-eta0":
        return ddim_sample(model, x_T, schedule, num_steps=100, eta=0.0, prediction=prediction)
    if name == "ddpm":
        return ddpm_sample(model, x_T, schedule, num_steps=250, prediction=prediction, generator=gen)
    if name == "ddpm-beta":
        return ddpm_sample(
            model, x_T, schedule, num_steps=250, variance="beta", prediction=prediction, generator=gen
        )
    if name == "msgld":  # the paper's sampler: Latent Diffusion's grid, 200 steps, eta 1
        return ddim_sample(
            model,
            x_T,
            schedule,
            num_steps=200,
            eta=1.0,
            spacing="leading",
            prediction=prediction,
            generator=gen,
        )
    solver = dpm_solver_pp_3m_sample if name == "dpm-solver++3m" else dpm_solver_pp_2m_sample
    return solver(model, x_T, schedule, num_steps=50, spacing="linspace", prediction=prediction)


@pytest.mark.parametrize("name", ["ddim-eta1", "ddim-eta0", "ddpm", "dpm-solver++2m", "dpm-solver++3m"])
@pytest.mark.parametrize("prediction", ["epsilon", "v", "x0"])
def test_sampler_reproduces_the_mixture(mixture, stats, name: str, prediction: str) -> None:
    gen = torch.Generator().manual_seed(10)
    x_T = torch.randn(N, 2, generator=gen)
    samples = run(name, mixture.model(prediction), x_T, mixture.schedule, prediction, gen).double()
    stats.assert_mean(samples, mixture.mean, mixture.covariance)
    stats.assert_cov(samples, mixture.reference, mixture.covariance)
    stats.assert_same_distribution(samples, mixture.reference)


@pytest.mark.parametrize("name", ["ddpm-beta", "msgld"])
def test_other_variants_reproduce_the_mixture(mixture, stats, name: str) -> None:
    gen = torch.Generator().manual_seed(12)
    samples = run(
        name, mixture.model(), torch.randn(N, 2, generator=gen), mixture.schedule, "epsilon", gen
    ).double()
    stats.assert_mean(samples, mixture.mean, mixture.covariance)
    stats.assert_cov(samples, mixture.reference, mixture.covariance)
    stats.assert_same_distribution(samples, mixture.reference)


@pytest.mark.slow
def test_long_chains_match_tightly(mixture, stats) -> None:
    """n = 40000 with 1000 DDPM steps: the bands shrink by 2.6x and the sampler still sits inside."""
    gen = torch.Generator().manual_seed(13)
    samples = ddpm_sample(
        mixture.model(), torch.randn(40000, 2, generator=gen), mixture.schedule, generator=gen
    ).double()
    reference = mixture.model().sample(200000, torch.Generator().manual_seed(14))
    stats.assert_mean(samples, mixture.mean, mixture.covariance)
    stats.assert_cov(samples, reference, mixture.covariance)
    stats.assert_same_distribution(samples, reference)


def test_a_wrong_sampler_fails_the_same_checks(mixture, stats) -> None:
    """The checks have power: DDIM with eta = 1 but far too few steps (5) visibly shrinks the modes."""
    gen = torch.Generator().manual_seed(10)
    x_T = torch.randn(N, 2, generator=gen)
    samples = ddim_sample(mixture.model(), x_T, mixture.schedule, num_steps=5, eta=0.0).double()
    with pytest.raises(AssertionError):
        stats.assert_cov(samples, mixture.reference, mixture.covariance)
        stats.assert_same_distribution(samples, mixture.reference)


def test_ddpm_equals_ddim_with_eta_one(mixture) -> None:
    """DDIM eq. 16 with eta = 1 is DDPM's posterior variance: same noise, same samples."""
    x_T = torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    a = ddpm_sample(
        mixture.model(), x_T, mixture.schedule, num_steps=50, generator=torch.Generator().manual_seed(2)
    )
    b = ddim_sample(
        mixture.model(),
        x_T,
        mixture.schedule,
        num_steps=50,
        eta=1.0,
        generator=torch.Generator().manual_seed(2),
    )
    assert torch.allclose(a, b, atol=1e-4)


def test_ddim_eta0_is_deterministic_and_invertible(mixture) -> None:
    gen = torch.Generator().manual_seed(5)
    x_T = torch.randn(300, 2, generator=gen)
    model = mixture.model()
    first = ddim_sample(
        model, x_T, mixture.schedule, num_steps=200, eta=0.0, generator=torch.Generator().manual_seed(1)
    )
    second = ddim_sample(
        model, x_T, mixture.schedule, num_steps=200, eta=0.0, generator=torch.Generator().manual_seed(2)
    )
    assert torch.equal(first, second)
    # invert exact data, then sample back: the round trip error is the ODE's discretisation error,
    # first order in the step (measured max 0.11 at 200 steps, 0.02 at 1000)
    x0 = mixture.model().sample(300, gen).float()
    errors = {}
    for num_steps in (200, 1000):
        noise = ddim_invert(model, x0, mixture.schedule, num_steps=num_steps)
        back = ddim_sample(model, noise, mixture.schedule, num_steps=num_steps, eta=0.0)
        errors[num_steps] = (back - x0).abs().max().item()
    assert errors[200] < 0.15 and errors[1000] < 0.03 and errors[1000] < errors[200] / 3
    # inverted data look like noise: unit variance per coordinate within 5 SE (sd of var ~ sqrt(2/300))
    assert torch.allclose(
        noise.var(0).double(), torch.ones(2, dtype=torch.float64), atol=5 * (2 / 300) ** 0.5
    )


def test_dpm_solver_is_second_order_and_beats_ddim(mixture) -> None:
    """Against the converged ODE solution (DDIM, 1000 steps), DPM-Solver++(2M) on its log-SNR grid
    converges at second order (measured mean error 0.060, 0.016, 0.0047 at 10, 20, 40 steps) and is
    several times closer than DDIM with the same number of model calls (0.19, 0.094, 0.047)."""
    x_T = torch.randn(500, 2, generator=torch.Generator().manual_seed(10))
    model = mixture.model()
    exact = ddim_sample(model, x_T, mixture.schedule, num_steps=1000, eta=0.0)
    errors = {}
    for num_steps in (10, 20, 40):
        dpm = dpm_solver_pp_2m_sample(model, x_T, mixture.schedule, num_steps=num_steps)
        ddim = ddim_sample(model, x_T, mixture.schedule, num_steps=num_steps, eta=0.0, spacing="log_snr")
        errors[num_steps] = (dpm - exact).abs().mean().item()
        assert errors[num_steps] < 0.4 * (ddim - exact).abs().mean().item()
    assert errors[20] < errors[10] / 3 and errors[40] < errors[20] / 3  # first order would halve


def test_dpm_solver_3m_beats_2m_and_converges_faster(mixture) -> None:
    """Against the converged ODE solution (DPM-Solver++(2M) with 1000 steps, itself within 5e-6 of
    3M's), 3M's mean error shrinks faster than second order (measured 0.028, 0.0049, 0.0011 at 10,
    20, 40 steps: ratios 5.7 and 4.7; 2M's are 4.0 and 4.1) and is 2-4x below 2M's (0.060, 0.015,
    0.0036). The first two steps are of order one and two, so the order seen is between 2 and 3. At
    5 steps 3M is the worse of the two (0.37 against 0.17)."""
    x_T = torch.randn(500, 2, generator=torch.Generator().manual_seed(10))
    model = mixture.model()
    exact = dpm_solver_pp_2m_sample(model, x_T, mixture.schedule, num_steps=1000)
    errors, errors_2m = {}, {}
    for num_steps in (10, 20, 40):
        errors[num_steps] = (
            (dpm_solver_pp_3m_sample(model, x_T, mixture.schedule, num_steps=num_steps) - exact)
            .abs()
            .mean()
            .item()
        )
        errors_2m[num_steps] = (
            (dpm_solver_pp_2m_sample(model, x_T, mixture.schedule, num_steps=num_steps) - exact)
            .abs()
            .mean()
            .item()
        )
        assert errors[num_steps] < errors_2m[num_steps] / 2
    assert errors[20] < errors[10] / 4.3 and errors[40] < errors[20] / 4.3  # second order would quarter
    assert errors_2m[20] > errors_2m[10] / 4.3  # and 2M does not pass that bar


@pytest.mark.parametrize("name", ["ddim-eta1", "ddpm", "dpm-solver++2m"])
def test_zero_terminal_snr_with_v_prediction(mixture, stats, name: str) -> None:
    """With Lin et al.'s rescaled schedule the samplers start from pure noise (alpha = 0) and, given
    a v-prediction model, still reproduce the mixture; an epsilon model is refused there."""
    schedule = NoiseSchedule.from_name("msgld-zero-snr")
    model = GaussianMixtureDenoiser(mixture.means, mixture.covariances, mixture.weights, schedule, "v")
    gen = torch.Generator().manual_seed(11)
    samples = run(name, model, torch.randn(N, 2, generator=gen), schedule, "v", gen).double()
    stats.assert_mean(samples, mixture.mean, mixture.covariance)
    stats.assert_cov(samples, mixture.reference, mixture.covariance)
    stats.assert_same_distribution(samples, mixture.reference)
    eps_model = GaussianMixtureDenoiser(mixture.means, mixture.covariances, mixture.weights, schedule)
    with pytest.raises(ValueError, match="zero terminal SNR"):
        ddim_sample(eps_model, torch.randn(4, 2), schedule, num_steps=10)
    with pytest.raises(ValueError, match="alpha = 0"):
        msdm_dirac_separate(
            model, torch.zeros(4, 2), torch.randn(4, 3, 2), schedule, num_steps=10, prediction="v"
        )
