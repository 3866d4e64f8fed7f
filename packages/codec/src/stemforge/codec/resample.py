"""Band-limited resampling by windowed-sinc interpolation (polyphase, one conv1d).

Smith, "Digital Audio Resampling" (CCRMA, 2002): output sample j at time ``j / new_rate`` is
``sum_n x[n] h(j / new_rate - n / orig_rate)`` with ``h`` a sinc low-pass at
``rolloff * min(orig_rate, new_rate) / 2`` tapered by a Hann window of ``width`` zero crossings
(torchaudio's ``sinc_interp_hann`` kernel). Only the rates' ratio matters, reduced by their gcd, so
the ``new`` phases are precomputed and applied with a stride of ``orig``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["resample"]


def _kernel(orig: int, new: int, width: int, rolloff: float, dtype: torch.dtype) -> tuple[Tensor, int]:
    base = min(orig, new) * rolloff
    half = math.ceil(width * orig / base)
    taps = torch.arange(-half, half + orig, dtype=torch.float64)[None, :] / orig
    phases = -torch.arange(new, dtype=torch.float64)[:, None] / new
    t = torch.clamp((phases + taps) * base, -width, width)
    window = torch.cos(t * math.pi / width / 2).square()
    t = t * math.pi
    sinc = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / torch.where(t == 0, torch.ones_like(t), t))
    return (sinc * window * base / orig).to(dtype)[:, None, :], half


def resample(
    wave: Tensor, orig_rate: int, new_rate: int, lowpass_width: int = 6, rolloff: float = 0.99
) -> Tensor:
    """Resample the last axis of ``wave`` from ``orig_rate`` to ``new_rate`` Hz.

    The output has ``ceil(N * new_rate / orig_rate)`` samples; signal outside [0, N) is taken as 0.
    """
    if orig_rate <= 0 or new_rate <= 0:
        raise ValueError(f"resample: sample rates must be positive, got {orig_rate} -> {new_rate}")
    if orig_rate == new_rate:
        return wave
    g = math.gcd(orig_rate, new_rate)
    orig, new = orig_rate // g, new_rate // g
    kernel, half = _kernel(orig, new, lowpass_width, rolloff, wave.dtype)
    lead, n = wave.shape[:-1], wave.shape[-1]
    flat = F.pad(wave.reshape(-1, 1, n), (half, half + orig))
    out = F.conv1d(flat, kernel.to(wave.device), stride=orig)
    out = out.transpose(1, 2).reshape(flat.shape[0], -1)
    return out[:, : math.ceil(new * n / orig)].reshape(*lead, -1)
