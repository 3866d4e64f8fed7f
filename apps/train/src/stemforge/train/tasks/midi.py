"""The MIDI insertion model: absorbing-state (masked) discrete diffusion over SATB voice tokens with
the stemforge-unet3d backbone (``pianoroll-small``), given stems always visible.

Variables are the JSB chorales' voice tokens x (B, S, T) with K = 129 classes (MIDI pitch 0..127 or
rest), as Coconet (Huang et al. 2017). The network input is (B, 2S, 1, T, F): channel s holds the
one-hot of voice s where visible, channel S + s its visibility, over F = 132 bins (128 pitches, the
rest class, three padding bins so that F divides by the U-Net's downsampling factor; padding logits
are -inf). The timestep input is the hidden fraction scaled to [0, 999], the masking rate as
MaskGIT's (Chang et al. 2022) schedule position. Training minimises stemforge-samplers'
``masked_diffusion_loss`` (Uria et al. 2014 eq. 9-10: an unbiased estimate of the order-averaged
NLL in nats per variable); evaluation is the samplers' exact ``chain_rule_nll``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stemforge.train.config import TrainConfig
from stemforge.train.datasets import ChoraleCropDataset
from stemforge.train.tasks.base import package_versions

NUM_CLASSES = 129  # MIDI pitches 0..127 + rest (stemforge.midi.voices.NUM_CLASSES)


class VoiceInsertionModel(nn.Module):
    """``model(x, visible, cond) -> logits`` (B, S, T, 129) over a UNet3D, the samplers' discrete contract."""

    def __init__(self, unet_config: Any) -> None:
        from stemforge.unet3d import UNet3D

        super().__init__()
        s = len(unet_config.stems)
        if unet_config.in_channels != 2 * s or unet_config.out_channels != s:
            raise ValueError(
                f"VoiceInsertionModel needs in_channels = 2 x stems ({2 * s}) and out_channels = stems ({s}); "
                f"got {unet_config.in_channels} and {unet_config.out_channels}"
            )
        self.unet = UNet3D(unet_config)
        factor = unet_config.downsample_factor
        self.bins = -(-NUM_CLASSES // factor) * factor
        self.num_steps = 1000

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> VoiceInsertionModel:
        from stemforge.unet3d import UNet3DConfig

        return cls(UNet3DConfig.from_dict(dict(config)))

    def forward(self, x: Tensor, visible: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        b, s, t = x.shape
        onehot = F.one_hot(x.long().clamp(0, NUM_CLASSES - 1), self.bins).float() * visible.unsqueeze(-1)
        vis = visible.float().unsqueeze(-1).expand(b, s, t, self.bins)
        h = torch.cat([onehot, vis], 1).unsqueeze(2)  # (B, 2S, 1, T, F)
        hidden = 1.0 - visible.float().reshape(b, -1).mean(1)
        out = self.unet(h, hidden * (self.num_steps - 1), cond).squeeze(2)  # (B, S, T, F)
        return out[..., :NUM_CLASSES].float()


class MidiTask:
    def __init__(self, config: TrainConfig) -> None:
        from stemforge.unet3d import UNet3DConfig

        model = dict(config.model)
        self.data = dict(config.data)
        unet = dict(model.get("unet", {"preset": "pianoroll-small"}))
        preset = unet.pop("preset", None)
        base = UNet3DConfig.from_name(preset).to_dict() if preset else {}
        self.unet_config = UNet3DConfig.from_dict({**base, **unet})
        self.stem_names = tuple(self.unet_config.stems)
        self.length = int(self.data.get("length", 32))
        self.given_prob = float(model.get("given_stem_prob", 0.25))
        self.weighting = model.get("weighting", "nll")

    def build_model(self) -> nn.Module:
        return VoiceInsertionModel(self.unet_config)

    def train_dataset(self) -> ChoraleCropDataset:
        return ChoraleCropDataset("train", self.length, hop=int(self.data.get("train_hop", 4)))

    def val_dataset(self) -> ChoraleCropDataset:
        return ChoraleCropDataset("valid", self.length, hop=self.length)

    def collate(self, items: list[Tensor]) -> Tensor:
        return torch.stack(items)

    def loss(
        self, model: nn.Module, batch: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Mapping[str, float]]:
        from stemforge.samplers.masked_discrete import masked_diffusion_loss

        b, s, t = batch.shape
        # Insertion: each stem is given (always visible, never scored) with probability given_prob,
        # keeping at least one stem to generate.
        given_stem = torch.rand(b, s, generator=generator) < self.given_prob
        given_stem[given_stem.all(1), 0] = False
        given = given_stem.to(batch.device).unsqueeze(-1).expand(b, s, t)
        loss = masked_diffusion_loss(
            model, batch, kind="categorical", given=given, weighting=self.weighting, generator=generator
        )
        return loss, {}

    def export_meta(self) -> dict[str, Any]:
        return {
            "task": "midi",
            "model_class": "stemforge.train.tasks.midi.VoiceInsertionModel",
            "model_config": self.unet_config.to_dict(),
            "stem_names": list(self.stem_names),
            "steps_per_quarter": 4,
            "num_classes": NUM_CLASSES,
            "crop_length": self.length,
            "sample_rate": None,
            "packages": package_versions("stemforge-unet3d", "stemforge-samplers", "stemforge-midi"),
        }

    def on_validation(self, model: nn.Module, out_dir: Path, step: int) -> None:
        return None


def make_task(config: TrainConfig) -> MidiTask:
    return MidiTask(config)
