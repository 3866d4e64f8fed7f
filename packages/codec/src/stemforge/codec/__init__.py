"""Audio <-> latent codecs: mel front end, mel VAE + HiFi-GAN vocoder (MSG-LD) and a waveform autoencoder with spectral losses (Pasini et al.)."""

from stemforge.codec.__about__ import __version__
from stemforge.codec.autoencoder_kl import AutoencoderKL, AutoencoderKLConfig, DiagonalGaussian
from stemforge.codec.base import Codec
from stemforge.codec.checkpoint import codec_from_config, load_codec, save_codec
from stemforge.codec.checks import DegenerateAudioError, audio_problems, check_audio
from stemforge.codec.chunked import chunk_bounds, overlap_add
from stemforge.codec.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from stemforge.codec.hifigan import HiFiGAN, HiFiGANConfig
from stemforge.codec.losses import (
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
    kl_loss,
    multi_scale_spectral_loss,
    vae_loss,
)
from stemforge.codec.mel import MelConfig, MelFrontEnd, mel_filterbank
from stemforge.codec.mel_vae_codec import MelVAECodec, MelVAECodecConfig
from stemforge.codec.musicldm import (
    load_musicldm_codec,
    load_musicldm_vae,
    load_musicldm_vocoder,
    map_hifigan_state_dict,
    map_ldm_vae_state_dict,
)
from stemforge.codec.steps import estimate_scale_factor, vae_step, vocoder_step, waveform_autoencoder_step
from stemforge.codec.waveform_autoencoder import WaveformAutoencoder, WaveformAutoencoderConfig
from stemforge.codec.waveform_codec import WaveformCodec

__all__ = [
    "AutoencoderKL",
    "AutoencoderKLConfig",
    "Codec",
    "DegenerateAudioError",
    "DiagonalGaussian",
    "HiFiGAN",
    "HiFiGANConfig",
    "MelConfig",
    "MelFrontEnd",
    "MelVAECodec",
    "MelVAECodecConfig",
    "MultiPeriodDiscriminator",
    "MultiScaleDiscriminator",
    "WaveformAutoencoder",
    "WaveformAutoencoderConfig",
    "WaveformCodec",
    "__version__",
    "audio_problems",
    "check_audio",
    "chunk_bounds",
    "codec_from_config",
    "discriminator_adversarial_loss",
    "estimate_scale_factor",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "kl_loss",
    "load_codec",
    "load_musicldm_codec",
    "load_musicldm_vae",
    "load_musicldm_vocoder",
    "map_hifigan_state_dict",
    "map_ldm_vae_state_dict",
    "mel_filterbank",
    "multi_scale_spectral_loss",
    "overlap_add",
    "save_codec",
    "vae_loss",
    "vae_step",
    "vocoder_step",
    "waveform_autoencoder_step",
]
