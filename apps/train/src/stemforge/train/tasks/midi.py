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

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stemforge.train.config import TrainConfig
from stemforge.train.datasets import ChoraleCropDataset
from stemforge.train.tasks.base import package_versions

NUM_CLASSES = 129  # MIDI pitches 0..127 + rest (stemforge.midi.voices.NUM_CLASSES)
REST = 128


@dataclass(frozen=True)
class VoiceModelConfig:
    """A :class:`VoiceInsertionModel`: its U-Net and its pitch support ``[pitch_low, pitch_high]``."""

    unet: Any  # stemforge.unet3d.UNet3DConfig (imported lazily)
    pitch_low: int = 0
    pitch_high: int = 127

    def __post_init__(self) -> None:
        if not 0 <= self.pitch_low <= self.pitch_high <= 127:
            raise ValueError(
                f"VoiceModelConfig: pitch range [{self.pitch_low}, {self.pitch_high}] is not inside MIDI "
                "0..127 with low <= high; e.g. pitch_low=36, pitch_high=81 for the JSB chorales"
            )
        s = len(self.unet.stems)
        if self.unet.in_channels != 2 * s or self.unet.out_channels != s:
            raise ValueError(
                f"VoiceInsertionModel needs in_channels = 2 x stems ({2 * s}) and out_channels = stems ({s}); "
                f"got {self.unet.in_channels} and {self.unet.out_channels}"
            )

    @property
    def num_pitches(self) -> int:
        return self.pitch_high - self.pitch_low + 1

    @property
    def bins(self) -> int:
        """F: pitches of the range, the rest, padded to a multiple of the U-Net's downsampling."""
        factor = self.unet.downsample_factor
        return -(-(self.num_pitches + 1) // factor) * factor

    @property
    def text_dim(self) -> int:
        return int(self.unet.text_dim)

    def to_dict(self) -> dict[str, Any]:
        return {"unet": self.unet.to_dict(), "pitch_low": self.pitch_low, "pitch_high": self.pitch_high}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VoiceModelConfig:
        """The JSON of ``to_dict``; a flat U-Net config (version 0.1.0 exports) means the full range."""
        from stemforge.unet3d import UNet3DConfig

        data = dict(data)
        if "unet" not in data:
            return cls(UNet3DConfig.from_dict(data))
        unknown = set(data) - {"unet", "pitch_low", "pitch_high"}
        if unknown:
            raise ValueError(
                f"VoiceModelConfig: unknown keys {sorted(unknown)}; known: unet, pitch_low, pitch_high"
            )
        unet = data.pop("unet")
        return cls(UNet3DConfig.from_dict(dict(unet)), **data)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> VoiceModelConfig:
        """``jsb-small``: the shipped JSB model (MIDI 36..81); ``jsb-small-text`` adds the instruction."""
        from stemforge.unet3d import UNet3DConfig

        presets = {"jsb-small": 0, "jsb-small-text": 384}
        if name not in presets:
            raise ValueError(f"VoiceModelConfig: no preset {name!r}; presets are {sorted(presets)}")
        unet = UNet3DConfig.from_name("pianoroll-jsb", text_dim=presets[name])
        return dataclasses.replace(cls(unet, pitch_low=36, pitch_high=81), **overrides)


class _PlanarConv3d(nn.Conv3d):
    """A Conv3d that runs as the equivalent Conv2d when its input has a single C plane.

    With C = 1, zero padding 1 and stride 1 along C, only the middle slice of a 3x3x3 kernel ever
    meets data (the other two meet padding), so ``conv2d(x[:, :, 0], weight[:, :, 1])`` is the same
    function with the same gradients (zero for the outer slices in both). On CPU the 2D kernels
    are several times faster than oneDNN's 3D backward at these widths. Parameters keep their 3D
    shapes, so the weights are those of a plain UNet3D.
    """

    def forward(self, x: Tensor) -> Tensor:
        depth = self.kernel_size[0]
        planar = x.shape[2] == 1 and self.stride[0] == 1 and self.padding[0] == depth // 2
        if not planar or self.padding_mode != "zeros":
            return super().forward(x)
        weight = self.weight[:, :, depth // 2]
        out = F.conv2d(
            x.squeeze(2), weight, self.bias, self.stride[1:], self.padding[1:], self.dilation[1:], self.groups
        )
        return out.unsqueeze(2)


class VoiceInsertionModel(nn.Module):
    """``model(x, visible, cond) -> logits`` (B, S, T, 129) over a UNet3D, the samplers' discrete contract.

    ``cond``: None, or the U-Net's text keys (``text_pooled`` (B, D), optionally ``text`` /
    ``text_mask`` / ``drop_text``) when the model has ``text_dim``.
    """

    token_bin: Tensor
    support: Tensor

    def __init__(self, config: Any) -> None:
        from stemforge.unet3d import UNet3D, UNet3DConfig

        super().__init__()
        if isinstance(config, UNet3DConfig):
            config = VoiceModelConfig(config)
        self.config = config
        self.unet = UNet3D(config.unet)
        for module in self.unet.modules():
            if type(module) is nn.Conv3d:
                module.__class__ = _PlanarConv3d
        self.bins = config.bins
        self.num_steps = 1000
        low, high = config.pitch_low, config.pitch_high
        # token -> input bin: pitches of the range, the rest; outside pitches folded by octaves.
        pitch = torch.arange(128)
        folded = pitch.clone()
        while bool(((folded < low) & (folded + 12 <= high)).any()) or bool(
            ((folded > high) & (folded - 12 >= low)).any()
        ):
            folded = torch.where((folded < low) & (folded + 12 <= high), folded + 12, folded)
            folded = torch.where((folded > high) & (folded - 12 >= low), folded - 12, folded)
        token_bin = torch.cat([folded.clamp(low, high) - low, torch.tensor([high - low + 1])])
        self.register_buffer("token_bin", token_bin, persistent=False)
        # output bin -> class: range pitches then rest; the other classes get -inf.
        self.register_buffer(
            "support", torch.cat([torch.arange(low, high + 1), torch.tensor([REST])]), persistent=False
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> VoiceInsertionModel:
        return cls(VoiceModelConfig.from_dict(config))

    def forward(self, x: Tensor, visible: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        b, s, t = x.shape
        bins = self.token_bin[x.long().clamp(0, NUM_CLASSES - 1)]
        onehot = F.one_hot(bins, self.bins).float() * visible.unsqueeze(-1)
        vis = visible.float().unsqueeze(-1).expand(b, s, t, self.bins)
        h = torch.cat([onehot, vis], 1).unsqueeze(2)  # (B, 2S, 1, T, F)
        hidden = 1.0 - visible.float().reshape(b, -1).mean(1)
        if cond is not None and not self.config.text_dim:
            cond = None  # no text inputs: the instruction is absent
        out = self.unet(h, hidden * (self.num_steps - 1), cond).squeeze(2).float()  # (B, S, T, F)
        logits = out.new_full((b, s, t, NUM_CLASSES), float("-inf"))
        return logits.index_copy(-1, self.support, out[..., : self.support.numel()])


def text_cond(pooled: Tensor, drop: Tensor | None = None) -> dict[str, Tensor]:
    """U-Net text inputs from pooled instruction vectors (B, D): FiLM and a one-token cross-attention."""
    cond = {
        "text_pooled": pooled,
        "text": pooled[:, None],
        "text_mask": torch.ones(pooled.shape[0], 1, dtype=torch.bool, device=pooled.device),
    }
    if drop is not None:
        cond["drop_text"] = drop
    return cond


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

        model = dict(config.model)
        self.data = dict(config.data)
        unet = dict(model.get("unet", {"preset": "pianoroll-small"}))
        preset = unet.pop("preset", None)
        base = UNet3DConfig.from_name(preset).to_dict() if preset else {}
        pitch_range = model.get("pitch_range", [0, 127])
        self.model_config = VoiceModelConfig(
            UNet3DConfig.from_dict({**base, **unet}),
            pitch_low=int(pitch_range[0]),
            pitch_high=int(pitch_range[1]),
        )
        self.stem_names = tuple(self.model_config.unet.stems)
        self.length = int(self.data.get("length", 32))
        self.given_prob = float(model.get("given_stem_prob", 0.25))
        self.weighting = model.get("weighting", "nll")
        self.transpose = int(self.data.get("transpose", 0))
        self.instruction_dropout = float(model.get("instruction_dropout", 0.3))
        self._instructions: Any = None

    def build_model(self) -> nn.Module:
        return VoiceInsertionModel(self.model_config)

    def train_dataset(self) -> ChoraleCropDataset:
        return ChoraleCropDataset("train", self.length, hop=int(self.data.get("train_hop", 4)))

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
