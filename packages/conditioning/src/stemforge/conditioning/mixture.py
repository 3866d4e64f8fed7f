"""Mixture conditioning of MSG-LD (Karchkhadze et al., sec. 3: the mixture latent, average-pooled to
every U-Net level, conditions the denoiser; 10% of training samples drop it), stem-mask
embeddings for arrangement / insertion, learned null embeddings, and the per-sample drop logic of
classifier-free guidance (Ho & Salimans 2022, sec. 3.2: train one network on conditional and
unconditional rows by replacing the condition with a null token with probability p_uncond).

The pyramid itself is ``stemforge.unet3d.mixture_pyramid`` (shared, not copied), so the conditioner
and the U-Net pool identically. Dropped rows get zeros for the mixture (MSG-LD's unconditional
branch adds zeros) and the learned null vectors for text, style and stem mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from stemforge.unet3d import mixture_pyramid

__all__ = ["MixtureConditioner", "MixtureConditionerConfig"]

DROPPABLE = ("mix", "text", "style", "stem_mask")


@dataclass(frozen=True)
class MixtureConditionerConfig:
    """Stem names, embedding sizes and the training drop probabilities of each input.

    ``p_drop_all`` drops every input of a row at once (the fully unconditional branch used by CFG);
    ``p_drop_<input>`` drop one input independently.
    """

    stem_names: tuple[str, ...] = ("bass", "drums", "guitar", "piano")
    embed_dim: int = 512
    text_dim: int = 384
    style_dim: int = 256
    p_drop_all: float = 0.0
    p_drop_mix: float = 0.1
    p_drop_text: float = 0.1
    p_drop_style: float = 0.1
    p_drop_stem_mask: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stem_names", tuple(self.stem_names))
        for name in ("p_drop_all", *(f"p_drop_{k}" for k in DROPPABLE)):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}={value} must lie in [0, 1]")
        if len(set(self.stem_names)) != len(self.stem_names) or not self.stem_names:
            raise ValueError(f"stem_names={self.stem_names} must be non-empty and unique")

    @classmethod
    def from_name(cls, name: str) -> MixtureConditionerConfig:
        """Presets: ``msgld`` (Slakh stems, mixture drop 10% as MSG-LD), ``chorale`` (SATB), ``tiny``."""
        presets = {
            "msgld": cls(p_drop_text=0.0, p_drop_style=0.0),
            "chorale": cls(stem_names=("soprano", "alto", "tenor", "bass")),
            "tiny": cls(embed_dim=16, text_dim=8, style_dim=8),
        }
        if name not in presets:
            raise ValueError(f"unknown mixture conditioner preset {name!r}; choose one of {sorted(presets)}")
        return presets[name]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stem_names"] = list(self.stem_names)
        return data


class MixtureConditioner(nn.Module):
    """Builds the U-Net's condition: mixture pyramid, stem-mask embedding, null embeddings, CFG drops."""

    def __init__(self, config: MixtureConditionerConfig) -> None:
        super().__init__()
        self.config = config
        num_stems = len(config.stem_names)
        # E[given, s]: one vector per (stem given or not, stem); a mask embeds as their sum.
        self.stem_mask_table = nn.Parameter(torch.randn(2, num_stems, config.embed_dim) * 0.02)
        self.null_stem_mask = nn.Parameter(torch.randn(config.embed_dim) * 0.02)
        self.null_text = nn.Parameter(torch.randn(1, config.text_dim) * 0.02)
        self.null_text_pooled = nn.Parameter(torch.randn(config.text_dim) * 0.02)
        self.null_style = nn.Parameter(torch.randn(config.style_dim) * 0.02)

    @classmethod
    def from_config(cls, config: MixtureConditionerConfig | dict[str, Any]) -> MixtureConditioner:
        return cls(
            config if isinstance(config, MixtureConditionerConfig) else MixtureConditionerConfig(**config)
        )

    @property
    def stem_names(self) -> tuple[str, ...]:
        return self.config.stem_names

    def sample_drops(self, batch: int, *, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Per-row drop decisions for one training batch: ``drop`` and ``drop_<input>`` (B,) bool tensors.

        Each input is dropped independently with its probability; ``drop`` (all inputs) with
        ``p_drop_all``. The U-Net reads these keys from the condition dictionary.
        """
        device = self.null_style.device

        def bernoulli(p: float) -> Tensor:
            return (
                torch.rand(batch, generator=generator, device=generator.device if generator else device) < p
            )

        drops = {"drop": bernoulli(self.config.p_drop_all)}
        for name in DROPPABLE:
            drops[f"drop_{name}"] = bernoulli(getattr(self.config, f"p_drop_{name}"))
        return {k: v.to(device) for k, v in drops.items()}

    def pyramid(
        self, mix_latent: Tensor, sizes: Sequence[tuple[int, int, int]], drop: Tensor | None = None
    ) -> list[Tensor]:
        """The mixture latent (B, C, T, F) pooled to each level size; rows with ``drop`` True are zeros."""
        levels = mixture_pyramid(mix_latent, sizes)
        if drop is None:
            return levels
        keep = (~drop).to(mix_latent.dtype).view(-1, 1, 1, 1)
        return [level * keep for level in levels]

    def stem_mask_embedding(self, stem_mask: Tensor, drop: Tensor | None = None) -> Tensor:
        """(B, S) bool "stem is given" -> (B, embed_dim): sum over stems of E[given_s, s]; null where dropped."""
        if (
            stem_mask.dim() != 2
            or stem_mask.shape[1] != len(self.stem_names)
            or stem_mask.dtype != torch.bool
        ):
            raise ValueError(
                f"stem_mask must be a (B, {len(self.stem_names)}) bool tensor in the stem order {self.stem_names}, "
                f"got {tuple(stem_mask.shape)} {stem_mask.dtype}"
            )
        onehot = torch.stack([~stem_mask, stem_mask], dim=1).to(self.stem_mask_table.dtype)  # (B, 2, S)
        emb = torch.einsum("bgs,gse->be", onehot, self.stem_mask_table)
        if drop is not None:
            emb = torch.where(drop.view(-1, 1), self.null_stem_mask.expand_as(emb), emb)
        return emb

    def null_condition(self, batch: int, text_length: int = 1) -> dict[str, Tensor]:
        """The learned nulls, batched: ``text`` (B, L, D) (null token then masked padding), ``text_mask``,
        ``text_pooled``, ``style`` and ``stem_mask_embedding``."""
        text = torch.zeros(
            batch, text_length, self.config.text_dim, dtype=self.null_text.dtype, device=self.null_text.device
        )
        text[:, :1] = self.null_text
        mask = torch.zeros(batch, text_length, dtype=torch.bool, device=self.null_text.device)
        mask[:, 0] = True
        return {
            "text": text,
            "text_mask": mask,
            "text_pooled": self.null_text_pooled.expand(batch, -1),
            "style": self.null_style.expand(batch, -1),
            "stem_mask_embedding": self.null_stem_mask.expand(batch, -1),
        }

    def apply_nulls(self, cond: dict[str, Tensor], drops: dict[str, Tensor]) -> dict[str, Tensor]:
        """Replace dropped rows by the nulls (zeros for ``mix_latent``), for models without their own nulls.

        A row is dropped for an input when ``drop`` or ``drop_<input>`` is True. Inputs absent from
        ``cond`` stay absent. Returns a new dictionary; ``cond`` is not modified.
        """
        batch = next(iter(cond.values())).shape[0]
        everything = drops.get("drop", torch.zeros(batch, dtype=torch.bool))

        def dropped(name: str) -> Tensor:
            own = drops.get(f"drop_{name}")
            mask = everything if own is None else everything | own
            return mask.to(next(iter(cond.values())).device)

        out = dict(cond)
        if "mix_latent" in cond:
            keep = (
                (~dropped("mix"))
                .to(cond["mix_latent"].dtype)
                .view(-1, *([1] * (cond["mix_latent"].dim() - 1)))
            )
            out["mix_latent"] = cond["mix_latent"] * keep
        if "text" in cond:
            rows = dropped("text")
            nulls = self.null_condition(batch, cond["text"].shape[1])
            out["text"] = torch.where(rows.view(-1, 1, 1), nulls["text"].to(cond["text"].dtype), cond["text"])
            if "text_mask" in cond:
                out["text_mask"] = torch.where(rows.view(-1, 1), nulls["text_mask"], cond["text_mask"])
            if "text_pooled" in cond:
                out["text_pooled"] = torch.where(rows.view(-1, 1), nulls["text_pooled"], cond["text_pooled"])
        if "style" in cond:
            out["style"] = torch.where(
                dropped("style").view(-1, 1), self.null_style.expand_as(cond["style"]), cond["style"]
            )
        if "stem_mask" in cond:
            out["stem_mask_embedding"] = self.stem_mask_embedding(cond["stem_mask"], dropped("stem_mask"))
        return out

    def build(
        self,
        mix_latent: Tensor | None = None,
        *,
        stem_mask: Tensor | None = None,
        text: dict[str, Tensor] | None = None,
        style: Tensor | None = None,
        drops: dict[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Assemble the condition dictionary of the U-Net contract (``mix_latent``, ``stem_mask``,
        ``text``/``text_mask``/``text_pooled``, ``style``, and the ``drop*`` keys). The U-Net applies
        its own nulls to dropped rows; absent inputs are left out."""
        cond: dict[str, Tensor] = {}
        if mix_latent is not None:
            if mix_latent.dim() not in (3, 4):
                raise ValueError(
                    f"mix_latent must be (B, C, T, F) or (B, C, T), got {tuple(mix_latent.shape)}; "
                    "encode the mixture with the codec (no stem axis)"
                )
            if not torch.isfinite(mix_latent).all():
                raise ValueError("mix_latent holds NaN or infinite values")
            cond["mix_latent"] = mix_latent
        if stem_mask is not None:
            cond["stem_mask"] = stem_mask
        if text is not None:
            cond.update(text)
        if style is not None:
            cond["style"] = style
        if drops is not None:
            cond.update(drops)
        return cond
