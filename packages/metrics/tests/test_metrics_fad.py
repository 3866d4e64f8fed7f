"""FAD: closed forms for Gaussians, a float64 scipy reference, 1/n bias, FAD-infinity, the Metric."""

import numpy as np
import pytest
import scipy.linalg
import torch

from stemforge.metrics import (
    FADScore,
    FrechetAudioDistance,
    GaussianStats,
    fad_infinity,
    fad_per_file,
    frechet_distance,
    gaussian_stats,
)


def _random_spd(d: int, gen: torch.Generator) -> torch.Tensor:
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def _reference_fad(mu1, s1, mu2, s2) -> float:
    """The textbook formula with scipy's general matrix square root (slow, obviously correct)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_matches_scipy_reference_on_random_statistics():
    gen = torch.Generator().manual_seed(0)
    for d in (3, 16, 64):
        mu1, mu2 = (
            torch.randn(d, generator=gen, dtype=torch.float64),
            torch.randn(d, generator=gen, dtype=torch.float64),
        )
        s1, s2 = _random_spd(d, gen), _random_spd(d, gen)
        ours = frechet_distance(mu1, s1, mu2, s2)
        ref = _reference_fad(mu1.numpy(), s1.numpy(), mu2.numpy(), s2.numpy())
        # Both in float64; sqrtm's Schur iteration is accurate to ~1e-10 relative here.
        assert ours == pytest.approx(ref, rel=1e-8, abs=1e-9)


def test_closed_form_for_diagonal_and_commuting_gaussians():
    gen = torch.Generator().manual_seed(1)
    d = 10
    a, b = (
        torch.rand(d, generator=gen, dtype=torch.float64) + 0.1,
        torch.rand(d, generator=gen, dtype=torch.float64) + 0.1,
    )
    mu1, mu2 = (
        torch.randn(d, generator=gen, dtype=torch.float64),
        torch.randn(d, generator=gen, dtype=torch.float64),
    )
    expected = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, rel=1e-12)
    # Commuting covariances (shared eigenvectors): the same closed form in the rotated basis.
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    s1, s2 = q @ torch.diag(a) @ q.T, q @ torch.diag(b) @ q.T
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)


def test_symmetric_and_zero_for_identical_sets():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(400, 12, generator=gen) * 2 + 1
    y = torch.randn(300, 12, generator=gen) @ torch.randn(12, 12, generator=gen) * 0.5
    sx, sy = gaussian_stats(x), gaussian_stats(y)
    forward = frechet_distance(sx.mean, sx.cov, sy.mean, sy.cov)
    backward = frechet_distance(sy.mean, sy.cov, sx.mean, sx.cov)
    assert forward > 1.0
    assert forward == pytest.approx(backward, rel=1e-10)
    assert abs(frechet_distance(sx.mean, sx.cov, sx.mean, sx.cov)) < 1e-9


def test_gaussian_stats_match_numpy_float64():
    x = torch.randn(50, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float32)
    stats = gaussian_stats(x)
    assert stats.mean.dtype == torch.float64 and stats.count == 50
    np.testing.assert_allclose(stats.cov.numpy(), np.cov(x.double().numpy(), rowvar=False), rtol=1e-12)


def _sample(mean, cov, n, gen):
    return (
        mean + torch.randn(n, mean.numel(), generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    )


def test_small_sample_bias_shrinks_as_one_over_n():
    # Sample FAD against the true statistics of the same Gaussian: E[FAD] = c / n + O(1/n^2).
    gen = torch.Generator().manual_seed(4)
    d = 6
    mean, cov = torch.randn(d, generator=gen, dtype=torch.float64), _random_spd(d, gen)
    bias = {}
    for n in (200, 800, 3200):
        vals = [
            frechet_distance(
                mean, cov, *(lambda s: (s.mean, s.cov))(gaussian_stats(_sample(mean, cov, n, gen)))
            )
            for _ in range(40)
        ]
        bias[n] = float(np.mean(vals))
    assert all(v > 0 for v in bias.values())
    # Quadrupling n divides the bias by ~4 (averaged over 40 draws: within 25%).
    assert bias[200] / bias[800] == pytest.approx(4.0, rel=0.25)
    assert bias[800] / bias[3200] == pytest.approx(4.0, rel=0.25)


def test_fad_infinity_recovers_the_true_distance():
    # In 32 dimensions the 1/n bias at n = 500 is about as large as the true distance (0.64).
    gen = torch.Generator().manual_seed(5)
    d = 32
    mu1, mu2 = torch.zeros(d, dtype=torch.float64), torch.full((d,), 0.1, dtype=torch.float64)
    s1 = _random_spd(d, gen)
    s2 = 1.2 * s1
    true = frechet_distance(mu1, s1, mu2, s2)
    reference = GaussianStats(mu1, s1, 10**9)
    evaluated = _sample(mu2, s2, 20000, gen)
    result = fad_infinity(reference, evaluated, min_n=500, generator=gen, embedder="test")
    plain = frechet_distance(mu1, s1, *(lambda s: (s.mean, s.cov))(gaussian_stats(evaluated[:500])))
    assert len(result.points) == 25 and result.points[0][0] == 500 and result.points[-1][0] == 20000
    assert (result.num_reference, result.num_evaluated, result.embedder) == (10**9, 20000, "test")
    assert "FAD-inf[test]" in str(result)
    assert result.slope > 0 and result.r2 > 0.8  # fewer samples, larger FAD, linear in 1/n
    # Measured over seeds 0-5: within 5% of the truth, while the plain n = 500 FAD is 60-90% too high.
    assert result.value == pytest.approx(true, rel=0.08)
    assert plain > 1.4 * true


def test_fad_infinity_rejects_too_few_embeddings():
    with pytest.raises(ValueError, match="min_n"):
        fad_infinity(torch.randn(50, 3), torch.randn(100, 3), min_n=500)


def test_per_file_fad_and_errors():
    gen = torch.Generator().manual_seed(6)
    ref = gaussian_stats(torch.randn(500, 4, generator=gen))
    near, far = torch.randn(60, 4, generator=gen), torch.randn(60, 4, generator=gen) + 3
    scores = fad_per_file(ref, [near, far], embedder="test")
    assert (
        scores[0].value < scores[1].value and scores[1].num_evaluated == 60 and scores[0].num_reference == 500
    )
    with pytest.raises(ValueError, match="at least 2 window embeddings"):
        fad_per_file(ref, [torch.randn(1, 4)])


def test_metric_accumulates_in_batches_like_the_direct_formula():
    gen = torch.Generator().manual_seed(7)
    real, fake = torch.randn(300, 5, generator=gen) * 3 + 10, torch.randn(200, 5, generator=gen) * 2 + 11
    metric = FrechetAudioDistance(num_features=5, embedder_name="precomputed")
    for chunk in real.split(64):
        metric.update(chunk, real=True)
    for chunk in fake.split(50):
        metric.update(chunk, real=False)
    score = metric.compute()
    sr, sf = gaussian_stats(real), gaussian_stats(fake)
    assert isinstance(score, FADScore)
    assert score.value == pytest.approx(frechet_distance(sr.mean, sr.cov, sf.mean, sf.cov), rel=1e-9)
    assert (score.num_reference, score.num_evaluated, score.embedder) == (300, 200, "precomputed")
    assert "precomputed" in str(score) and "n_ref=300" in str(score)
    with pytest.raises(ValueError, match="expected embeddings"):
        metric.update(torch.randn(3, 4), real=True)
    with pytest.raises(ValueError, match="num_features and embedder_name"):
        FrechetAudioDistance()


def test_metric_running_sums_stay_accurate_with_large_offsets():
    # Embeddings far from the origin (mean 1e3, std ~1): the running-sum covariance loses about
    # eps64 * mean^2 / var ~ 1e-10 relative, far below any meaningful FAD difference.
    gen = torch.Generator().manual_seed(8)
    real = torch.randn(500, 8, generator=gen, dtype=torch.float64) + 1e3
    fake = torch.randn(500, 8, generator=gen, dtype=torch.float64) * 1.1 + 1e3 + 0.2
    metric = FrechetAudioDistance(num_features=8, embedder_name="precomputed")
    for chunk in real.split(100):
        metric.update(chunk, real=True)
    metric.update(fake, real=False)
    sr, sf = gaussian_stats(real), gaussian_stats(fake)
    assert metric.compute().value == pytest.approx(
        frechet_distance(sr.mean, sr.cov, sf.mean, sf.cov), rel=1e-6
    )
