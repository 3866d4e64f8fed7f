"""Frechet Audio Distance (Kilgour et al., "Frechet Audio Distance: a metric for evaluating music
enhancement algorithms", 2019) with float64 statistics, and FAD-infinity (Gui et al., "Adapting
Frechet Audio Distance for generative music evaluation", ICASSP 2024; the fadtk method).

FAD between Gaussians N(mu1, S1) and N(mu2, S2) fitted to two embedding sets (eq. 1 of Kilgour):

    FAD = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

The trace term uses tr((S1 S2)^(1/2)) = sum_i sqrt(lambda_i(S1^(1/2) S2 S1^(1/2))): two symmetric
eigen-decompositions (S1 = V diag(l) V^T, then the symmetric PSD product), never a general
matrix square root (scipy.linalg.sqrtm is slow and returns spurious imaginary parts).

FAD-infinity: FAD is biased upward by roughly c / n for n evaluation samples (Chong & Forsyth,
"Effectively Unbiased FID and Inception Score and where to find them", CVPR 2020, section 3: the
bias of the Frechet distance is linear in 1/n to first order); it is computed at 25 subset sizes n
in [min_n, N] and the intercept of the least-squares line FAD(n) = FAD_inf + slope / n is the
extrapolated value. Subsets are drawn with replacement by default (fadtk, Gui et al.); with
``replace=False`` they are drawn without replacement, as Chong & Forsyth do, so the largest subset
is the whole evaluated set and its point is the plain FAD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from stemforge.metrics.embedder import Embedder

__all__ = [
    "FADInfinityResult",
    "FADScore",
    "FrechetAudioDistance",
    "GaussianStats",
    "fad_infinity",
    "fad_per_file",
    "frechet_distance",
    "gaussian_stats",
]


@dataclass(frozen=True)
class GaussianStats:
    """Mean (D,) and covariance (D, D) in float64, and the number of embeddings they came from."""

    mean: Tensor
    cov: Tensor
    count: int


@dataclass
class FADScore:
    """A FAD value with the sample counts of both sets and the embedder that produced them."""

    value: float
    num_reference: int
    num_evaluated: int
    embedder: str

    def __str__(self) -> str:
        return f"FAD[{self.embedder}] = {self.value:.4f} (n_ref={self.num_reference}, n_eval={self.num_evaluated})"


@dataclass(frozen=True)
class FADInfinityResult:
    """FAD-infinity: the intercept, the slope and R^2 of the 1/n fit, the (n, FAD) points, the
    embedder, and the sizes of the reference set and of the evaluated pool the subsets were drawn from."""

    value: float
    slope: float
    r2: float
    points: tuple[tuple[int, float], ...]
    embedder: str
    num_reference: int
    num_evaluated: int

    def __str__(self) -> str:
        return (
            f"FAD-inf[{self.embedder}] = {self.value:.4f} (R^2={self.r2:.3f}, n_ref={self.num_reference}, "
            f"n_eval={self.num_evaluated})"
        )


def gaussian_stats(embeddings: Tensor) -> GaussianStats:
    """Mean and unbiased covariance (ddof 1, as numpy.cov and fadtk) of (N, D) embeddings, in float64."""
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {tuple(embeddings.shape)}")
    count = embeddings.shape[0]
    if count < 2:
        raise ValueError(f"a covariance needs at least 2 embeddings, got {count}; pass more audio")
    x = embeddings.double()
    mean = x.mean(dim=0)
    centred = x - mean
    return GaussianStats(mean, centred.T @ centred / (count - 1), count)


def _sqrt_psd(matrix: Tensor) -> Tensor:
    eigvals, eigvecs = torch.linalg.eigh(matrix)
    return (eigvecs * eigvals.clamp_min(0).sqrt()) @ eigvecs.T


def frechet_distance(mean1: Tensor, cov1: Tensor, mean2: Tensor, cov2: Tensor) -> float:
    """Frechet distance between N(mean1, cov1) and N(mean2, cov2), computed in float64."""
    mean1, cov1, mean2, cov2 = (t.double() for t in (mean1, cov1, mean2, cov2))
    if mean1.shape != mean2.shape or cov1.shape != cov2.shape or cov1.shape != (mean1.numel(), mean1.numel()):
        raise ValueError(
            f"mismatched statistics: means {tuple(mean1.shape)} / {tuple(mean2.shape)}, "
            f"covariances {tuple(cov1.shape)} / {tuple(cov2.shape)}; were both sets embedded by the same embedder?"
        )
    # Symmetrise against round-off so that eigh sees exactly symmetric input.
    cov1 = (cov1 + cov1.T) / 2
    cov2 = (cov2 + cov2.T) / 2
    root1 = _sqrt_psd(cov1)
    product = root1 @ cov2 @ root1
    trace_sqrt = torch.linalg.eigvalsh((product + product.T) / 2).clamp_min(0).sqrt().sum()
    diff = mean1 - mean2
    value = diff @ diff + torch.trace(cov1) + torch.trace(cov2) - 2 * trace_sqrt
    return float(value)


def fad_infinity(
    reference: GaussianStats | Tensor,
    evaluated: Tensor,
    *,
    steps: int = 25,
    min_n: int = 500,
    generator: torch.Generator | None = None,
    embedder: str = "unknown",
    replace: bool = True,
) -> FADInfinityResult:
    """FAD-infinity of ``evaluated`` (N, D) embeddings against the reference set (stats or (M, D) embeddings).

    ``steps`` sizes n = linspace(min_n, N) (integer part), each a draw of n embeddings (with
    replacement: fadtk's procedure; ``replace=False``: a random subset, Chong & Forsyth's); the
    intercept of the least-squares line of FAD against 1/n.
    """
    ref = reference if isinstance(reference, GaussianStats) else gaussian_stats(reference)
    total = evaluated.shape[0]
    if min_n < 2 or min_n > total:
        raise ValueError(f"min_n={min_n} must lie in [2, {total}] (the number of evaluated embeddings)")
    sizes = [int(n) for n in np.linspace(min_n, total, steps)]
    points = []
    for n in sizes:
        if replace:
            idx = torch.randint(0, total, (n,), generator=generator)
        else:
            idx = torch.randperm(total, generator=generator)[:n]
        stats = gaussian_stats(evaluated[idx])
        points.append((n, frechet_distance(ref.mean, ref.cov, stats.mean, stats.cov)))
    xs = 1.0 / np.array(sizes, dtype=np.float64)
    ys = np.array([p[1] for p in points], dtype=np.float64)
    slope, intercept = np.polyfit(xs, ys, 1)
    residual = np.sum((ys - (slope * xs + intercept)) ** 2)
    spread = np.sum((ys - ys.mean()) ** 2)
    r2 = 1.0 - residual / spread if spread > 0 else 1.0
    return FADInfinityResult(
        float(intercept), float(slope), float(r2), tuple(points), embedder, ref.count, total
    )


def fad_per_file(
    reference: GaussianStats, files: Sequence[Tensor], *, embedder: str = "unknown"
) -> list[FADScore]:
    """FAD of each file's own embeddings (W_i, D) against the reference statistics (fadtk's per-song score)."""
    scores = []
    for i, frames in enumerate(files):
        if frames.dim() != 2 or frames.shape[0] < 2:
            raise ValueError(
                f"file {i}: needs at least 2 window embeddings (W, D) for a covariance, got {tuple(frames.shape)}; "
                "use longer audio or an embedder with a shorter hop"
            )
        stats = gaussian_stats(frames)
        value = frechet_distance(reference.mean, reference.cov, stats.mean, stats.cov)
        scores.append(FADScore(value, reference.count, stats.count, embedder))
    return scores


class FrechetAudioDistance(Metric):
    """FAD as a torchmetrics Metric: float64 running sums, so it aggregates across processes.

    ``update(x, real)`` takes audio (B, N) at ``embedder.sample_rate`` when an embedder is given,
    else precomputed embeddings (N, D). ``compute()`` returns a :class:`FADScore` naming the
    embedder and both sample counts. Running sums (count, sum, sum of outer products) are exact
    to float64 round-off and reduce by summation across processes.
    """

    full_state_update = False
    higher_is_better = False
    is_differentiable = False

    def __init__(
        self,
        embedder: Embedder | None = None,
        *,
        num_features: int | None = None,
        embedder_name: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        if embedder is None and (num_features is None or embedder_name is None):
            raise ValueError("pass an embedder, or num_features and embedder_name for precomputed embeddings")
        self.embedder = embedder
        dim = embedder.embedding_dim if embedder is not None else int(num_features)  # type: ignore[arg-type]
        self.embedder_name = embedder.name if embedder is not None else str(embedder_name)
        self.num_features = dim
        for prefix in ("real", "fake"):
            self.add_state(f"{prefix}_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{prefix}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(
                f"{prefix}_outer", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum"
            )

    def _embeddings(self, x: Tensor) -> Tensor:
        if self.embedder is not None:
            return self.embedder.embed_frames(x)
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected embeddings (N, {self.num_features}), got {tuple(x.shape)}")
        return x.double()

    def update(self, x: Tensor, real: bool, sample_rate: int | None = None) -> None:
        """Add audio (B, N) (or embeddings (N, D) without an embedder) to the reference or evaluated set.

        Pass ``sample_rate`` to have it checked against the embedder's rate.
        """
        if sample_rate is not None and self.embedder is not None and sample_rate != self.embedder.sample_rate:
            raise ValueError(
                f"audio at {sample_rate} Hz given to {self.embedder_name}, which expects {self.embedder.sample_rate} Hz; "
                "resample it first (stemforge.data provides resampling)"
            )
        emb = self._embeddings(x)
        prefix = "real" if real else "fake"
        setattr(self, f"{prefix}_count", getattr(self, f"{prefix}_count") + emb.shape[0])
        setattr(self, f"{prefix}_sum", getattr(self, f"{prefix}_sum") + emb.sum(dim=0))
        setattr(self, f"{prefix}_outer", getattr(self, f"{prefix}_outer") + emb.T @ emb)

    def stats(self, real: bool) -> GaussianStats:
        """The float64 Gaussian statistics accumulated so far for one of the two sets."""
        prefix = "real" if real else "fake"
        count = int(getattr(self, f"{prefix}_count").item())
        if count < 2:
            raise ValueError(
                f"the {'reference' if real else 'evaluated'} set has {count} embeddings; need >= 2"
            )
        mean = getattr(self, f"{prefix}_sum") / count
        cov = (getattr(self, f"{prefix}_outer") - count * torch.outer(mean, mean)) / (count - 1)
        return GaussianStats(mean, cov, count)

    def compute(self) -> FADScore:
        ref, ev = self.stats(True), self.stats(False)
        value = frechet_distance(ref.mean, ref.cov, ev.mean, ev.cov)
        return FADScore(value, ref.count, ev.count, self.embedder_name)
