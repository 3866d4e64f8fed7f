"""One optimisation step of each codec, for the training app's loop (this package holds no loop).

Each step takes the modules, one batch and the optimiser(s), runs forward, backward and
``optimizer.step()``, and returns the detached losses as floats for logging. ``backward`` defaults
to ``loss.backward()``; a distributed loop passes its own (``fabric.backward``). The recipes:

- :func:`vae_step`: L1 mel reconstruction + KL (Rombach et al. 2022; latent-diffusion's
  ``kl_weight`` 1e-6).
- :func:`vocoder_step`: HiFi-GAN (Kong et al. 2020, eqs. 5-6): discriminator update on real vs.
  generated audio with MPD + MSD, then generator update with adversarial + feature matching
  + 45 x mel L1.
- :func:`waveform_autoencoder_step`: L1 on the waveform + multi-scale spectral magnitude and phase
  losses (Pasini et al. 2024), with an optional adversarial term from a discriminator pair.
- :func:`estimate_scale_factor`: 1 / std of the unscaled latents over data (Rombach et al. 2022,
  Sec. 4.3.2), stored in the codec's ``scale_factor`` and saved with its checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from stemforge.codec.autoencoder_kl import AutoencoderKL
from stemforge.codec.base import Codec
from stemforge.codec.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from stemforge.codec.hifigan import HiFiGAN
from stemforge.codec.losses import (
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    multi_scale_spectral_loss,
    vae_loss,
)
from stemforge.codec.waveform_autoencoder import WaveformAutoencoder

__all__ = ["estimate_scale_factor", "vae_step", "vocoder_step", "waveform_autoencoder_step"]

Backward = Callable[[Tensor], None]


def _backward(loss: Tensor) -> None:
    loss.backward()


def _update(optimizer: torch.optim.Optimizer, loss: Tensor, backward: Backward | None) -> None:
    optimizer.zero_grad(set_to_none=True)
    (backward or _backward)(loss)
    optimizer.step()


def vae_step(
    vae: AutoencoderKL,
    mel: Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    kl_weight: float = 1e-6,
    backward: Backward | None = None,
) -> dict[str, float]:
    """One VAE update on log-mels (B, T, M); returns ``{"loss", "l1", "kl"}``."""
    reconstruction, posterior = vae(mel, sample=True)
    losses = vae_loss(reconstruction, mel, posterior, kl_weight)
    _update(optimizer, losses["loss"], backward)
    return {name: float(value.detach()) for name, value in losses.items()}


def _discriminate(
    discriminators: tuple[nn.Module, ...], wave: Tensor
) -> tuple[list[Tensor], list[list[Tensor]]]:
    scores: list[Tensor] = []
    features: list[list[Tensor]] = []
    for discriminator in discriminators:
        s, f = discriminator(wave)
        scores += s
        features += f
    return scores, features


def vocoder_step(
    vocoder: HiFiGAN,
    discriminators: tuple[MultiPeriodDiscriminator, MultiScaleDiscriminator],
    mel_fn: Callable[[Tensor], Tensor],
    mel: Tensor,
    wave: Tensor,
    generator_optimizer: torch.optim.Optimizer,
    discriminator_optimizer: torch.optim.Optimizer,
    *,
    mel_weight: float = 45.0,
    backward: Backward | None = None,
) -> dict[str, float]:
    """One HiFi-GAN update; ``mel`` (B, T, M) is ``mel_fn(wave)`` for ``wave`` (B, T * hop).

    Returns ``{"discriminator", "generator", "adversarial", "feature_matching", "mel_l1"}``.
    """
    if wave.shape[-1] != mel.shape[1] * vocoder.config.hop_length:
        raise ValueError(
            f"vocoder_step: wave has {wave.shape[-1]} samples but mel has {mel.shape[1]} frames of hop "
            f"{vocoder.config.hop_length}; cut the wave to frames * hop"
        )
    fake = vocoder(mel)
    real_scores, _ = _discriminate(discriminators, wave)
    fake_scores, _ = _discriminate(discriminators, fake.detach())
    loss_d = discriminator_adversarial_loss(real_scores, fake_scores)
    _update(discriminator_optimizer, loss_d, backward)

    _, real_features = _discriminate(discriminators, wave)
    fake_scores, fake_features = _discriminate(discriminators, fake)
    adversarial = generator_adversarial_loss(fake_scores)
    matching = feature_matching_loss(real_features, fake_features)
    mel_l1 = F.l1_loss(mel_fn(fake), mel)
    loss_g = adversarial + matching + mel_weight * mel_l1
    # The discriminators' gradients from this pass are cleared by their next zero_grad.
    _update(generator_optimizer, loss_g, backward)
    return {
        "discriminator": float(loss_d.detach()),
        "generator": float(loss_g.detach()),
        "adversarial": float(adversarial.detach()),
        "feature_matching": float(matching.detach()),
        "mel_l1": float(mel_l1.detach()),
    }


def waveform_autoencoder_step(
    autoencoder: WaveformAutoencoder,
    wave: Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    l1_weight: float = 1.0,
    spectral_weight: float = 1.0,
    phase_weight: float = 1.0,
    fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64),
    discriminators: tuple[nn.Module, ...] | None = None,
    discriminator_optimizer: torch.optim.Optimizer | None = None,
    adversarial_weight: float = 1.0,
    backward: Backward | None = None,
) -> dict[str, float]:
    """One autoencoder update on waveforms (B, N), N a multiple of the hop.

    Returns ``{"loss", "l1", "convergence", "log_magnitude", "phase"}`` and, with discriminators,
    ``"discriminator"``, ``"adversarial"`` and ``"feature_matching"``.
    """
    if (discriminators is None) != (discriminator_optimizer is None):
        raise ValueError(
            "waveform_autoencoder_step: pass both discriminators and discriminator_optimizer, or neither"
        )
    reconstruction = autoencoder(wave)
    spectral = multi_scale_spectral_loss(reconstruction, wave, fft_sizes, phase_weight)
    l1 = F.l1_loss(reconstruction, wave)
    loss = l1_weight * l1 + spectral_weight * spectral["loss"]
    logs = {"l1": float(l1.detach())} | {k: float(v.detach()) for k, v in spectral.items() if k != "loss"}
    if discriminators is not None and discriminator_optimizer is not None:
        real_scores, _ = _discriminate(discriminators, wave)
        fake_scores, _ = _discriminate(discriminators, reconstruction.detach())
        loss_d = discriminator_adversarial_loss(real_scores, fake_scores)
        _update(discriminator_optimizer, loss_d, backward)
        _, real_features = _discriminate(discriminators, wave)
        fake_scores, fake_features = _discriminate(discriminators, reconstruction)
        adversarial = generator_adversarial_loss(fake_scores)
        matching = feature_matching_loss(real_features, fake_features)
        loss = loss + adversarial_weight * (adversarial + matching)
        logs |= {
            "discriminator": float(loss_d.detach()),
            "adversarial": float(adversarial.detach()),
            "feature_matching": float(matching.detach()),
        }
    _update(optimizer, loss, backward)
    return {"loss": float(loss.detach()), **logs}


@torch.no_grad()
def estimate_scale_factor(codec: Codec, waves: Iterable[Tensor]) -> float:
    """Set ``codec.scale_factor`` to 1 / std of its unscaled latents over ``waves`` (each (B, S, N)).

    The statistics are accumulated in float64 over every latent element of every batch.
    """
    count, total, total_sq = 0, 0.0, 0.0
    previous = float(codec.scale_factor)
    codec.scale_factor.fill_(1.0)
    try:
        for wave in waves:
            latent = codec.encode(wave).double()
            count += latent.numel()
            total += float(latent.sum())
            total_sq += float(latent.square().sum())
    except BaseException:
        codec.scale_factor.fill_(previous)
        raise
    if count < 2:
        codec.scale_factor.fill_(previous)
        raise ValueError("estimate_scale_factor: no latents; pass at least one non-empty batch of audio")
    variance = (total_sq - total * total / count) / (count - 1)
    if variance <= 0:
        codec.scale_factor.fill_(previous)
        raise ValueError(
            "estimate_scale_factor: the latents have zero variance (silent audio?); use real audio"
        )
    scale = variance**-0.5
    codec.scale_factor.fill_(scale)
    return scale
