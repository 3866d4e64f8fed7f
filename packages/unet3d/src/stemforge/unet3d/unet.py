"""The MSG-LD 3D U-Net denoiser (Karchkhadze et al., "Simultaneous Music Separation and Generation
Using Multi-Track Latent Diffusion Models", sec. 3-4, fig. 1).

The latent-diffusion UNetModel (Rombach et al. 2022, openaimodel.py, as configured by MusicLDM)
with 3x3x3 convolutions over (C, T, F) and the S stems as channels: input convolution, per level
``num_res_blocks`` ResBlocks (each followed by self-attention at the ``attention_downsample``
factors) and a (T, F)-halving downsample, a middle ResBlock-attention-ResBlock, and a mirrored
decoder whose blocks take the skip concatenation. Mixture conditioning: the mixture latent,
average-pooled to each level (``mixture_pyramid``), is added before every encoder block and after
every decoder skip concatenation; dropped rows add zeros. At the ``msgld-slakh`` preset this has
305,165,444 parameters (305.2M), 686.5M at 192 channels.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from stemforge.unet3d.__about__ import __version__
from stemforge.unet3d.attention import CrossAttention3D, SelfAttention3D
from stemforge.unet3d.conditioning import ConditionEmbedder
from stemforge.unet3d.config import UNet3DConfig
from stemforge.unet3d.mixture import mixture_pyramid
from stemforge.unet3d.norm import make_norm
from stemforge.unet3d.resblock import Downsample3D, ResBlock3D, Upsample3D, zero_module

COND_KEYS = (
    "mix_latent",
    "drop",
    "text",
    "text_mask",
    "text_pooled",
    "style",
    "stem_mask",
    "drop_mix",
    "drop_text",
    "drop_style",
    "drop_stem_mask",
)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class _Block(nn.ModuleList):
    """A sequence of layers run with the embedding and text context they need."""

    def forward(
        self, h: torch.Tensor, emb: torch.Tensor, text: torch.Tensor | None, text_mask: torch.Tensor | None
    ) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock3D):
                h = layer(h, emb)
            elif isinstance(layer, CrossAttention3D):
                h = layer(h, text, text_mask)
            else:
                h = layer(h)
        return h


class UNet3D(nn.Module):
    """3D U-Net over (B, S, C, T, F) stem latents (or piano-roll planes); see :class:`UNet3DConfig`.

    ``forward(x, t, cond=None)``: x (B, in_channels, C, T, F), t (B,) timestep indices in
    [0, N-1], cond an optional dict of batch-first tensors: ``mix_latent`` (B, C, T, F); ``drop``
    (B,) bool, True rows use the null conditioning for every input; ``drop_mix`` / ``drop_text`` /
    ``drop_style`` / ``drop_stem_mask`` (B,) bool for one input only; ``text`` (B, L, D) with
    ``text_mask`` (B, L) bool and ``text_pooled`` (B, D); ``style`` (B, D_style); ``stem_mask``
    (B, S) bool, True = stem given. A missing key means that input is absent (null conditioning).
    Returns (B, out_channels, C, T, F) in the dtype of x.
    """

    def __init__(self, config: UNet3DConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        mc, emb_dim = cfg.model_channels, cfg.time_embed_dim
        self.embedder = ConditionEmbedder(cfg)

        def res(cin: int, cout: int) -> ResBlock3D:
            return ResBlock3D(
                cin, cout, emb_dim, dropout=cfg.dropout, norm=cfg.norm, norm_groups=cfg.norm_groups
            )

        def attn_layers(ch: int) -> list[nn.Module]:
            layers: list[nn.Module] = [
                SelfAttention3D(
                    ch,
                    cfg.head_channels,
                    mode=cfg.attention,
                    positional_bias=cfg.positional_bias,
                    time_window=cfg.time_window,
                    dpb_hidden=cfg.dpb_hidden,
                    backend=cfg.attention_backend,
                    norm=cfg.norm,
                    norm_groups=cfg.norm_groups,
                )
            ]
            if cfg.text_dim:
                layers.append(
                    CrossAttention3D(
                        ch,
                        cfg.text_dim,
                        cfg.head_channels,
                        backend=cfg.attention_backend,
                        norm=cfg.norm,
                        norm_groups=cfg.norm_groups,
                    )
                )
            return layers

        self.input_blocks = nn.ModuleList([_Block([nn.Conv3d(cfg.in_channels, mc, 3, padding=1)])])
        self.input_levels = [0]
        skip_channels = [mc]
        ch, ds = mc, 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * mc)]
                ch = mult * mc
                if ds in cfg.attention_downsample:
                    layers += attn_layers(ch)
                self.input_blocks.append(_Block(layers))
                self.input_levels.append(level)
                skip_channels.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(_Block([Downsample3D(ch)]))
                self.input_levels.append(level)
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = _Block([res(ch, ch), *attn_layers(ch), res(ch, ch)])
        self.output_blocks = nn.ModuleList()
        self.output_levels: list[int] = []
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mc * mult)]
                ch = mc * mult
                if ds in cfg.attention_downsample:
                    layers += attn_layers(ch)
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample3D(ch))
                    ds //= 2
                self.output_blocks.append(_Block(layers))
                self.output_levels.append(level)
        self.out = nn.Sequential(
            make_norm(cfg.norm, cfg.norm_groups, ch),
            nn.SiLU(),
            zero_module(nn.Conv3d(mc, cfg.out_channels, 3, padding=1)),
        )
        self.gradient_checkpointing = cfg.gradient_checkpointing

    @classmethod
    def from_config(cls, config: UNet3DConfig | dict[str, Any]) -> UNet3D:
        """Build from a config or its ``to_dict()`` JSON (a checkpoint's config.json)."""
        if isinstance(config, dict):
            config = UNet3DConfig.from_dict(config)
        return cls(config)

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        cond = {} if cond is None else cond
        self._check(x, t, cond)
        batch = x.shape[0]
        drops = self._drops(cond, batch, x.device)
        emb, text, text_mask = self.embedder(t, cond, drops)
        pyramid = self._pyramid(cond.get("mix_latent"), drops["mix"], x)
        run = (
            self._run_checkpointed
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled()
            else self._run
        )
        h = x.to(self._dtype())
        skips = []
        for block, level in zip(self.input_blocks, self.input_levels):
            if pyramid is not None:
                h = h + pyramid[level]
            h = run(block, h, emb, text, text_mask)
            skips.append(h)
        h = run(self.middle_block, h, emb, text, text_mask)
        for block, level in zip(self.output_blocks, self.output_levels):
            h = torch.cat([h, skips.pop()], dim=1)
            if pyramid is not None:
                h = h + pyramid[level]
            h = run(block, h, emb, text, text_mask)
        return self.out(h).to(x.dtype)

    @staticmethod
    def _run(
        block: nn.Module,
        h: torch.Tensor,
        emb: torch.Tensor,
        text: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        return block(h, emb, text, mask)

    @staticmethod
    def _run_checkpointed(
        block: nn.Module,
        h: torch.Tensor,
        emb: torch.Tensor,
        text: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        # Activation checkpointing per block: only block inputs are stored, the rest is recomputed.
        return checkpoint(block, h, emb, text, mask, use_reentrant=False)  # type: ignore[return-value]

    def _pyramid(
        self, mix_latent: torch.Tensor | None, drop_mix: torch.Tensor, x: torch.Tensor
    ) -> list[torch.Tensor] | None:
        if not self.config.mixture_conditioning or mix_latent is None:
            # An absent mixture is the unconditional branch: adding zeros is adding nothing.
            return None
        _, _, c, t, f = x.shape
        mix = torch.where(drop_mix[:, None, None, None], torch.zeros_like(mix_latent), mix_latent)
        sizes = [(c, t // 2**level, f // 2**level) for level in range(len(self.config.channel_mult))]
        dtype = self._dtype()
        return [level.unsqueeze(1).to(dtype) for level in mixture_pyramid(mix, sizes)]

    def _drops(
        self, cond: dict[str, torch.Tensor], batch: int, device: torch.device
    ) -> dict[str, torch.Tensor]:
        drop = cond.get("drop")
        if drop is None:
            drop = torch.zeros(batch, dtype=torch.bool, device=device)
        drops = {}
        for name in ("mix", "text", "style", "stem_mask"):
            extra = cond.get(f"drop_{name}")
            drops[name] = drop if extra is None else drop | extra
        return drops

    def _check(self, x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> None:
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"UNet3D ({cfg.name}): x has shape {tuple(x.shape)}; expected (B, {cfg.in_channels}, C, T, F) "
                f"with in_channels={cfg.in_channels} (stems {cfg.stems})"
            )
        batch, _, c, tt, f = x.shape
        factor = cfg.downsample_factor
        if tt % factor or f % factor:
            raise ValueError(
                f"UNet3D ({cfg.name}): T={tt} and F={f} must be divisible by {factor} (the U-Net halves them "
                f"{len(cfg.channel_mult) - 1} times); pad or crop the latent"
            )
        if t.shape != (batch,):
            raise ValueError(
                f"UNet3D: t has shape {tuple(t.shape)}; expected ({batch},), one timestep per row"
            )
        unknown = set(cond) - set(COND_KEYS)
        if unknown:
            raise ValueError(f"UNet3D: unknown cond keys {sorted(unknown)}; known keys are {list(COND_KEYS)}")
        enabled = {
            "mix_latent": ("mixture_conditioning", cfg.mixture_conditioning),
            "text": ("text_dim", cfg.text_dim),
            "text_pooled": ("text_dim", cfg.text_dim),
            "style": ("style_dim", cfg.style_dim),
            "stem_mask": ("stem_mask", cfg.stem_mask),
        }
        for key, (field_name, on) in enabled.items():
            if key in cond and not on:
                raise ValueError(
                    f"UNet3D ({cfg.name}): cond[{key!r}] given but the config has {field_name} off; enable it"
                )
        expected = {
            "mix_latent": (batch, c, tt, f),
            "text_pooled": (batch, cfg.text_dim),
            "style": (batch, cfg.style_dim),
            "stem_mask": (batch, cfg.num_stems),
        }
        for key in ("drop", "drop_mix", "drop_text", "drop_style", "drop_stem_mask"):
            expected[key] = (batch,)
        if "text" in cond:
            expected["text"] = (batch, cond["text"].shape[1], cfg.text_dim)
            expected["text_mask"] = (batch, cond["text"].shape[1])
        for key, shape in expected.items():
            if key in cond and tuple(cond[key].shape) != shape:
                raise ValueError(
                    f"UNet3D: cond[{key!r}] has shape {tuple(cond[key].shape)}; expected {shape}"
                )
        for key in (
            "drop",
            "drop_mix",
            "drop_text",
            "drop_style",
            "drop_stem_mask",
            "stem_mask",
            "text_mask",
        ):
            if key in cond and cond[key].dtype != torch.bool:
                raise ValueError(f"UNet3D: cond[{key!r}] must be a bool tensor, got {cond[key].dtype}")

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` and ``model.safetensors`` to ``directory`` (each via a temp file + rename)."""
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        meta = {
            "model": "UNet3D",
            "package_versions": {"stemforge-unet3d": __version__, "torch": torch.__version__},
            "config": self.config.to_dict(),
        }
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        _atomic_write(out / WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
        _atomic_write(out / CONFIG_FILE, lambda p: p.write_text(json.dumps(meta, indent=2)))
        return out

    @classmethod
    def load(cls, directory: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> UNet3D:
        """Rebuild from ``config.json`` alone and load ``model.safetensors``."""
        from safetensors.torch import load_file

        src = Path(directory)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (src / name).is_file():
                raise FileNotFoundError(
                    f"UNet3D.load: {src / name} is missing; save the model with UNet3D.save({str(src)!r})"
                )
        meta = json.loads((src / CONFIG_FILE).read_text())
        model = cls.from_config(meta["config"])
        model.load_state_dict(load_file(str(src / WEIGHTS_FILE), device=str(map_location)))
        return model


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
