"""Attention kernels for the stemforge 3D U-Net: reference, SDPA and a fused Triton flash attention with relative-position bias."""

from stemforge.kernels.__about__ import __version__
from stemforge.kernels.attention import BACKENDS, Backend, attention, triton_available
from stemforge.kernels.bias import relative_bias_from_table, relative_offsets
from stemforge.kernels.reference import reference_attention
from stemforge.kernels.sdpa import sdpa_attention

__all__ = [
    "BACKENDS",
    "Backend",
    "__version__",
    "attention",
    "reference_attention",
    "relative_bias_from_table",
    "relative_offsets",
    "sdpa_attention",
    "triton_available",
]
