"""Attention kernels for the stemforge 3D U-Net: reference, SDPA and a fused Triton flash attention with relative-position bias."""

from stemforge.kernels.__about__ import __version__

__all__ = ["__version__"]
