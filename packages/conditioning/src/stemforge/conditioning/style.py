"""Style / timbre reference encoder (Pasini, Grachten & Lattner 2024, "Bass Accompaniment Generation
via Latent Diffusion": a reference stem conditions the timbre of the generated one).

From a reference stem's latent (any codec: (B, C, T, F) mel-VAE latents or (B, C, T) waveform
latents) it computes

- the per-channel statistics over time that style grounding uses (mean and unbiased standard
  deviation over the time axis for every channel / frequency index, exactly the statistics of
  ``stemforge.samplers.StyleGrounding``, as adaptive instance normalisation, Huang & Belongie
  2017, eq. 8);
- a style vector: a small MLP of those statistics, [mean, log std] flattened, so it is
  invariant to the length and to the order of the reference frames, and a learned model can map
  it to the U-Net's ``style`` input.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

__all__ = ["StyleEncoder", "StyleEncoderConfig", "StyleStatistics", "style_statistics"]


@dataclass(frozen=True)
class StyleStatistics:
    """Mean and standard deviation over time, keeping the time axis as size 1 (broadcastable)."""

    mean: Tensor
    std: Tensor


def style_statistics(latent: Tensor, *, time_dim: int = -2) -> StyleStatistics:
    """Per-channel mean and unbiased std over ``time_dim`` (-2 for (.., T, F) mel latents, -1 for (.., T))."""
    if latent.shape[time_dim] < 2:
        raise ValueError(
            f"the reference latent has {latent.shape[time_dim]} frame(s) on axis {time_dim}; its statistics need at least 2"
        )
    if not torch.isfinite(latent).all():
        raise ValueError("the reference latent holds NaN or infinite values")
    x = latent.float()
    return StyleStatistics(x.mean(dim=time_dim, keepdim=True), x.std(dim=time_dim, keepdim=True))


@dataclass(frozen=True)
class StyleEncoderConfig:
    """``latent_channels`` C and ``freq_bins`` F of the codec's latent (None for (B, C, T) waveform latents)."""

    latent_channels: int = 8
    freq_bins: int | None = 16
    style_dim: int = 256
    hidden_dim: int = 256
    activation: Literal["silu", "gelu"] = "silu"
    eps: float = 1e-5

    @classmethod
    def from_name(cls, name: str) -> StyleEncoderConfig:
        """Presets: ``msgld`` (mel VAE latent 8 x T x 16), ``waveform`` (64-channel waveform latent), ``tiny``."""
        presets = {
            "msgld": cls(latent_channels=8, freq_bins=16),
            "waveform": cls(latent_channels=64, freq_bins=None),
            "tiny": cls(latent_channels=2, freq_bins=4, style_dim=16, hidden_dim=16),
        }
        if name not in presets:
            raise ValueError(f"unknown style encoder preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StyleEncoder(nn.Module):
    """Reference latent (B, C, T[, F]) -> style vector (B, style_dim) and grounding statistics."""

    def __init__(self, config: StyleEncoderConfig) -> None:
        super().__init__()
        self.config = config
        features = 2 * config.latent_channels * (config.freq_bins or 1)
        act = nn.SiLU if config.activation == "silu" else nn.GELU
        self.mlp = nn.Sequential(
            nn.LayerNorm(features),
            nn.Linear(features, config.hidden_dim),
            act(),
            nn.Linear(config.hidden_dim, config.style_dim),
        )

    @classmethod
    def from_config(cls, config: StyleEncoderConfig | dict[str, Any]) -> StyleEncoder:
        return cls(config if isinstance(config, StyleEncoderConfig) else StyleEncoderConfig(**config))

    @property
    def time_dim(self) -> int:
        return -2 if self.config.freq_bins is not None else -1

    def _check(self, latent: Tensor) -> None:
        cfg = self.config
        expected = (
            (cfg.latent_channels, cfg.freq_bins) if cfg.freq_bins is not None else (cfg.latent_channels,)
        )
        got = (latent.shape[1], latent.shape[-1]) if cfg.freq_bins is not None else (latent.shape[1],)
        rank = 4 if cfg.freq_bins is not None else 3
        if latent.dim() != rank or got != expected:
            layout = "(B, C, T, F)" if cfg.freq_bins is not None else "(B, C, T)"
            raise ValueError(
                f"reference latent of shape {tuple(latent.shape)} does not fit this encoder: expected {layout} with "
                f"C={cfg.latent_channels}"
                + (f", F={cfg.freq_bins}" if cfg.freq_bins is not None else "")
                + "; encode the reference stem with the same codec as the model"
            )

    def statistics(self, latent: Tensor) -> StyleStatistics:
        """The style-grounding statistics of the reference latent (see :func:`style_statistics`)."""
        self._check(latent)
        return style_statistics(latent, time_dim=self.time_dim)

    def forward(self, latent: Tensor) -> Tensor:
        stats = self.statistics(latent)
        features = torch.cat(
            [stats.mean.flatten(1), torch.log(stats.std + self.config.eps).flatten(1)], dim=1
        )
        return self.mlp(features.to(next(self.mlp.parameters()).dtype))

    def save(self, directory: str | os.PathLike[str]) -> None:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (atomically, file by file)."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tmp_weights = out / "model.safetensors.tmp"
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp_weights))
        tmp_config = out / "config.json.tmp"
        tmp_config.write_text(json.dumps({"name": "style_encoder", **self.config.to_dict()}, indent=2) + "\n")
        tmp_weights.replace(out / "model.safetensors")
        tmp_config.replace(out / "config.json")

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> StyleEncoder:
        """Rebuild from ``config.json`` and load ``model.safetensors`` written by :meth:`save`."""
        from safetensors.torch import load_file

        path = Path(directory)
        if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
            raise FileNotFoundError(
                f"{path}: expected config.json and model.safetensors written by StyleEncoder.save"
            )
        config = json.loads((path / "config.json").read_text())
        config.pop("name", None)
        model = cls.from_config(config)
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        return model
