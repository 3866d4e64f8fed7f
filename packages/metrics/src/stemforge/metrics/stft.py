"""Multi-resolution STFT distance (Yamamoto et al., "Parallel WaveGAN", ICASSP 2020, eqs. 4-6).

At each resolution (FFT size, hop, window length), with magnitudes |S| of the reference and
|S_hat| of the estimate (Hann window, centred frames, magnitudes floored at ``eps``):

    L_sc  = || |S| - |S_hat| ||_F / || |S| ||_F                  (spectral convergence)
    L_mag = mean | log |S| - log |S_hat| |                        (log STFT magnitude)

and the distance is the mean over resolutions of L_sc + L_mag. Default resolutions are the paper's
(512, 50, 240), (1024, 120, 600), (2048, 240, 1200).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["PWG_RESOLUTIONS", "MultiResolutionSTFTDistance", "multi_resolution_stft_distance"]

PWG_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((512, 50, 240), (1024, 120, 600), (2048, 240, 1200))


def _magnitude(wave: Tensor, n_fft: int, hop: int, win: int, eps: float) -> Tensor:
    window = torch.hann_window(win, dtype=wave.dtype, device=wave.device)
    spec = torch.stft(
        wave, n_fft, hop, win, window=window, center=True, pad_mode="reflect", return_complex=True
    )
    return spec.abs().clamp_min(eps)


def multi_resolution_stft_distance(
    estimate: Tensor,
    reference: Tensor,
    resolutions: Sequence[tuple[int, int, int]] = PWG_RESOLUTIONS,
    *,
    eps: float = 1e-7,
) -> Tensor:
    """Per-item distance of (..., N) waveforms (returns the leading shape), computed in float64."""
    if estimate.shape != reference.shape:
        raise ValueError(
            f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)} differ in shape"
        )
    lead = estimate.shape[:-1]
    est = estimate.reshape(-1, estimate.shape[-1]).double()
    ref = reference.reshape(-1, reference.shape[-1]).double()
    total = torch.zeros(est.shape[0], dtype=torch.float64, device=est.device)
    for n_fft, hop, win in resolutions:
        if est.shape[-1] <= n_fft // 2:
            raise ValueError(f"audio of {est.shape[-1]} samples is too short for an STFT of size {n_fft}")
        mag_est, mag_ref = _magnitude(est, n_fft, hop, win, eps), _magnitude(ref, n_fft, hop, win, eps)
        sc = (mag_ref - mag_est).flatten(1).norm(dim=1) / mag_ref.flatten(1).norm(dim=1)
        log_mag = (mag_ref.log() - mag_est.log()).abs().flatten(1).mean(dim=1)
        total = total + sc + log_mag
    return (total / len(resolutions)).reshape(lead)


class MultiResolutionSTFTDistance(Metric):
    """Mean multi-resolution STFT distance over every item seen (sums and counts reduce across processes)."""

    full_state_update = False
    total: Tensor
    count: Tensor
    higher_is_better = False
    is_differentiable = False

    def __init__(
        self, resolutions: Sequence[tuple[int, int, int]] = PWG_RESOLUTIONS, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.resolutions = tuple(tuple(r) for r in resolutions)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, estimate: Tensor, reference: Tensor) -> None:
        values = multi_resolution_stft_distance(estimate, reference, self.resolutions)  # type: ignore[arg-type]
        self.total = self.total + values.sum()
        self.count = self.count + values.numel()

    def compute(self) -> Tensor:
        if int(self.count.item()) == 0:
            raise ValueError("MultiResolutionSTFTDistance.compute() called before any update")
        return self.total / self.count
