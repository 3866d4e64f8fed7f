"""The multi-track latent diffusion model (MSG-LD, Karchkhadze et al.) and its conditional modes.

- ``msgld``: all stems jointly, x0 = stem latents (B, S, C, T, F), conditioned on the mixture latent
  with 10% condition dropout for classifier-free guidance (MSG-LD sec. 3; DDPM loss eq. 1 = Ho et al.
  2020 eq. 14, epsilon prediction, "linear" (sqrt-linear) betas 0.0015 -> 0.0195 over 1000 steps).
- ``arrangement`` (Subtractive Training's given-stems setting, Villa-Renteria et al.): a random
  non-empty strict subset of stems is given (``stem_mask``), given stems enter clean and the loss
  covers the missing stems only.
- ``accompaniment`` (Pasini et al.): one target stem generated from the latent of the mix of the
  others (needs the codec at training time to encode that partial mix).

Latents come from a latent cache (``stemforge-train cache``) or are encoded on the fly by a frozen,
exported codec (``data.codec``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from stemforge.train.cache import LatentCacheDataset
from stemforge.train.config import TrainConfig
from stemforge.train.datasets import audio_segments, has_split
from stemforge.train.tasks.base import package_versions

Mode = Literal["msgld", "arrangement", "accompaniment"]
_MODES = ("msgld", "arrangement", "accompaniment")


class LDMTask:
    def __init__(self, config: TrainConfig) -> None:
        from stemforge.samplers.schedules import NoiseSchedule, ScheduleConfig
        from stemforge.unet3d import UNet3DConfig

        model = dict(config.model)
        self.data = dict(config.data)
        self.mode: Mode = model.get("mode", "msgld")
        if self.mode not in _MODES:
            raise ValueError(f"model.mode = {self.mode!r}; choose one of {_MODES}")
        self.stem_names = tuple(self.data.get("stems", ("bass", "drums", "guitar", "piano")))
        unet = dict(model.get("unet", {"preset": "msgld-slakh"}))
        preset = unet.pop("preset", None)
        if self.mode == "accompaniment":
            self.target = model.get("target_stem")
            if self.target not in self.stem_names:
                raise ValueError(
                    f"model.target_stem = {self.target!r} must be one of data.stems {list(self.stem_names)}"
                )
            unet.update(stems=[self.target], in_channels=1, out_channels=1)
        else:
            unet.setdefault("stems", list(self.stem_names))
            unet.setdefault("in_channels", len(self.stem_names))
            unet.setdefault("out_channels", len(self.stem_names))
            if self.mode == "arrangement":
                unet.setdefault("stem_mask", True)
        if tuple(unet["stems"]) != (self.stem_names if self.mode != "accompaniment" else (self.target,)):
            raise ValueError(
                f"model.unet.stems {unet['stems']} differ from data.stems {list(self.stem_names)}"
            )
        base = UNet3DConfig.from_name(preset).to_dict() if preset else {}
        self.unet_config = UNet3DConfig.from_dict({**base, **unet, "name": base.get("name", "custom")})
        schedule = model.get("schedule", "msgld")
        self.schedule_config = (
            ScheduleConfig.from_name(schedule) if isinstance(schedule, str) else ScheduleConfig(**schedule)
        )
        self.schedule = NoiseSchedule(self.schedule_config)
        self.prediction = model.get("prediction", "epsilon")
        self.cond_drop_prob = float(model.get("cond_drop_prob", 0.1))
        self.val_samples = int(model.get("val_samples", 0))
        self.val_sampling_steps = int(model.get("val_sampling_steps", 20))
        self._codec: Any = None
        self.sample_rate: int | None = None
        if self.data.get("codec"):
            self.sample_rate = int(self.codec().sample_rate)
        elif self.mode == "accompaniment":
            raise ValueError(
                "model.mode = accompaniment needs data.codec (the partial mix is encoded on the fly)"
            )
        elif not self.data.get("latent_cache"):
            raise ValueError("the LDM needs data.latent_cache (from `stemforge-train cache`) or data.codec")

    def codec(self) -> Any:
        if self._codec is None:
            from stemforge.codec import load_codec

            self._codec = load_codec(self.data["codec"]).eval().requires_grad_(False)
        return self._codec

    def build_model(self) -> nn.Module:
        from stemforge.unet3d import UNet3D

        return UNet3D(self.unet_config)

    def _dataset(self, split: str) -> Dataset:
        if self.data.get("latent_cache"):
            folder = Path(self.data["latent_cache"]) / split
            return LatentCacheDataset(folder, self.stem_names)
        seconds = float(self.data.get("segment_seconds", 10.24))
        codec = self.codec()
        samples = round(seconds * codec.sample_rate)
        return audio_segments(self.data, split, self.stem_names, codec.sample_rate, samples)

    def train_dataset(self) -> Dataset:
        return self._dataset("train")

    def val_dataset(self) -> Dataset | None:
        if self.data.get("latent_cache"):
            return self._dataset("val") if (Path(self.data["latent_cache"]) / "val").is_dir() else None
        return self._dataset("val") if has_split(self.data, "val") else None

    def collate(self, items: list[Any]) -> dict[str, Tensor]:
        if isinstance(items[0], Mapping):
            return {k: torch.stack([it[k] for it in items]) for k in items[0]}
        return {"waves": torch.stack(items)}

    @torch.no_grad()
    def _latents(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(x0, mix_latent) for the mode: (B, S, C, T, F) and (B, C, T, F)."""
        if "waves" not in batch:
            return batch["stems"], batch["mix"]
        waves = batch["waves"]
        codec = self.codec().to(waves.device)
        if self.mode == "accompaniment":
            s = self.stem_names.index(self.target)
            target = codec.encode(waves[:, s : s + 1])
            others = torch.cat([waves[:, :s], waves[:, s + 1 :]], 1).sum(1, keepdim=True)
            return target, codec.encode(others)[:, 0]
        stems = codec.encode(waves)
        mix = codec.encode(waves.sum(1, keepdim=True))[:, 0]
        return stems, mix

    def loss(
        self, model: nn.Module, batch: dict[str, Tensor], generator: torch.Generator
    ) -> tuple[Tensor, Mapping[str, float]]:
        from stemforge.samplers.objectives import ddpm_loss, expand_like, prediction_from

        x0, mix = self._latents(batch)
        x0 = x0.to(torch.float32)
        cond = {"mix_latent": mix.to(torch.float32)}
        if self.mode != "arrangement":
            return ddpm_loss(
                model,
                x0,
                self.schedule,
                cond=cond,
                prediction=self.prediction,
                cond_drop_prob=self.cond_drop_prob,
                generator=generator,
            ), {}
        b, s = x0.shape[:2]
        device = x0.device
        # A random non-empty strict subset of stems is given: at least one stem is to be generated.
        given = torch.rand(b, s, generator=generator) < 0.5
        all_given = given.all(1)
        pick = torch.randint(0, s, (b,), generator=generator)
        given[all_given, pick[all_given]] = False
        given = given.to(device)
        t = torch.randint(0, self.schedule.num_steps, (b,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(device)
        drop = (torch.rand(b, generator=generator) < self.cond_drop_prob).to(device)
        alpha = expand_like(self.schedule.alpha(t).to(device, torch.float32), x0)
        sigma = expand_like(self.schedule.sigma(t).to(device, torch.float32), x0)
        x_t = alpha * x0 + sigma * noise
        keep = given.view(b, s, *([1] * (x0.ndim - 2)))
        x_t = torch.where(keep, x0, x_t)
        target = prediction_from(x0, noise, alpha, sigma, self.prediction)
        out = model(x_t, t.to(device).float(), {**cond, "stem_mask": given, "drop": drop})
        missing = (~keep).float()
        per_stem = x0[0, 0].numel()
        loss = (((out.float() - target) ** 2) * missing).sum() / (missing.sum() * per_stem)
        return loss, {"given_fraction": float(given.float().mean())}

    def export_meta(self) -> dict[str, Any]:
        return {
            "task": "ldm",
            "mode": self.mode,
            "model_class": "stemforge.unet3d.UNet3D",
            "model_config": self.unet_config.to_dict(),
            "schedule": self.schedule_config.to_dict(),
            "prediction": self.prediction,
            "stem_names": list(self.unet_config.stems),
            "sample_rate": self.sample_rate,
            "codec": str(self.data.get("codec")) if self.data.get("codec") else None,
            "packages": package_versions("stemforge-unet3d", "stemforge-samplers", "stemforge-codec"),
        }

    @torch.no_grad()
    def on_validation(self, model: nn.Module, out_dir: Path, step: int) -> None:
        """Decode ``model.val_samples`` unconditional samples (DDIM) to audio files, when a codec is set."""
        if self.val_samples <= 0 or not self.data.get("codec") or self.mode != "msgld":
            return
        from stemforge.data import write_audio
        from stemforge.samplers.ddim import ddim_sample

        codec = self.codec()
        frames = int(self.data.get("val_latent_frames", 32))
        shape = codec.latent_shape(frames * codec.hop_length * 4)
        device = next(model.parameters()).device
        gen = torch.Generator().manual_seed(step)
        x_T = torch.randn(self.val_samples, len(self.stem_names), *shape, generator=gen).to(device)
        was_training = model.training
        model.eval()
        zeros = torch.zeros(self.val_samples, *shape, device=device)
        cond = {"mix_latent": zeros, "drop": torch.ones(self.val_samples, dtype=torch.bool, device=device)}
        latents = ddim_sample(
            model, x_T, self.schedule, num_steps=self.val_sampling_steps, cond=cond, generator=gen
        )
        model.train(was_training)
        waves = codec.to(device).decode(latents).cpu()
        folder = out_dir / f"step-{step:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(waves.shape[0]):
            for s, name in enumerate(self.stem_names):
                write_audio(folder / f"sample{i}_{name}.wav", waves[i, s].clamp(-1, 1), codec.sample_rate)
            write_audio(folder / f"sample{i}_mix.wav", waves[i].sum(0).clamp(-1, 1), codec.sample_rate)


def make_task(config: TrainConfig) -> LDMTask:
    return LDMTask(config)
