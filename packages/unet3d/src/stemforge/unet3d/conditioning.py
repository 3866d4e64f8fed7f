"""Global conditioning of the 3D U-Net: timestep, text (FiLM), style and given-stems embeddings,
each with a learned null for classifier-free guidance (Ho & Salimans 2022).

emb = MLP(sinusoid(t)) + W_style * style + sum_s E[given_s, s]; then FiLM by the pooled text
(Perez et al. 2018): emb <- emb * (1 + gamma) + beta with (gamma, beta) = Linear(text_pooled),
zero-initialised so an untrained text path leaves emb unchanged. A row whose input is absent or
dropped uses the null instead (a learned vector for style, pooled text and stem mask; a single
learned null token for the text sequence, consumed by cross-attention).
"""

from __future__ import annotations

import torch
from torch import nn

from stemforge.unet3d.config import UNet3DConfig
from stemforge.unet3d.resblock import zero_module
from stemforge.unet3d.timestep import timestep_embedding


def _select(drop: torch.Tensor, null: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Rows with drop=True take ``null`` (broadcast), others ``value``; no data-dependent branches."""
    shape = (drop.shape[0],) + (1,) * (value.ndim - 1)
    return torch.where(drop.view(shape), null.to(value.dtype).expand_as(value), value)


class ConditionEmbedder(nn.Module):
    def __init__(self, config: UNet3DConfig) -> None:
        super().__init__()
        mc, emb = config.model_channels, config.time_embed_dim
        self.model_channels = mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.text_dim = config.text_dim
        if config.text_dim:
            self.null_text = nn.Parameter(torch.randn(1, config.text_dim) * 0.02)
            self.null_text_pooled = nn.Parameter(torch.randn(config.text_dim) * 0.02)
            self.text_film = zero_module(nn.Linear(config.text_dim, 2 * emb))
        self.style_dim = config.style_dim
        if config.style_dim:
            self.style_proj = nn.Linear(config.style_dim, emb)
            self.null_style = nn.Parameter(torch.randn(config.style_dim) * 0.02)
        self.use_stem_mask = config.stem_mask
        if config.stem_mask:
            self.stem_mask_embed = nn.Parameter(torch.randn(2, config.num_stems, emb) * 0.02)
            self.null_stem_mask = nn.Parameter(torch.randn(emb) * 0.02)

    def forward(
        self, t: torch.Tensor, cond: dict[str, torch.Tensor], drops: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Returns the (B, E) embedding and, with text enabled, (B, L, D) text tokens and (B, L) mask."""
        batch = t.shape[0]
        weight_dtype = next(self.time_embed.parameters()).dtype
        emb = self.time_embed(timestep_embedding(t, self.model_channels).to(weight_dtype))
        if self.style_dim:
            style = cond.get("style")
            if style is None:
                style = self.null_style.expand(batch, -1)
            style = _select(drops["style"], self.null_style, style.to(emb.dtype))
            emb = emb + self.style_proj(style)
        if self.use_stem_mask:
            stem_mask = cond.get("stem_mask")
            if stem_mask is None:
                stem_emb = self.null_stem_mask.expand(batch, -1)
            else:
                onehot = torch.stack([~stem_mask, stem_mask], dim=1).to(emb.dtype)  # (B, 2, S)
                stem_emb = torch.einsum("bgs,gse->be", onehot, self.stem_mask_embed.to(emb.dtype))
            emb = emb + _select(drops["stem_mask"], self.null_stem_mask, stem_emb)
        if not self.text_dim:
            return emb, None, None
        text, mask, pooled = cond.get("text"), cond.get("text_mask"), cond.get("text_pooled")
        if pooled is None:
            pooled = self.null_text_pooled.expand(batch, -1)
        pooled = _select(drops["text"], self.null_text_pooled, pooled.to(emb.dtype))
        gamma, beta = self.text_film(pooled).chunk(2, dim=-1)
        emb = emb * (1 + gamma) + beta
        if text is None:
            text = self.null_text.expand(batch, 1, -1)
            mask = torch.ones(batch, 1, dtype=torch.bool, device=t.device)
        elif mask is None:
            mask = torch.ones(text.shape[:2], dtype=torch.bool, device=t.device)
        # Dropped rows: the null token in position 0, every other position masked out.
        dropped = drops["text"]
        first = torch.zeros_like(mask)
        first[:, 0] = True
        text = _select(dropped, self.null_text, text.to(emb.dtype))
        mask = torch.where(dropped[:, None], first, mask)
        return emb, text, mask
