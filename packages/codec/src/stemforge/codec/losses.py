"""Training losses of the codecs.

- VAE (Rombach et al. 2022, Sec. 3.1): L1 reconstruction of the mel plus ``kl_weight`` times
  KL(q(z|x) || N(0, I)); both summed over elements and averaged over the batch as latent-diffusion's
  ``LPIPSWithDiscriminator`` does with its log-variance fixed at 0 (no perceptual/GAN term on mels).
- HiFi-GAN (Kong et al. 2020, eqs. 1-6): least-squares adversarial losses, feature matching
  (L1 between discriminator feature maps, weight 2) and mel L1 (weight 45 in the generator loss).
- Multi-scale spectral loss for the waveform autoencoder (Pasini et al. 2024, "trained end to end
  with spectral losses"; the magnitude terms are those of Yamamoto et al. 2020, eqs. 4-6): per FFT
  size, spectral convergence ``||Y| - |Ŷ||_F / ||Y||_F`` and log-magnitude L1; the phase term is the
  magnitude-weighted anti-wrapped distance ``sum |Y| (1 - cos(angle(Ŷ) - angle(Y))) / sum |Y|``,
  which is zero iff phases agree wherever the target has energy and needs no ``angle`` (it is
  computed from ``Re(Ŷ conj(Y)) / |Ŷ|``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from stemforge.codec.autoencoder_kl import DiagonalGaussian

__all__ = [
    "discriminator_adversarial_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "kl_loss",
    "multi_scale_spectral_loss",
    "vae_loss",
]

_EPS = 1e-7


def kl_loss(posterior: DiagonalGaussian) -> Tensor:
    """KL(q(z|x) || N(0, I)) summed over latent elements, averaged over the batch."""
    return posterior.kl().mean()


def vae_loss(
    reconstruction: Tensor, mel: Tensor, posterior: DiagonalGaussian, kl_weight: float = 1e-6
) -> dict[str, Tensor]:
    """``{"loss", "l1", "kl"}``; ``l1`` is the per-element mean for logging, ``loss`` uses sums."""
    abs_err = (reconstruction - mel).abs()
    rec = abs_err.flatten(1).sum(1).mean()
    kl = kl_loss(posterior)
    return {"loss": rec + kl_weight * kl, "l1": abs_err.mean(), "kl": kl}


def discriminator_adversarial_loss(real_scores: Sequence[Tensor], fake_scores: Sequence[Tensor]) -> Tensor:
    """LSGAN discriminator loss, eq. 1: ``sum_k E[(D_k(x) - 1)^2] + E[D_k(G(s))^2]``."""
    return sum(
        (
            torch.mean((1.0 - real).square()) + torch.mean(fake.square())
            for real, fake in zip(real_scores, fake_scores)
        ),
        torch.zeros(()),
    )


def generator_adversarial_loss(fake_scores: Sequence[Tensor]) -> Tensor:
    """LSGAN generator loss, eq. 2: ``sum_k E[(D_k(G(s)) - 1)^2]``."""
    return sum((torch.mean((1.0 - fake).square()) for fake in fake_scores), torch.zeros(()))


def feature_matching_loss(
    real_features: Sequence[Sequence[Tensor]], fake_features: Sequence[Sequence[Tensor]]
) -> Tensor:
    """Eq. 4 with HiFi-GAN's weight 2: ``2 * sum_k sum_i mean |D_k^i(x) - D_k^i(G(s))|``."""
    total = torch.zeros(())
    for real_maps, fake_maps in zip(real_features, fake_features):
        for real, fake in zip(real_maps, fake_maps):
            total = total + torch.mean((real.detach() - fake).abs())
    return 2.0 * total


def _stft(wave: Tensor, n_fft: int) -> Tensor:
    window = torch.hann_window(n_fft, device=wave.device, dtype=wave.dtype)
    return torch.stft(wave, n_fft, hop_length=n_fft // 4, window=window, center=True, return_complex=True)


def multi_scale_spectral_loss(
    prediction: Tensor,
    target: Tensor,
    fft_sizes: Sequence[int] = (2048, 1024, 512, 256, 128, 64),
    phase_weight: float = 1.0,
) -> dict[str, Tensor]:
    """Spectral convergence + log-magnitude L1 + phase distance, each averaged over ``fft_sizes``.

    ``prediction`` and ``target`` are waveforms (..., N). Returns ``{"loss", "convergence",
    "log_magnitude", "phase"}`` with ``loss = convergence + log_magnitude + phase_weight * phase``.
    """
    if prediction.shape != target.shape:
        raise ValueError(
            f"multi_scale_spectral_loss: prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ"
        )
    pred = prediction.reshape(-1, prediction.shape[-1])
    ref = target.reshape(-1, target.shape[-1])
    convergence = log_magnitude = phase = torch.zeros((), device=pred.device)
    sizes = [n for n in fft_sizes if n // 2 < pred.shape[-1]]
    if not sizes:
        raise ValueError(
            f"multi_scale_spectral_loss: {pred.shape[-1]} samples is shorter than every FFT size {tuple(fft_sizes)}"
        )
    for n_fft in sizes:
        spec_pred, spec_ref = _stft(pred, n_fft), _stft(ref, n_fft)
        mag_pred = torch.sqrt(spec_pred.real.square() + spec_pred.imag.square() + _EPS)
        mag_ref = torch.sqrt(spec_ref.real.square() + spec_ref.imag.square() + _EPS)
        convergence = convergence + torch.linalg.vector_norm(mag_ref - mag_pred) / torch.linalg.vector_norm(
            mag_ref
        )
        log_magnitude = log_magnitude + F.l1_loss(torch.log(mag_pred), torch.log(mag_ref))
        # |Y| cos(dphi) = Re(Ŷ conj(Y)) / |Ŷ|; the target needs no gradient, so |Y| needs no epsilon.
        aligned = (spec_pred.real * spec_ref.real + spec_pred.imag * spec_ref.imag) / mag_pred
        weight = spec_ref.abs()
        phase = phase + torch.sum(weight - aligned) / torch.sum(weight)
    count = len(sizes)
    convergence, log_magnitude, phase = convergence / count, log_magnitude / count, phase / count
    return {
        "loss": convergence + log_magnitude + phase_weight * phase,
        "convergence": convergence,
        "log_magnitude": log_magnitude,
        "phase": phase,
    }
