"""The MIDI insertion model: absorbing-state (masked) discrete diffusion over SATB voice tokens with
the stemforge-unet3d backbone, given stems always visible, optionally conditioned on a text
instruction that describes the voice to insert.

Variables are the JSB chorales' voice tokens x (B, S, T) with K = 129 classes (MIDI pitch 0..127 or
rest), as Coconet (Huang et al. 2017). The model's support is a pitch range ``[pitch_low,
pitch_high]`` plus the rest (Coconet uses MIDI 36..81, the JSB range): logits outside it are -inf,
so the chain-rule NLL stays exact over the support. The network input is (B, 2S, 1, T, F): channel s
holds the one-hot of voice s where visible, channel S + s its visibility, over F bins (the range's
pitches, the rest, and padding bins so that F divides by the U-Net's downsampling factor; padding
logits are -inf). A visible pitch outside the range (a user's MIDI file) is folded into it by octaves
for the input only. The timestep input is the hidden fraction scaled to [0, 999], the masking rate as
MaskGIT's (Chang et al. 2022) schedule position.

Training minimises stemforge-samplers' ``masked_diffusion_loss`` (Uria et al. 2014 eq. 9-10: an
unbiased estimate of the order-averaged NLL in nats per variable) on crops transposed by a random
number of semitones within the range (Coconet section 6); evaluation is the samplers' exact
``chain_rule_nll``. With ``text_dim`` set, an instruction derived from one generated voice of the
crop (``midi_instructions``) is encoded by stemforge-conditioning's MiniLM and enters the U-Net
through its pooled-text FiLM and a one-token cross-attention; it is dropped with probability
``instruction_dropout`` so the model also runs without one (the unconditional model scored by NLL).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from stemforge.pipelines.voice_model import (
    NUM_CLASSES,
    REST,
    VoiceInsertionModel,
    VoiceModelConfig,
    text_cond,
)
from stemforge.train.config import ConfigError, TrainConfig
from stemforge.train.datasets import ChoraleCropDataset
from stemforge.train.options import MidiData, MidiModel
from stemforge.train.tasks.base import package_versions


def transpose_within(
    batch: Tensor, low: int, high: int, max_shift: int, generator: torch.Generator
) -> Tensor:
    """Every row shifted by a uniform number of semitones in [-max_shift, max_shift], clipped to the
    shifts that keep its pitches inside [low, high] (Coconet's pitch augmentation)."""
    if max_shift <= 0:
        return batch
    b = batch.shape[0]
    pitched = batch != REST
    big = torch.full_like(batch, 10_000)
    row_min = torch.where(pitched, batch, big).reshape(b, -1).min(1).values
    row_max = torch.where(pitched, batch, -big).reshape(b, -1).max(1).values
    down = torch.clamp(low - row_min, min=-max_shift, max=0)  # most negative allowed shift
    up = torch.clamp(high - row_max, min=0, max=max_shift)
    down = torch.where(pitched.reshape(b, -1).any(1), down, torch.zeros_like(down))
    up = torch.where(pitched.reshape(b, -1).any(1), up, torch.zeros_like(up))
    u = torch.rand(b, generator=generator).to(batch.device)
    shift = down + (u * (up - down + 1).float()).floor().long().clamp(max=(up - down))
    shape = (b,) + (1,) * (batch.ndim - 1)
    return torch.where(pitched, batch + shift.reshape(shape), batch)


class MidiTask:
    def __init__(self, config: TrainConfig) -> None:
        from stemforge.unet3d import UNet3DConfig

        options = config.options()
        model: MidiModel = options.model
        self.data: MidiData = options.data
        unet = dict(model.unet)
        preset = unet.pop("preset", None)
        try:
            base = UNet3DConfig.from_name(preset).to_dict() if preset else {}
            unet_config = UNet3DConfig.from_dict({**base, **unet})
        except (TypeError, ValueError) as err:
            raise ConfigError(f"model.unet: {err}") from err
        self.model_config = VoiceModelConfig(
            unet_config, pitch_low=model.pitch_range[0], pitch_high=model.pitch_range[1]
        )
        self.stem_names = tuple(self.model_config.unet.stems)
        self.length = self.data.length
        self.given_prob = model.given_stem_prob
        self.weighting = model.weighting
        self.transpose = self.data.transpose
        self.instruction_dropout = model.instruction_dropout
        self._instructions: Any = None

    def build_model(self) -> nn.Module:
        return VoiceInsertionModel(self.model_config)

    def train_dataset(self) -> ChoraleCropDataset:
        return ChoraleCropDataset("train", self.length, hop=self.data.train_hop)

    def val_dataset(self) -> ChoraleCropDataset:
        return ChoraleCropDataset("valid", self.length, hop=self.length)

    def collate(self, items: list[Tensor]) -> Tensor:
        return torch.stack(items)

    def instruction_table(self) -> Any:
        """The encoded instruction of every descriptor combination (built once, on first use)."""
        if self._instructions is None:
            from stemforge.train.tasks.midi_instructions import InstructionTable

            self._instructions = InstructionTable.build(self.stem_names)
        return self._instructions

    def loss(
        self, model: nn.Module, batch: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Mapping[str, float]]:
        from stemforge.samplers.masked_discrete import masked_diffusion_loss

        cfg = self.model_config
        batch = transpose_within(batch, cfg.pitch_low, cfg.pitch_high, self.transpose, generator)
        b, s, t = batch.shape
        # Insertion: each stem is given (always visible, never scored) with probability given_prob,
        # keeping at least one stem to generate.
        given_stem = torch.rand(b, s, generator=generator) < self.given_prob
        given_stem[given_stem.all(1), 0] = False
        cond = None
        if cfg.text_dim:
            # The instruction describes one generated stem per row (chosen uniformly among them).
            scores = torch.rand(b, s, generator=generator).masked_fill(given_stem, -1.0)
            target = scores.argmax(1)
            drop = torch.rand(b, generator=generator) < self.instruction_dropout
            pooled = self.instruction_table().pooled_for(batch.cpu(), target).to(batch.device)
            cond = text_cond(pooled, drop.to(batch.device))
        given = given_stem.to(batch.device).unsqueeze(-1).expand(b, s, t)
        loss = masked_diffusion_loss(
            model,
            batch,
            kind="categorical",
            given=given,
            cond=cond,
            weighting=self.weighting,
            generator=generator,
        )
        return loss, {}

    def export_meta(self) -> dict[str, Any]:
        return {
            "task": "midi",
            "model_class": "stemforge.train.tasks.midi.VoiceInsertionModel",
            "model_config": self.model_config.to_dict(),
            "stem_names": list(self.stem_names),
            "steps_per_quarter": 4,
            "num_classes": NUM_CLASSES,
            "crop_length": self.length,
            "sample_rate": None,
            "packages": package_versions(
                "stemforge-unet3d", "stemforge-samplers", "stemforge-midi", "stemforge-conditioning"
            ),
        }

    def on_validation(self, model: nn.Module, out_dir: Path, step: int) -> None:
        return None


def make_task(config: TrainConfig) -> MidiTask:
    return MidiTask(config)
