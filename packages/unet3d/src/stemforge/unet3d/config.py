"""Configuration of the 3D U-Net: a frozen dataclass with the paper presets.

The reference preset ``msgld-slakh`` is the MSG-LD denoiser (Karchkhadze et al., sec. 4: MusicLDM's
latent-diffusion U-Net adapted to 3D, channels 128/256/384/640, a simple attention layer instead of
the spatial transformer, 305M parameters).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from stemforge.unet3d.__about__ import __version__

AttentionMode = Literal["full", "time"]
PositionalBias = Literal["none", "dpb"]
NormKind = Literal["group", "group_framewise"]
AttentionBackend = Literal["auto", "reference", "sdpa", "triton"]

DEFAULT_STEMS = ("bass", "drums", "guitar", "piano")
CHORALE_STEMS = ("soprano", "alto", "tenor", "bass")


@dataclass(frozen=True)
class UNet3DConfig:
    """Everything needed to rebuild a :class:`~stemforge.unet3d.UNet3D` (``to_dict`` is its JSON).

    Input x is (B, in_channels, C, T, F): stems as convolution channels, the latent channels C,
    time T and frequency (or pitch) F as the three spatial axes. Downsampling halves T and F and
    never C, so T and F must be divisible by 2 ** (len(channel_mult) - 1).
    """

    name: str = "custom"
    stems: tuple[str, ...] = DEFAULT_STEMS
    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 3, 5)
    num_res_blocks: int = 2
    # Downsampling factors (1 = full resolution) whose blocks are followed by self-attention; the
    # middle block always has one.
    attention_downsample: tuple[int, ...] = (2, 4, 8)
    head_channels: int = 32
    # "full": one sequence of C x T x F tokens (MSG-LD); "time": a sequence along T for every
    # (C, F) position, the length-general variant of Pasini et al.
    attention: AttentionMode = "full"
    positional_bias: PositionalBias = "none"
    # Radius (in tokens at each attention level) of local time attention; 0 = global.
    time_window: int = 0
    dpb_hidden: int = 64
    # "group_framewise" takes GroupNorm statistics per time frame, so nothing depends on the clip
    # length (needed for exact translation equivariance and 10 s -> 60 s generalisation).
    norm: NormKind = "group"
    norm_groups: int = 32
    time_embed_mult: int = 4
    dropout: float = 0.0
    mixture_conditioning: bool = True
    text_dim: int = 0
    style_dim: int = 0
    stem_mask: bool = False
    gradient_checkpointing: bool = False
    attention_backend: AttentionBackend = "auto"

    def __post_init__(self) -> None:
        if not self.stems:
            raise ValueError(
                "UNet3DConfig.stems is empty; name the stems, e.g. ('bass', 'drums', 'guitar', 'piano')"
            )
        for name in ("in_channels", "out_channels", "model_channels", "num_res_blocks", "head_channels"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"UNet3DConfig.{name} = {getattr(self, name)}; it must be a positive integer"
                )
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"UNet3DConfig.channel_mult = {self.channel_mult}; give positive multipliers")
        for mult in self.channel_mult:
            width = mult * self.model_channels
            if width % self.norm_groups:
                raise ValueError(
                    f"UNet3DConfig: level width {width} is not divisible by norm_groups={self.norm_groups}; "
                    "change model_channels or norm_groups"
                )
        for ds in self.attention_downsample:
            width = self.model_channels * self.channel_mult[self._level_of(ds)]
            if width % self.head_channels:
                raise ValueError(
                    f"UNet3DConfig: attention at downsampling {ds} has {width} channels, not divisible by "
                    f"head_channels={self.head_channels}"
                )
        if self.positional_bias == "dpb" and self.attention != "time":
            raise ValueError(
                "UNet3DConfig: positional_bias='dpb' needs attention='time' (bias over time offsets)"
            )
        if self.time_window and self.attention != "time":
            raise ValueError("UNet3DConfig: time_window needs attention='time'")
        for name in ("attention", "positional_bias", "norm", "attention_backend"):
            allowed = _LITERALS[name]
            if getattr(self, name) not in allowed:
                raise ValueError(f"UNet3DConfig.{name} = {getattr(self, name)!r}; choose one of {allowed}")

    def _level_of(self, ds: int) -> int:
        levels = {2**i: i for i in range(len(self.channel_mult))}
        if ds not in levels:
            raise ValueError(
                f"UNet3DConfig.attention_downsample has {ds}; with {len(self.channel_mult)} levels the "
                f"downsampling factors are {sorted(levels)}"
            )
        return levels[ds]

    @property
    def num_stems(self) -> int:
        return len(self.stems)

    @property
    def time_embed_dim(self) -> int:
        return self.model_channels * self.time_embed_mult

    @property
    def downsample_factor(self) -> int:
        """T and F must be divisible by this."""
        return 2 ** (len(self.channel_mult) - 1)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stems"] = list(self.stems)
        data["channel_mult"] = list(self.channel_mult)
        data["attention_downsample"] = list(self.attention_downsample)
        data["version"] = __version__
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNet3DConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known - {"version"}
        if unknown:
            raise ValueError(
                f"UNet3DConfig: unknown keys {sorted(unknown)} in the config; known keys are {sorted(known)}"
            )
        kwargs = {k: v for k, v in data.items() if k in known}
        for key in ("stems", "channel_mult", "attention_downsample"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> UNet3DConfig:
        if name not in PRESETS:
            raise ValueError(f"UNet3DConfig: no preset {name!r}; presets are {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)


_LITERALS: dict[str, tuple[str, ...]] = {
    "attention": ("full", "time"),
    "positional_bias": ("none", "dpb"),
    "norm": ("group", "group_framewise"),
    "attention_backend": ("auto", "reference", "sdpa", "triton"),
}

PRESETS: dict[str, UNet3DConfig] = {
    # MSG-LD: latent (4, 8, 256, 16), attention over 8192 / 2048 / 512 tokens, 305.2M parameters.
    "msgld-slakh": UNet3DConfig(name="msgld-slakh"),
    "msgld-slakh-192": UNet3DConfig(name="msgld-slakh-192", model_channels=192),
    # Length-general variant (Pasini et al.): time attention with Dynamic Positional Bias and
    # frame-wise normalisation, trained on 10 s, run on any length.
    "msgld-slakh-dpb": UNet3DConfig(
        name="msgld-slakh-dpb", attention="time", positional_bias="dpb", norm="group_framewise"
    ),
    # CPU tests: < 1 s per forward on a (1, 4, 8, 32, 16) latent.
    "tiny": UNet3DConfig(
        name="tiny",
        model_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_downsample=(2,),
        head_channels=16,
        norm_groups=8,
    ),
    "tiny-dpb": UNet3DConfig(
        name="tiny-dpb",
        model_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_downsample=(2,),
        head_channels=16,
        norm_groups=8,
        attention="time",
        positional_bias="dpb",
        time_window=4,
        norm="group_framewise",
        dpb_hidden=16,
    ),
    # Symbolic model: x is (B, 2 S, 2, T, 128): per stem the token-state planes (onset, sustain)
    # and, in channels S..2S-1, the "still masked" indicators; out: S Bernoulli logits per plane,
    # step and pitch. Time attention with DPB keeps it length-general.
    "pianoroll-small": UNet3DConfig(
        name="pianoroll-small",
        stems=CHORALE_STEMS,
        in_channels=8,
        out_channels=4,
        model_channels=32,
        channel_mult=(1, 2, 4),
        norm_groups=8,
        num_res_blocks=1,
        attention_downsample=(2, 4),
        head_channels=32,
        attention="time",
        positional_bias="dpb",
        norm="group_framewise",
        mixture_conditioning=False,
        dpb_hidden=32,
    ),
    # JSB insertion model on CPU: (B, 8, 1, 32, 48) one-hot voice rolls over MIDI 36..81 + rest
    # (padded to 48 bins); 16/32/64 channels and full attention only at the 8 x 12 token level,
    # so a training step stays cheap on two cores (2.1M parameters with a 384-d text input).
    "pianoroll-jsb": UNet3DConfig(
        name="pianoroll-jsb",
        stems=CHORALE_STEMS,
        in_channels=8,
        out_channels=4,
        model_channels=16,
        channel_mult=(1, 2, 4),
        num_res_blocks=1,
        attention_downsample=(4,),
        head_channels=32,
        norm_groups=8,
        mixture_conditioning=False,
    ),
}
