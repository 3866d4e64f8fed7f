"""Typed ``model`` and ``data`` sections of each training task.

``TrainConfig`` keeps the two sections as the mappings read from YAML (what checkpoints record);
``task_options`` turns them into the frozen dataclasses below, per ``task``, the one place where
they are read. A misspelt or foreign key is a ``ConfigError`` naming the key and the accepted ones,
raised when the config is loaded, before any model or data is built. The keys that belong to a
network's own config (a codec's channels, a U-Net's ``unet`` mapping) are checked against that
config class by the task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from stemforge.midi import DEFAULT_STEMS
from stemforge.train.config import ConfigError, TaskKind, build_section

LDMMode = Literal["msgld", "arrangement", "accompaniment", "subtractive"]
ValCondition = Literal["full", "train", "null_text", "null_style", "null"]


# ---------------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class AudioData:
    """Where multi-stem audio segments come from: a Slakh-format folder or lists of track folders.

    ``slakh_root``: a Slakh2100-format folder (real or rendered), read by stemforge-data's
    ``SlakhDataset`` with ``group_by``; otherwise ``train_tracks`` / ``val_tracks``: folders of
    ``<stem>.flac`` files, cut into segments every ``hop_fraction`` of a segment.
    """

    stems: tuple[str, ...] = DEFAULT_STEMS
    slakh_root: str | None = None
    train_tracks: tuple[str, ...] = ()
    val_tracks: tuple[str, ...] = ()
    group_by: Literal["inst_class", "stem_name"] = "inst_class"
    segment_seconds: float = 1.0
    hop_fraction: float = 1.0

    def __post_init__(self) -> None:
        if not self.stems or len(set(self.stems)) != len(self.stems):
            raise ConfigError(f"data.stems must list distinct stem names, got {list(self.stems)}")
        if self.segment_seconds <= 0:
            raise ConfigError(f"data.segment_seconds must be > 0, got {self.segment_seconds}")
        if not 0.0 <= self.hop_fraction <= 1.0:
            raise ConfigError(
                f"data.hop_fraction must lie in [0, 1] (0: non-overlapping), got {self.hop_fraction}"
            )

    def tracks(self, split: str) -> tuple[str, ...]:
        return {"train": self.train_tracks, "val": self.val_tracks}.get(split, ())

    def has_split(self, split: str) -> bool:
        return bool(self.slakh_root) or bool(self.tracks(split))


@dataclass(frozen=True)
class CodecData(AudioData):
    """``data`` of the codec tasks: 1 s segments; ``kl_weight`` (mel VAE) and ``tone_fraction``
    (waveform autoencoder: the share of each batch replaced by synthetic tones)."""

    kl_weight: float = 1e-6
    tone_fraction: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.tone_fraction < 1.0:
            raise ConfigError(f"data.tone_fraction must be in [0, 1), got {self.tone_fraction!r}")


@dataclass(frozen=True)
class LDMData(AudioData):
    """``data`` of the LDM task: 10.24 s segments, latents from ``latent_cache`` (``stemforge-train
    cache``) or encoded on the fly by the exported ``codec``; ``instruction_seed`` seeds the
    instruction writer (subtractive), ``reference_seed`` the style references, ``val_latent_frames``
    the length of the validation samples; ``cache_batch`` / ``shard_items`` are the cache writer's."""

    segment_seconds: float = 10.24
    codec: str | None = None
    latent_cache: str | None = None
    instruction_seed: int = 0
    reference_seed: int = 0
    val_latent_frames: int = 32
    cache_batch: int = 4
    shard_items: int = 256


@dataclass(frozen=True)
class MidiData:
    """``data`` of the MIDI task: JSB chorale crops of ``length`` sixteenths, a training crop every
    ``train_hop`` steps, random transposition by up to ``transpose`` semitones."""

    length: int = 32
    train_hop: int = 4
    transpose: int = 0

    def __post_init__(self) -> None:
        if self.length <= 0 or self.train_hop <= 0 or self.transpose < 0:
            raise ConfigError(
                f"data.length and data.train_hop must be > 0 and data.transpose >= 0, got "
                f"{self.length}, {self.train_hop}, {self.transpose}"
            )


# --------------------------------------------------------------------------------------------- model
@dataclass(frozen=True)
class DiscriminatorOptions:
    """HiFi-GAN's multi-period (``periods``) and multi-scale (``msd``) discriminators at ``channels``
    times their width, with their own AdamW parameter group."""

    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    channels: float = 1.0
    msd: bool = True
    lr: float | None = None
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None


@dataclass(frozen=True)
class CodecModel:
    """The training keys of a codec task's ``model`` section; every other key (and ``preset``) is the
    codec's own config (``WaveformAutoencoderConfig``, ``AutoencoderKLConfig``, ``HiFiGANConfig``)."""

    preset: str | None = None
    freeze_encoder: bool = False
    mel_weight: float = 0.0
    latent_noise: float = 0.0
    latent_smoothness: float = 0.0
    latent_denoiser: str | None = None
    latent_denoiser_max_step: int = 100
    adversarial: bool = False
    adversarial_start_step: int = 0
    adversarial_weight: float = 1.0
    discriminator: DiscriminatorOptions = field(default_factory=DiscriminatorOptions)
    mel: Mapping[str, Any] = field(default_factory=dict)
    network: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mel_weight < 0:
            raise ConfigError(f"model.mel_weight must be a number >= 0, got {self.mel_weight!r}")
        if not 0 <= self.latent_noise <= 1:
            raise ConfigError(f"model.latent_noise must be a number in [0, 1], got {self.latent_noise!r}")
        if self.latent_smoothness < 0:
            raise ConfigError(
                f"model.latent_smoothness must be a number >= 0, got {self.latent_smoothness!r}"
            )
        if self.latent_denoiser_max_step < 0:
            raise ConfigError(
                f"model.latent_denoiser_max_step must be a timestep >= 0, got {self.latent_denoiser_max_step!r}"
            )


@dataclass(frozen=True)
class TextEncoderOptions:
    """stemforge-conditioning's MiniLM ``TextEncoder`` (subtractive mode): tokens per instruction,
    encoding batch, sentence cache, and a local model folder instead of the embedded one."""

    max_length: int = 256
    batch_size: int = 64
    cache_size: int = 8192
    model_dir: str | None = None


@dataclass(frozen=True)
class LDMModel:
    """The LDM task's ``model`` section (see ``stemforge.train.tasks.ldm``)."""

    mode: LDMMode = "msgld"
    unet: Mapping[str, Any] = field(default_factory=lambda: {"preset": "msgld-slakh"})
    schedule: str | Mapping[str, Any] = "msgld"
    prediction: Literal["epsilon", "v", "x0"] = "epsilon"
    cond_drop_prob: float = 0.1
    text_drop_prob: float = 0.1
    style_drop_prob: float = 0.1
    val_condition: ValCondition = "full"
    val_samples: int = 0
    val_sampling_steps: int = 20
    target_stem: str | None = None
    insert_stems: tuple[str, ...] | None = None
    text_encoder: TextEncoderOptions | None = None
    style_encoder: Mapping[str, Any] | None = None
    """stemforge-conditioning's ``StyleEncoderConfig`` keys (accompaniment mode), checked by the task."""

    def __post_init__(self) -> None:
        for key in ("cond_drop_prob", "text_drop_prob", "style_drop_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"model.{key} = {getattr(self, key)}; give a probability in [0, 1]")
        if self.val_samples < 0 or self.val_sampling_steps <= 0:
            raise ConfigError("model.val_samples must be >= 0 and model.val_sampling_steps > 0")


@dataclass(frozen=True)
class MidiModel:
    """The MIDI task's ``model`` section: the piano-roll U-Net, its pitch range, the share of stems
    given during training, the loss weighting and the instruction dropout."""

    unet: Mapping[str, Any] = field(default_factory=lambda: {"preset": "pianoroll-small"})
    pitch_range: tuple[int, int] = (0, 127)
    given_stem_prob: float = 0.25
    weighting: Literal["nll", "mean"] = "nll"
    instruction_dropout: float = 0.3

    def __post_init__(self) -> None:
        low, high = self.pitch_range
        if not 0 <= low <= high <= 127:
            raise ConfigError(
                f"model.pitch_range must be [low, high] within 0..127, got {list(self.pitch_range)}"
            )
        for key in ("given_stem_prob", "instruction_dropout"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"model.{key} = {getattr(self, key)}; give a probability in [0, 1]")


@dataclass(frozen=True)
class TaskOptions:
    model: Any
    data: Any


_CODEC_TASKS = ("mel_vae", "vocoder", "waveform_ae")


def task_options(
    task: TaskKind, model: Mapping[str, Any], data: Mapping[str, Any], source: str
) -> TaskOptions:
    """The typed ``model`` and ``data`` sections of ``task`` (``source`` names the file in errors)."""
    if task in _CODEC_TASKS:
        known = {f.name for f in dataclasses.fields(CodecModel)} - {"network"}
        training = {k: v for k, v in model.items() if k in known}
        network = {k: v for k, v in model.items() if k not in known}
        options = dataclasses.replace(build_section(CodecModel, training, source, "model."), network=network)
        network_config(codec_config_class(task), options, source)
        return TaskOptions(options, build_section(CodecData, data, source, "data."))
    if task == "ldm":
        return TaskOptions(
            build_section(LDMModel, model, source, "model."), build_section(LDMData, data, source, "data.")
        )
    if task == "midi":
        return TaskOptions(
            build_section(MidiModel, model, source, "model."), build_section(MidiData, data, source, "data.")
        )
    raise ConfigError(
        f"{source}: task {task!r} has no options; choose one of {[*_CODEC_TASKS, 'ldm', 'midi']}"
    )


def codec_config_class(task: str) -> Any:
    """The stemforge-codec config class that a codec task's network keys belong to."""
    from stemforge.codec import AutoencoderKLConfig, HiFiGANConfig, WaveformAutoencoderConfig

    return {
        "waveform_ae": WaveformAutoencoderConfig,
        "mel_vae": AutoencoderKLConfig,
        "vocoder": HiFiGANConfig,
    }[task]


def network_config(cls: Any, options: CodecModel, source: str = "model") -> Any:
    """A codec config of class ``cls`` from ``options.preset`` and the section's network keys; an
    unknown key is a ``ConfigError`` naming it and the accepted ones."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options.network) - fields)
    if unknown:
        training = sorted({f.name for f in dataclasses.fields(CodecModel)} - {"network"})
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join('model.' + k for k in unknown)}; valid keys here are the "
            f"{cls.__name__} fields {sorted(fields)} and the training keys {training}"
        )
    try:
        base = cls.from_name(options.preset).to_dict() if options.preset else {}
        return cls.from_dict({**base, **options.network})
    except (TypeError, ValueError, KeyError) as err:
        raise ConfigError(f"{source}: model: {err}") from err
