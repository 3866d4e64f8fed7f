"""Codec tasks: the waveform autoencoder (multi-scale spectral loss, Pasini et al.), the mel VAE
(L1 + KL, MSG-LD's AutoencoderKL) and the HiFi-GAN vocoder (mel L1 reconstruction, Kong et al.
2020 eq. 5 weight 45) on single stems, each stem of a segment being one training example.

The adversarial terms of the VAE and vocoder objectives need a second optimizer for the
discriminators; DeepSpeed drives one optimizer per engine, so this app trains the reconstruction
objectives only (see the README's deviations).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.data import Dataset

from stemforge.train.config import TrainConfig
from stemforge.train.datasets import audio_segments, has_split
from stemforge.train.tasks.base import package_versions


def _model_config(cls: Any, spec: Mapping[str, Any]) -> Any:
    spec = dict(spec)
    preset = spec.pop("preset", None)
    base = cls.from_name(preset).to_dict() if preset else {}
    return cls.from_dict({**base, **spec})


class CodecTask:
    def __init__(self, config: TrainConfig) -> None:
        from stemforge.codec import (
            AutoencoderKLConfig,
            HiFiGANConfig,
            MelConfig,
            WaveformAutoencoderConfig,
        )

        self.kind = config.task
        self.data = dict(config.data)
        self.stem_names = tuple(self.data.get("stems", ("bass", "drums", "guitar", "piano")))
        model = dict(config.model)
        if self.kind == "waveform_ae":
            self.model_config = _model_config(WaveformAutoencoderConfig, model)
            self.sample_rate = self.model_config.sample_rate
            self.multiple = self.model_config.hop_length
        else:
            mel_spec = dict(model.pop("mel", {}))
            self.mel_config = MelConfig.from_name(mel_spec.pop("preset", "msgld"))
            if mel_spec:
                self.mel_config = type(self.mel_config)(**{**self.mel_config.to_dict(), **mel_spec})
            cls = AutoencoderKLConfig if self.kind == "mel_vae" else HiFiGANConfig
            self.model_config = _model_config(cls, model)
            self.sample_rate = self.mel_config.sample_rate
            self.multiple = self.mel_config.hop_length * (
                self.model_config.compression if self.kind == "mel_vae" else 1
            )
        seconds = float(self.data.get("segment_seconds", 1.0))
        samples = round(seconds * self.sample_rate)
        self.segment_samples = max(self.multiple, samples - samples % self.multiple)
        self.kl_weight = float(self.data.get("kl_weight", 1e-6))
        self._mel: nn.Module | None = None

    def mel(self) -> nn.Module:
        if self._mel is None:
            from stemforge.codec import MelFrontEnd

            self._mel = MelFrontEnd(self.mel_config)
        return self._mel

    def build_model(self) -> nn.Module:
        from stemforge.codec import AutoencoderKL, HiFiGAN, WaveformAutoencoder

        cls: type[WaveformAutoencoder] | type[AutoencoderKL] | type[HiFiGAN] = {
            "waveform_ae": WaveformAutoencoder,
            "mel_vae": AutoencoderKL,
            "vocoder": HiFiGAN,
        }[self.kind]
        return cls.from_config(self.model_config)

    def train_dataset(self) -> Dataset:
        return audio_segments(self.data, "train", self.stem_names, self.sample_rate, self.segment_samples)

    def val_dataset(self) -> Dataset | None:
        if not has_split(self.data, "val"):
            return None
        return audio_segments(self.data, "val", self.stem_names, self.sample_rate, self.segment_samples)

    def collate(self, items: list[Tensor]) -> Tensor:
        # Each stem of each segment is one example: (B, S, N) -> (B * S, N).
        return rearrange(torch.stack(items), "b s n -> (b s) n")

    def loss(
        self, model: nn.Module, batch: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Mapping[str, float]]:
        from stemforge.codec import multi_scale_spectral_loss, vae_loss

        if self.kind == "waveform_ae":
            terms = multi_scale_spectral_loss(model(batch), batch)
            return terms["loss"], {k: float(v.detach()) for k, v in terms.items() if k != "loss"}
        mel = self.mel().to(batch.device)(batch)
        if self.kind == "mel_vae":
            reconstruction, posterior = model(mel)
            terms = vae_loss(reconstruction, mel, posterior, kl_weight=self.kl_weight)
            return terms["loss"], {"l1": float(terms["l1"].detach()), "kl": float(terms["kl"].detach())}
        wave = model(mel)
        n = min(wave.shape[-1], batch.shape[-1])
        l1 = (
            (self.mel().to(batch.device)(wave[..., :n]) - self.mel().to(batch.device)(batch[..., :n]))
            .abs()
            .mean()
        )
        return 45.0 * l1, {"mel_l1": float(l1.detach())}

    def export_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "task": self.kind,
            "model_class": {
                "waveform_ae": "stemforge.codec.WaveformAutoencoder",
                "mel_vae": "stemforge.codec.AutoencoderKL",
                "vocoder": "stemforge.codec.HiFiGAN",
            }[self.kind],
            "model_config": self.model_config.to_dict(),
            "stem_names": list(self.stem_names),
            "sample_rate": self.sample_rate,
            "packages": package_versions("stemforge-codec", "stemforge-data"),
        }
        if self.kind != "waveform_ae":
            meta["mel_config"] = self.mel_config.to_dict()
        return meta

    def on_validation(self, model: nn.Module, out_dir: Path, step: int) -> None:
        return None


def make_task(config: TrainConfig) -> CodecTask:
    return CodecTask(config)
