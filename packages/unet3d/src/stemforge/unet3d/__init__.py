"""The MSG-LD 3D U-Net denoiser over stacked stem latents, with mixture-pyramid, text, style and stem-mask conditioning."""

from stemforge.unet3d.__about__ import __version__

__all__ = ["__version__"]
