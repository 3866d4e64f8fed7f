"""The interface every stemforge codec satisfies (in the spirit of audiocraft's CompressionModel).

``encode(wave)`` maps stems (B, S, N) float32 at ``sample_rate`` to latents already multiplied by
``scale_factor`` ((B, S, C, T, F) or (B, S, C, T)); ``decode(latent)`` divides by it and returns
(B, S, T * hop_length). Each stem is coded separately (MSG-LD, Sec. III). Input is validated
(rank, sample rate, finiteness, length) before any work, and audio longer than ``chunk_frames``
latent frames is coded chunk by chunk with overlap and crossfade (:mod:`stemforge.codec.chunked`).
Checkpoints are a directory with ``model.safetensors`` and ``config.json``
(:mod:`stemforge.codec.checkpoint`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from torch import Tensor, nn

from stemforge.codec.chunked import overlap_add

__all__ = ["Codec"]


class Codec(nn.Module, ABC):
    """Base class: subclasses implement ``_encode``/``_decode`` on (B', N) <-> (B', C, T[, F])."""

    #: registry name written into ``config.json`` (``"mel_vae"``, ``"waveform_autoencoder"``)
    kind: ClassVar[str]
    #: default chunking, in latent frames, for long audio
    default_chunk_frames: ClassVar[int] = 256
    default_overlap_frames: ClassVar[int] = 16
    default_context_frames: ClassVar[int] = 16

    scale_factor: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale_factor", torch.ones(()))

    # --- what a subclass provides -------------------------------------------------------------
    @property
    @abstractmethod
    def sample_rate(self) -> int: ...

    @property
    @abstractmethod
    def hop_length(self) -> int:
        """Waveform samples per latent frame."""

    @property
    @abstractmethod
    def latent_channels(self) -> int: ...

    @property
    def latent_freq(self) -> int | None:
        """Size of the latent frequency axis F, or None for 1-D (C, T) latents."""
        return None

    @abstractmethod
    def _encode(self, wave: Tensor) -> Tensor:
        """(B', k * hop) -> unscaled latent (B', C, k[, F])."""

    @abstractmethod
    def _decode(self, latent: Tensor) -> Tensor:
        """Unscaled latent (B', C, k[, F]) -> (B', k * hop)."""

    @abstractmethod
    def config_dict(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments; ``from_config(config_dict())`` rebuilds the model."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: dict[str, Any]) -> Self: ...

    # --- the interface ------------------------------------------------------------------------
    @property
    def latent_rate(self) -> float:
        """Latent frames per second."""
        return self.sample_rate / self.hop_length

    def latent_shape(self, num_samples: int) -> tuple[int, ...]:
        """Per-stem latent shape for ``num_samples`` samples: (C, T, F) or (C, T)."""
        if num_samples <= 0:
            raise ValueError(
                f"{type(self).__name__}.latent_shape: num_samples must be positive, got {num_samples}"
            )
        frames = math.ceil(num_samples / self.hop_length)
        freq = self.latent_freq
        return (self.latent_channels, frames) if freq is None else (self.latent_channels, frames, freq)

    def _check_wave(self, wave: Tensor, sample_rate: int | None) -> Tensor:
        name = type(self).__name__
        if not isinstance(wave, Tensor) or wave.ndim != 3:
            shape = tuple(wave.shape) if isinstance(wave, Tensor) else type(wave).__name__
            raise ValueError(f"{name}.encode: expected stems (B, S, N), got {shape}; add the batch/stem axes")
        if not wave.is_floating_point():
            raise ValueError(
                f"{name}.encode: expected float samples in [-1, 1], got {wave.dtype}; convert to float32"
            )
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise ValueError(
                f"{name}.encode: audio is at {sample_rate} Hz but the codec expects {self.sample_rate} Hz; "
                f"resample it first (stemforge.data.resample(wave, {sample_rate}, {self.sample_rate}))"
            )
        if wave.shape[-1] == 0:
            raise ValueError(
                f"{name}.encode: zero-length audio {tuple(wave.shape)}; pass at least one sample"
            )
        if not torch.isfinite(wave).all():
            bad = int((~torch.isfinite(wave)).sum())
            raise ValueError(f"{name}.encode: {bad} non-finite samples (NaN or inf); clean the audio first")
        return wave

    def encode(
        self,
        wave: Tensor,
        *,
        sample_rate: int | None = None,
        chunk_frames: int | None = None,
        overlap_frames: int | None = None,
    ) -> Tensor:
        """Stems (B, S, N) -> scaled latents (B, S, *latent_shape(N)).

        ``sample_rate``: the rate of ``wave``, checked when given (resample with stemforge-data first).
        Audio is zero-padded at the end to a whole number of latent frames.
        """
        wave = self._check_wave(wave, sample_rate)
        b, s, n = wave.shape
        frames = math.ceil(n / self.hop_length)
        flat = torch.nn.functional.pad(wave.reshape(b * s, n).float(), (0, frames * self.hop_length - n))
        flat = flat.to(self.scale_factor.device)

        def encode_frames_last(piece: Tensor) -> Tensor:
            return self._encode(piece).movedim(2, -1)

        latent = overlap_add(
            encode_frames_last,
            flat,
            frames,
            self.hop_length,
            1,
            chunk_frames or self.default_chunk_frames,
            self.default_overlap_frames if overlap_frames is None else overlap_frames,
            self.default_context_frames,
        ).movedim(-1, 2)
        return (latent * self.scale_factor).reshape(b, s, *latent.shape[1:])

    def decode(
        self, latent: Tensor, *, chunk_frames: int | None = None, overlap_frames: int | None = None
    ) -> Tensor:
        """Scaled latents (B, S, C, T[, F]) -> stems (B, S, T * hop_length)."""
        name = type(self).__name__
        freq = self.latent_freq
        per_stem = 3 if freq is not None else 2
        expected = f"(B, S, {self.latent_channels}, T" + (f", {freq})" if freq is not None else ")")
        if (
            not isinstance(latent, Tensor)
            or latent.ndim != 2 + per_stem
            or latent.shape[2] != self.latent_channels
            or (freq is not None and latent.shape[-1] != freq)
            or latent.shape[3] == 0
        ):
            shape = tuple(latent.shape) if isinstance(latent, Tensor) else type(latent).__name__
            raise ValueError(f"{name}.decode: expected latents {expected}, got {shape}")
        if not torch.isfinite(latent).all():
            raise ValueError(f"{name}.decode: the latent holds NaN or inf values; check the sampler output")
        b, s = latent.shape[:2]
        frames = latent.shape[3]
        flat = latent.reshape(b * s, *latent.shape[2:]).float().to(self.scale_factor.device)
        flat = (flat / self.scale_factor).movedim(2, -1)

        def decode_frames_last(piece: Tensor) -> Tensor:
            return self._decode(piece.movedim(-1, 2))

        wave = overlap_add(
            decode_frames_last,
            flat,
            frames,
            1,
            self.hop_length,
            chunk_frames or self.default_chunk_frames,
            self.default_overlap_frames if overlap_frames is None else overlap_frames,
            self.default_context_frames,
        )
        return wave.reshape(b, s, -1)

    # --- checkpoints --------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` + ``config.json`` atomically into ``directory``."""
        from stemforge.codec.checkpoint import save_codec

        return save_codec(self, directory)

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        from stemforge.codec.checkpoint import load_codec

        codec = load_codec(directory)
        if not isinstance(codec, cls):
            raise ValueError(
                f"{cls.__name__}.load: {directory} holds a {type(codec).__name__}; use load_codec()"
            )
        return codec
