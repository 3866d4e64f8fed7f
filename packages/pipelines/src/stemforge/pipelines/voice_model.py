"""The MIDI insertion network: ``VoiceInsertionModel(x, visible, cond) -> logits`` over stemforge-unet3d,
the discrete contract of stemforge-samplers' masked (absorbing-state) diffusion (Austin et al. 2021
section 3.2; the orderless model of Uria et al. 2014 / Coconet, Huang et al. 2017), and its config.

Voices are categorical tokens (B, S, T): MIDI pitches 0..127 and the rest (128). The network sees the
visible tokens one-hot over its pitch support (plus a visibility plane) and predicts every voice's
token at every step; logits outside the support are -inf, so the chain-rule NLL stays exact.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stemforge.midi import NUM_CLASSES, REST  # MIDI pitches 0..127 + the rest token


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
