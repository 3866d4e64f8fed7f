"""Log-mel front end of AudioLDM / MusicLDM / MSG-LD (the Tacotron-2 STFT of HiFi-GAN).

Karchkhadze et al., "Simultaneous Music Separation and Generation Using Multi-Track Latent
Diffusion Models" (MSG-LD), Sec. III: 16 kHz audio, window 1024, hop 160, 64 mel bands, so a
10.24 s clip gives a 1024 x 64 mel. The filterbank is the Slaney-style mel scale with Slaney
area normalisation (librosa's default, used by HiFi-GAN's ``mel_spectrogram`` and AudioLDM's
``TacotronSTFT``); the spectrogram is the STFT magnitude of a Hann-windowed signal reflect-padded
by ``(n_fft - hop) / 2`` on both sides (``center=False``), and the log is
``ln(clamp(mel, 1e-5))``.

With that padding, ``num_frames = num_samples // hop`` for ``num_samples >= hop``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["MelConfig", "MelFrontEnd", "hz_to_mel", "mel_filterbank", "mel_to_hz"]

# Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(hz: Tensor) -> Tensor:
    """Slaney mel scale (librosa ``hz_to_mel(htk=False)``)."""
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + torch.log(torch.clamp(hz, min=_MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return torch.where(hz >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mel: Tensor) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * torch.exp(_LOG_STEP * (torch.clamp(mel, min=_MIN_LOG_MEL) - _MIN_LOG_MEL))
    return torch.where(mel >= _MIN_LOG_MEL, log, linear)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> Tensor:
    """Triangular Slaney-normalised mel filters, shape (n_mels, n_fft // 2 + 1), float64."""
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(
            f"mel_filterbank: need 0 <= f_min < f_max <= sample_rate / 2, got f_min={f_min}, "
            f"f_max={f_max}, sample_rate={sample_rate}; choose f_max at most {sample_rate / 2}"
        )
    fft_freqs = torch.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_edges = torch.linspace(
        float(hz_to_mel(torch.tensor(f_min, dtype=torch.float64))),
        float(hz_to_mel(torch.tensor(f_max, dtype=torch.float64))),
        n_mels + 2,
        dtype=torch.float64,
    )
    hz_edges = mel_to_hz(mel_edges)
    widths = hz_edges[1:] - hz_edges[:-1]
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    # Slaney normalisation: every filter has unit area in Hz.
    return weights * (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]


@dataclass(frozen=True)
class MelConfig:
    """Front-end parameters; :meth:`from_name` ("msgld") gives the MSG-LD reference values."""

    sample_rate: int = 16000
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 0.0
    f_max: float = 8000.0
    log_clamp: float = 1e-5
    framing: str = "hifigan"
    """``"hifigan"`` (default): reflect padding of ``(n_fft - hop) / 2``, frame k centred at
    ``(k + 1/2) hop``, |X| with HiFi-GAN's 1e-9 under the square root. ``"tacotron"``: the
    ``TacotronSTFT`` front end of MusicLDM / MSG-LD's original code: reflect padding of ``n_fft / 2``,
    frame k centred at ``k hop``, the periodic Hann window, plain |X|; the ``1 + N // hop`` frames
    cut to ``N // hop`` as the original cuts its fbank to the target length."""

    def __post_init__(self) -> None:
        if self.framing not in ("hifigan", "tacotron"):
            raise ValueError(f"MelConfig: framing={self.framing!r}; choose 'hifigan' or 'tacotron'")

    @classmethod
    def from_name(cls, name: str) -> MelConfig:
        presets = {"msgld": cls(), "musicldm": cls()}
        if name not in presets:
            raise ValueError(f"MelConfig.from_name: unknown preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class MelFrontEnd(nn.Module):
    """Waveform (..., N) -> natural-log mel (..., T, n_mels) with ``T = N // hop_length`` (framing as
    :attr:`MelConfig.framing` says)."""

    filters: Tensor
    window: Tensor

    def __init__(self, config: MelConfig | None = None) -> None:
        super().__init__()
        self.config = config or MelConfig()
        cfg = self.config
        if cfg.win_length > cfg.n_fft or (cfg.n_fft - cfg.hop_length) % 2:
            raise ValueError(
                f"MelFrontEnd: need win_length <= n_fft and n_fft - hop_length even, got {cfg}; "
                "pick an even n_fft - hop_length"
            )
        filters = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
        self.register_buffer("filters", filters.float(), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        if self.config.framing == "tacotron":
            return num_samples // self.config.hop_length
        pad = (self.config.n_fft - self.config.hop_length) // 2
        return (num_samples + 2 * pad - self.config.n_fft) // self.config.hop_length + 1

    def magnitude(self, wave: Tensor) -> Tensor:
        """Linear STFT magnitude (..., n_fft // 2 + 1, T)."""
        cfg = self.config
        lead = wave.shape[:-1]
        tacotron = cfg.framing == "tacotron"
        pad = cfg.n_fft // 2 if tacotron else (cfg.n_fft - cfg.hop_length) // 2
        flat = wave.reshape(-1, 1, wave.shape[-1])
        if flat.shape[-1] <= pad:
            raise ValueError(
                f"MelFrontEnd: {flat.shape[-1]} samples is too short for reflect padding of {pad}; "
                f"pass at least {pad + 1} samples (zero-pad short clips first)"
            )
        flat = nn.functional.pad(flat, (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            flat,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            win_length=cfg.win_length,
            window=self.window.to(flat.dtype),
            center=False,
            return_complex=True,
        )
        if tacotron:
            # 1 + N // hop frames centred on multiples of hop; the last one is cut (target length).
            magnitude = spec.abs()[..., : wave.shape[-1] // cfg.hop_length]
            return magnitude.reshape(*lead, *magnitude.shape[-2:])
        # The small epsilon keeps the gradient of |X| finite at X = 0 (as HiFi-GAN's meldataset).
        magnitude = torch.sqrt(spec.real.square() + spec.imag.square() + 1e-9)
        return magnitude.reshape(*lead, *magnitude.shape[-2:])

    def forward(self, wave: Tensor) -> Tensor:
        mel = torch.matmul(self.filters.to(wave.dtype), self.magnitude(wave))
        return torch.log(torch.clamp(mel, min=self.config.log_clamp)).transpose(-1, -2)
