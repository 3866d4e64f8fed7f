"""Audio <-> latent codecs: mel front end, mel VAE + HiFi-GAN vocoder (MSG-LD) and a waveform autoencoder with spectral losses (Pasini et al.)."""

from stemforge.codec.__about__ import __version__

__all__ = ["__version__"]
