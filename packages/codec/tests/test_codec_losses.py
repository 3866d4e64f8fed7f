"""Codec losses against slow float64 references, and the step functions on the rendered chorale."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import distributions as D

from stemforge.codec import (
    AutoencoderKL,
    AutoencoderKLConfig,
    DiagonalGaussian,
    HiFiGAN,
    HiFiGANConfig,
    MelFrontEnd,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    WaveformAutoencoder,
    WaveformAutoencoderConfig,
    WaveformCodec,
    discriminator_adversarial_loss,
    estimate_scale_factor,
    feature_matching_loss,
    generator_adversarial_loss,
    kl_loss,
    multi_scale_spectral_loss,
    vae_loss,
    vae_step,
    vocoder_step,
    waveform_autoencoder_step,
)


def test_kl_matches_torch_distributions() -> None:
    torch.manual_seed(0)
    moments = torch.randn(3, 8, 5, 4, dtype=torch.float64)
    posterior = DiagonalGaussian(moments)
    mean, logvar = moments.chunk(2, dim=1)
    ref = D.kl_divergence(D.Normal(mean, (0.5 * logvar).exp()), D.Normal(0.0, 1.0)).sum((1, 2, 3)).mean()
    torch.testing.assert_close(kl_loss(posterior), ref, rtol=1e-12, atol=1e-12)
    mel, recon = torch.randn(3, 8, 6, dtype=torch.float64), torch.randn(3, 8, 6, dtype=torch.float64)
    losses = vae_loss(recon, mel, posterior, kl_weight=0.01)
    expected = (recon - mel).abs().sum() / 3 + 0.01 * ref
    torch.testing.assert_close(losses["loss"], expected, rtol=1e-12, atol=1e-12)


def test_gan_losses_match_loops() -> None:
    torch.manual_seed(1)
    real = [torch.randn(2, 7), torch.randn(2, 3)]
    fake = [torch.randn(2, 7), torch.randn(2, 3)]
    ref_d = sum(float(((1 - r.numpy()) ** 2).mean() + (f.numpy() ** 2).mean()) for r, f in zip(real, fake))
    ref_g = sum(float(((1 - f.numpy()) ** 2).mean()) for f in fake)
    assert float(discriminator_adversarial_loss(real, fake)) == pytest.approx(ref_d, rel=1e-6)
    assert float(generator_adversarial_loss(fake)) == pytest.approx(ref_g, rel=1e-6)
    fr = [[torch.randn(2, 4, 5), torch.randn(2, 3)], [torch.randn(2, 6)]]
    ff = [[torch.randn(2, 4, 5), torch.randn(2, 3)], [torch.randn(2, 6)]]
    ref_fm = 2 * sum(
        float(np.abs(a.numpy() - b.numpy()).mean()) for ra, fa in zip(fr, ff) for a, b in zip(ra, fa)
    )
    assert float(feature_matching_loss(fr, ff)) == pytest.approx(ref_fm, rel=1e-6)


def reference_spectral(pred: np.ndarray, ref: np.ndarray, n_fft: int) -> tuple[float, float, float]:
    """One resolution, frame by frame: centred reflect padding, periodic Hann, hop n_fft / 4, float64."""

    def stft(x: np.ndarray) -> np.ndarray:
        x = np.pad(x, n_fft // 2, mode="reflect")
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
        return np.stack(
            [np.fft.rfft(x[s : s + n_fft] * window) for s in range(0, len(x) - n_fft + 1, n_fft // 4)]
        )

    sp, sr = stft(pred), stft(ref)
    mp, mr = np.sqrt(np.abs(sp) ** 2 + 1e-7), np.sqrt(np.abs(sr) ** 2 + 1e-7)
    convergence = np.linalg.norm(mr - mp) / np.linalg.norm(mr)
    log_mag = np.abs(np.log(mp) - np.log(mr)).mean()
    dphi = np.angle(sp) - np.angle(sr)
    phase = (np.abs(sr) - np.abs(sp) * np.abs(sr) * np.cos(dphi) / mp).sum() / np.abs(sr).sum()
    return convergence, log_mag, phase


def test_spectral_loss_matches_framewise_reference() -> None:
    torch.manual_seed(2)
    ref = torch.randn(1, 3000, dtype=torch.float64)
    pred = ref + 0.3 * torch.randn(1, 3000, dtype=torch.float64)
    ours = multi_scale_spectral_loss(pred, ref, fft_sizes=(256, 64))
    expected = np.mean([reference_spectral(pred[0].numpy(), ref[0].numpy(), n) for n in (256, 64)], axis=0)
    # float64 both sides; the phase reference goes through angle(), ours through Re(Ŷ conj Y).
    np.testing.assert_allclose(
        [float(ours["convergence"]), float(ours["log_magnitude"]), float(ours["phase"])], expected, rtol=1e-9
    )


def test_spectral_loss_separates_magnitude_and_phase() -> None:
    t = torch.arange(4096, dtype=torch.float64) / 16000
    ref = torch.sin(2 * torch.pi * 440 * t)[None]
    same = multi_scale_spectral_loss(ref, ref, fft_sizes=(512, 128))
    # Exactly zero but for the 1e-7 under the magnitudes' square root.
    assert all(float(v) < 1e-4 for v in same.values()), same
    quieter = multi_scale_spectral_loss(0.5 * ref, ref, fft_sizes=(512, 128))
    assert float(quieter["phase"]) < 1e-3 and float(quieter["log_magnitude"]) > 0.1
    shifted = multi_scale_spectral_loss(
        torch.sin(2 * torch.pi * 440 * t + 2.0)[None], ref, fft_sizes=(512, 128)
    )
    assert float(shifted["phase"]) > 1.0 and float(shifted["convergence"]) < 0.3
    with pytest.raises(ValueError, match="differ"):
        multi_scale_spectral_loss(ref, ref[..., :-1])


@pytest.fixture(scope="module")
def chorale_mono(chorale_stems: torch.Tensor) -> torch.Tensor:
    """The four rendered chorale stems from 1 s to 1.2 s, (4, 3200)."""
    return chorale_stems[0, :, 16000:19200]


def test_vae_step_lowers_loss_on_chorale(chorale_mono: torch.Tensor) -> None:
    torch.manual_seed(0)
    mel = MelFrontEnd()(chorale_mono)[:, :16]
    vae = AutoencoderKL(AutoencoderKLConfig.from_name("tiny"))
    optimizer = torch.optim.Adam(vae.parameters(), lr=2e-3)
    history = [vae_step(vae, mel, optimizer, kl_weight=1e-6)["l1"] for _ in range(40)]
    assert np.mean(history[-5:]) < 0.6 * np.mean(history[:3]), history


def test_waveform_step_lowers_loss_on_chorale(chorale_mono: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = WaveformAutoencoder(WaveformAutoencoderConfig.from_name("tiny"))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    history = [
        waveform_autoencoder_step(model, chorale_mono, optimizer, fft_sizes=(512, 128))["loss"]
        for _ in range(20)
    ]
    assert np.mean(history[-5:]) < 0.8 * np.mean(history[:3]), history


def test_gan_steps_update_generator_and_discriminators(chorale_mono: torch.Tensor) -> None:
    torch.manual_seed(0)
    front_end = MelFrontEnd()
    wave = chorale_mono[:2, :3200]
    mel = front_end(wave)
    vocoder = HiFiGAN(HiFiGANConfig.from_name("tiny"))
    discriminators = (MultiPeriodDiscriminator(channels=1 / 16), MultiScaleDiscriminator(channels=1 / 16))
    opt_g = torch.optim.AdamW(vocoder.parameters(), lr=2e-4, betas=(0.8, 0.99))
    opt_d = torch.optim.AdamW([p for d in discriminators for p in d.parameters()], lr=2e-4, betas=(0.8, 0.99))
    before_g = [p.detach().clone() for p in vocoder.parameters()]
    before_d = [p.detach().clone() for p in discriminators[0].parameters()]
    logs = vocoder_step(vocoder, discriminators, front_end, mel, wave, opt_g, opt_d)
    assert set(logs) == {"discriminator", "generator", "adversarial", "feature_matching", "mel_l1"}
    assert all(np.isfinite(v) for v in logs.values())
    assert logs["generator"] == pytest.approx(
        logs["adversarial"] + logs["feature_matching"] + 45 * logs["mel_l1"], rel=1e-5
    )
    assert any(not torch.equal(a, b) for a, b in zip(before_g, vocoder.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, discriminators[0].parameters()))
    with pytest.raises(ValueError, match="frames"):
        vocoder_step(vocoder, discriminators, front_end, mel, wave[:, :-1], opt_g, opt_d)

    model = WaveformAutoencoder(WaveformAutoencoderConfig.from_name("tiny"))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    logs = waveform_autoencoder_step(
        model, wave, opt, fft_sizes=(256,), discriminators=discriminators, discriminator_optimizer=opt_d
    )
    assert {"discriminator", "adversarial", "feature_matching"} <= set(logs)


def test_scale_factor_gives_unit_variance(chorale_stems: torch.Tensor) -> None:
    torch.manual_seed(0)
    codec = WaveformCodec(WaveformAutoencoderConfig.from_name("tiny"))
    batches = [chorale_stems[..., i * 16000 : i * 16000 + 4096] for i in range(3)]
    scale = estimate_scale_factor(codec, batches)
    with torch.no_grad():
        latents = torch.cat([codec.encode(b).flatten() for b in batches]).double()
    assert float(codec.scale_factor) == pytest.approx(scale)
    assert float(latents.std()) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="no latents"):
        estimate_scale_factor(codec, [])
    assert float(codec.scale_factor) == pytest.approx(scale)
