"""SI-SDR (Le Roux et al., "SDR - half-baked or well done?", ICASSP 2019) and SI-SDR improvement
under the evaluation protocol of MSDM (Mariani et al., "Multi-Source Diffusion Models for
Simultaneous Music Generation and Separation", ICLR 2024, section 5 and their
``evaluate_separations``), which MSG-LD's separation tables follow.

SI-SDR of an estimate s_hat against a reference s, with MSDM's stabilising epsilon (1e-8):

    alpha = (<s_hat, s> + eps) / (<s, s> + eps),
    SI-SDR = 10 log10((|alpha s|^2 + eps) / (|alpha s - s_hat|^2 + eps)).

Protocol, per track: the mixture is the sum of the reference stems; the track is cut into 4 s
windows every 2 s (ceil((N - 2 s) / 2 s) windows, the last one possibly shorter); a window is
skipped when at most one reference stem is active in it, a stem being silent when
||s||_2 / num_samples < 1.5e-5; in every kept window each stem scores
SI-SDR(estimate, reference) - SI-SDR(mixture, reference); a stem's score is the mean over all kept
windows of all tracks. Computed in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["SISDRi", "SISDRiWindows", "is_silent", "si_sdr", "si_sdri_windows"]

MSDM_EPS = 1e-8
MSDM_SILENCE_THRESHOLD = 1.5e-5


def si_sdr(estimate: Tensor, reference: Tensor, eps: float = MSDM_EPS) -> Tensor:
    """SI-SDR in dB over the last axis, with MSDM's epsilon placement (eps=0 gives the textbook form)."""
    estimate, reference = estimate.double(), reference.double()
    alpha = ((estimate * reference).sum(-1, keepdim=True) + eps) / (
        reference.square().sum(-1, keepdim=True) + eps
    )
    target = alpha * reference
    s_target = target.square().sum(-1) + eps
    s_error = (target - estimate).square().sum(-1) + eps
    return 10 * torch.log10(s_target / s_error)


def is_silent(signal: Tensor, threshold: float = MSDM_SILENCE_THRESHOLD) -> Tensor:
    """MSDM's silence test over the last axis: ||signal||_2 / num_samples < threshold."""
    return torch.linalg.vector_norm(signal.double(), dim=-1) / signal.shape[-1] < threshold


@dataclass(frozen=True)
class SISDRiWindows:
    """Per-window SI-SDRi of one track: ``values`` (W, S) for the kept windows and their sample spans."""

    values: Tensor
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    num_windows_total: int


def _check_stems(estimates: Tensor, references: Tensor) -> None:
    if references.dim() != 2 or estimates.shape != references.shape:
        raise ValueError(
            f"estimates and references must both be (S, N) mono stems of one track; got "
            f"{tuple(estimates.shape)} and {tuple(references.shape)}"
        )
    if not (torch.isfinite(estimates).all() and torch.isfinite(references).all()):
        raise ValueError("estimates or references hold NaN / infinite samples")


def si_sdri_windows(
    estimates: Tensor,
    references: Tensor,
    sample_rate: int,
    *,
    window_seconds: float = 4.0,
    overlap_seconds: float = 2.0,
    filter_single_source: bool = True,
    silence_threshold: float = MSDM_SILENCE_THRESHOLD,
    eps: float = MSDM_EPS,
) -> SISDRiWindows:
    """SI-SDRi of every kept window of one track; ``estimates`` and ``references`` are (S, N)."""
    _check_stems(estimates, references)
    estimates, references = estimates.double(), references.double()
    mixture = references.sum(dim=0, keepdim=True)
    chunk = int(window_seconds * sample_rate)
    overlap = int(overlap_seconds * sample_rate)
    step = chunk - overlap
    if step <= 0:
        raise ValueError(
            f"overlap_seconds={overlap_seconds} must be shorter than window_seconds={window_seconds}"
        )
    total = max(0, math.ceil((references.shape[-1] - overlap) / step))
    rows, starts, ends = [], [], []
    for i in range(total):
        start, end = i * step, i * step + chunk
        ref = references[:, start:end]
        if filter_single_source and int((~is_silent(ref, silence_threshold)).sum()) <= 1:
            continue
        est, mix = estimates[:, start:end], mixture[:, start:end].expand_as(ref)
        rows.append(si_sdr(est, ref, eps) - si_sdr(mix, ref, eps))
        starts.append(start)
        ends.append(min(end, references.shape[-1]))
    values = torch.stack(rows) if rows else torch.zeros(0, references.shape[0], dtype=torch.float64)
    return SISDRiWindows(values, tuple(starts), tuple(ends), total)


class SISDRi(Metric):
    """Per-stem SI-SDRi (MSDM protocol) as a torchmetrics Metric.

    ``update(estimates, references)`` takes one track (S, N) or a batch of tracks (B, S, N) at
    ``sample_rate``; ``compute()`` returns ``{stem: mean SI-SDRi over all kept windows}`` and
    ``"num_windows"``. Window sums and counts reduce by summation across processes.
    """

    full_state_update = False
    total: Tensor
    count: Tensor
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self,
        stem_names: Sequence[str],
        sample_rate: int,
        *,
        window_seconds: float = 4.0,
        overlap_seconds: float = 2.0,
        filter_single_source: bool = True,
        silence_threshold: float = MSDM_SILENCE_THRESHOLD,
        eps: float = MSDM_EPS,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stem_names = tuple(stem_names)
        self.sample_rate = sample_rate
        self.options = {
            "window_seconds": window_seconds,
            "overlap_seconds": overlap_seconds,
            "filter_single_source": filter_single_source,
            "silence_threshold": silence_threshold,
            "eps": eps,
        }
        self.add_state("total", torch.zeros(len(self.stem_names), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, estimates: Tensor, references: Tensor) -> None:
        if estimates.dim() == 2:
            estimates, references = estimates.unsqueeze(0), references.unsqueeze(0)
        if estimates.shape[1] != len(self.stem_names):
            raise ValueError(
                f"got {estimates.shape[1]} stems, expected {len(self.stem_names)} {self.stem_names}; "
                "pass stems in the metric's stem order"
            )
        for est, ref in zip(estimates, references):
            windows = si_sdri_windows(est, ref, self.sample_rate, **self.options)  # type: ignore[arg-type]
            self.total = self.total + windows.values.sum(dim=0).to(self.total)
            self.count = self.count + windows.values.shape[0]

    def compute(self) -> dict[str, float]:
        count = int(self.count.item())
        if count == 0:
            raise ValueError("no window with two or more active stems has been seen; nothing to average")
        result = {name: float(v) for name, v in zip(self.stem_names, self.total / count)}
        result["num_windows"] = float(count)
        return result
