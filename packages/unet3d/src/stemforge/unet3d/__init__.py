"""The MSG-LD 3D U-Net denoiser over stacked stem latents, with mixture-pyramid, text, style and stem-mask conditioning."""

from stemforge.unet3d.__about__ import __version__
from stemforge.unet3d.config import CHORALE_STEMS, DEFAULT_STEMS, PRESETS, UNet3DConfig
from stemforge.unet3d.dpb import DynamicPositionBias
from stemforge.unet3d.mixture import mixture_pyramid
from stemforge.unet3d.norm import FrameGroupNorm, GroupNorm32
from stemforge.unet3d.timestep import timestep_embedding
from stemforge.unet3d.unet import COND_KEYS, UNet3D

__all__ = [
    "CHORALE_STEMS",
    "COND_KEYS",
    "DEFAULT_STEMS",
    "PRESETS",
    "DynamicPositionBias",
    "FrameGroupNorm",
    "GroupNorm32",
    "UNet3D",
    "UNet3DConfig",
    "__version__",
    "mixture_pyramid",
    "timestep_embedding",
]
