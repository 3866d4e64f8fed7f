"""Shared fixtures: a known Gaussian mixture and the statistical checks the sampler tests use.

Tolerances: a mean is accepted within 5 standard errors (two-sided false-alarm probability 6e-7
per coordinate for a correct sampler); a covariance entry within 5 standard errors estimated from
the fourth moments of exact reference samples; a distribution passes a two-sample Kolmogorov-Smirnov
test on each of 8 fixed random projections (Cramer-Wold) at level 1e-3 / 8 (Bonferroni), critical
value sqrt(-ln(alpha / 2) / 2) * sqrt((n + m) / (n m)) (Smirnov's asymptotic distribution). Every
test is seeded, so a pass is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from stemforge.samplers import GaussianMixtureDenoiser, NoiseSchedule


@dataclass
class Mixture:
    schedule: NoiseSchedule
    means: torch.Tensor
    covariances: torch.Tensor
    weights: torch.Tensor
    reference: torch.Tensor  # exact float64 samples

    def model(self, prediction: str = "epsilon") -> GaussianMixtureDenoiser:
        return GaussianMixtureDenoiser(self.means, self.covariances, self.weights, self.schedule, prediction)

    @property
    def mean(self) -> torch.Tensor:
        return (self.weights[:, None] * self.means).sum(0)

    @property
    def covariance(self) -> torch.Tensor:
        second = self.covariances + self.means[:, :, None] * self.means[:, None, :]
        mean = self.mean
        return (self.weights[:, None, None] * second).sum(0) - mean[:, None] * mean[None]


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic of 1-D samples (exact, by merging the sorted values)."""
    a, b = a.double().sort().values, b.double().sort().values
    grid = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, grid, right=True).double() / len(a)
    cdf_b = torch.searchsorted(b, grid, right=True).double() / len(b)
    return float((cdf_a - cdf_b).abs().max())


class Stats:
    @staticmethod
    def assert_mean(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, n_se: float = 5.0) -> None:
        se = (torch.diagonal(cov) / samples.shape[0]).sqrt()
        err = (samples.double().mean(0) - mean).abs()
        assert bool((err < n_se * se).all()), (
            f"mean error {err.tolist()} exceeds {n_se} SE = {(n_se * se).tolist()}"
        )

    @staticmethod
    def assert_cov(
        samples: torch.Tensor, reference: torch.Tensor, cov: torch.Tensor, n_se: float = 5.0
    ) -> None:
        centred = reference - reference.mean(0)
        products = centred[:, :, None] * centred[:, None, :]
        se = (products.var(0) / samples.shape[0]).sqrt()
        err = (torch.cov(samples.double().T) - cov).abs()
        assert bool((err < n_se * se).all()), (
            f"covariance error {err.tolist()} exceeds {n_se} SE = {(n_se * se).tolist()}"
        )

    @staticmethod
    def assert_same_distribution(
        samples: torch.Tensor, reference: torch.Tensor, alpha: float = 1e-3, n_proj: int = 8
    ) -> None:
        gen = torch.Generator().manual_seed(1234)
        dirs = torch.randn(n_proj, samples.shape[1], generator=gen, dtype=torch.float64)
        dirs = dirs / dirs.norm(dim=1, keepdim=True)
        n, m = samples.shape[0], reference.shape[0]
        level = alpha / n_proj
        critical = math.sqrt(-math.log(level / 2) / 2) * math.sqrt((n + m) / (n * m))
        for d in dirs:
            stat = ks_statistic(samples.double() @ d, reference.double() @ d)
            assert stat < critical, (
                f"KS statistic {stat:.4f} >= critical {critical:.4f} on direction {d.tolist()}"
            )


@pytest.fixture(autouse=True)
def _single_thread():
    """These tests run many small tensor ops; one thread avoids oversubscribing a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def stats() -> Stats:
    return Stats()


@pytest.fixture(scope="session")
def msgld_schedule() -> NoiseSchedule:
    return NoiseSchedule.from_name("msgld")


@pytest.fixture(scope="session")
def mixture(msgld_schedule: NoiseSchedule) -> Mixture:
    """A 3-component 2-D Gaussian mixture with correlated, unequal components."""
    means = torch.tensor([[-2.0, 0.5], [1.5, -1.0], [0.5, 2.0]], dtype=torch.float64)
    covs = torch.tensor(
        [[[0.5, 0.2], [0.2, 0.3]], [[0.2, -0.1], [-0.1, 0.4]], [[0.3, 0.0], [0.0, 0.2]]], dtype=torch.float64
    )
    weights = torch.tensor([0.3, 0.5, 0.2], dtype=torch.float64)
    oracle = GaussianMixtureDenoiser(means, covs, weights, msgld_schedule)
    reference = oracle.sample(40000, torch.Generator().manual_seed(99))
    return Mixture(msgld_schedule, means, covs, weights, reference)
