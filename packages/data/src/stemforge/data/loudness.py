"""Integrated loudness of ITU-R BS.1770-4 (LUFS) for mono signals.

K-weighting is the cascade of the standard's two biquads (a high shelf of +4 dB above ~1.7 kHz and
a high-pass at ~38 Hz), with coefficients for any sample rate from their analogue prototypes
(bilinear transform with pre-warping, as libebur128 does). The filter is applied as
its exact frequency response on a zero-padded FFT (linear, not circular, convolution up to the
filter's tail beyond the padding, which decays below 1e-12 within the 0.5 s pad). Gating follows
BS.1770-4: 400 ms blocks with 75 % overlap, an absolute gate at -70 LUFS and a relative gate 10 LU
below the loudness of the blocks above the absolute gate. L = -0.691 + 10 log10(mean power).
A signal shorter than one block is measured as a single block.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

_SHELF_F0, _SHELF_GAIN_DB, _SHELF_Q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
_HIGHPASS_F0, _HIGHPASS_Q = 38.13547087602444, 0.5003270373238773
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0


def k_weighting_coefficients(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(b, a) of the high shelf, (b, a) of the high-pass] at ``sample_rate``, with a[0] = 1.

    The analogue prototypes of BS.1770's two stages, bilinear-transformed with frequency
    pre-warping (the design of libebur128); at 48 kHz they give the standard's Tables 1 and 2.
    """
    k = math.tan(math.pi * _SHELF_F0 / sample_rate)
    vh = 10 ** (_SHELF_GAIN_DB / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / _SHELF_Q + k * k
    b_shelf = np.array(
        [(vh + vb * k / _SHELF_Q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / _SHELF_Q + k * k) / a0]
    )
    a_shelf = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / _SHELF_Q + k * k) / a0])
    k = math.tan(math.pi * _HIGHPASS_F0 / sample_rate)
    a0 = 1 + k / _HIGHPASS_Q + k * k
    b_hp = np.array([1.0, -2.0, 1.0])
    a_hp = np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / _HIGHPASS_Q + k * k) / a0])
    return [(b_shelf, a_shelf), (b_hp, a_hp)]


@functools.lru_cache(maxsize=8)
def _k_response(n_fft: int, sample_rate: int) -> np.ndarray:
    """The cascade's frequency response H(e^{jw}) on the rfft bins of an n_fft-point transform."""
    z_inv = np.exp(-1j * 2 * np.pi * np.fft.rfftfreq(n_fft))
    response = np.ones_like(z_inv)
    for b, a in k_weighting_coefficients(sample_rate):
        response *= (b[0] + b[1] * z_inv + b[2] * z_inv**2) / (a[0] + a[1] * z_inv + a[2] * z_inv**2)
    response.flags.writeable = False
    return response


def k_weight(wave: np.ndarray, sample_rate: int) -> np.ndarray:
    """K-weighted copy of a 1-D float signal (float64)."""
    x = np.asarray(wave, dtype=np.float64)
    n = x.shape[-1] + sample_rate // 2
    n_fft = 1 << (n - 1).bit_length()
    # numpy's single-threaded FFT: faster here than torch's, whose threads contend on a busy machine.
    return np.fft.irfft(np.fft.rfft(x, n_fft) * _k_response(n_fft, sample_rate), n_fft)[: x.shape[-1]]


def gated_loudness(weighted: np.ndarray, sample_rate: int) -> float:
    """BS.1770-4 gating over an already K-weighted mono signal; -inf for silence."""
    block, step = round(0.4 * sample_rate), round(0.1 * sample_rate)
    power = np.concatenate([[0.0], np.cumsum(weighted**2)])
    if weighted.shape[0] < block:
        z = np.array([power[-1] / max(weighted.shape[0], 1)])
    else:
        starts = np.arange(0, weighted.shape[0] - block + 1, step)
        z = (power[starts + block] - power[starts]) / block
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10 * np.log10(z)
    z = z[levels > ABSOLUTE_GATE_LUFS]
    if z.size == 0:
        return float("-inf")
    relative_gate = -0.691 + 10 * math.log10(z.mean()) + RELATIVE_GATE_LU
    z = z[-0.691 + 10 * np.log10(z) > relative_gate]
    return float(-0.691 + 10 * math.log10(z.mean()))


def integrated_loudness(wave: torch.Tensor | np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of a mono signal (N,); ``-inf`` when it is silent (all gated)."""
    array = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    if array.ndim != 1:
        raise ValueError(f"integrated_loudness: expected mono audio (N,), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("integrated_loudness: the audio holds NaN or infinite samples")
    return gated_loudness(k_weight(array, sample_rate), sample_rate)
