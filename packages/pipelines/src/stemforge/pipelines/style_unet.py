"""The accompaniment denoiser with a learned style input: a 3D U-Net and the reference encoder that
feeds its ``style`` embedding, trained together (Pasini, Grachten & Lattner 2024, "Bass
Accompaniment Generation via Latent Diffusion": a reference stem controls the timbre of the
generated one). stemforge-train builds and trains it; a pipeline folder stores its two parts as
``unet/`` and ``style/``.

``model(x_t, t, cond)`` follows the samplers' contract. ``cond`` may hold ``style_latent``
(B, C, T_ref, F), the codec latent of a reference stem; it is replaced by
``style = StyleEncoder(style_latent)`` (B, D) before the U-Net call, so classifier-free guidance can
concatenate conditional and null rows key by key as for any other input. Rows with ``drop`` or
``drop_style`` use the U-Net's learned null style.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn


class StyleConditionedUNet(nn.Module):
    """``UNet3D`` + ``StyleEncoder``; the state dict keys are ``unet.*`` and ``style_encoder.*``."""

    def __init__(self, unet_config: Any, style_config: Any) -> None:
        from stemforge.conditioning import StyleEncoder
        from stemforge.unet3d import UNet3D

        super().__init__()
        if unet_config.style_dim != style_config.style_dim:
            raise ValueError(
                f"the U-Net's style_dim ({unet_config.style_dim}) differs from the style encoder's "
                f"({style_config.style_dim}); set both from model.style_encoder.style_dim"
            )
        self.unet = UNet3D(unet_config)
        self.style_encoder = StyleEncoder(style_config)

    @property
    def config(self) -> Any:
        return self.unet.config

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StyleConditionedUNet:
        """``{"unet": UNet3DConfig.to_dict(), "style_encoder": StyleEncoderConfig.to_dict()}``."""
        from stemforge.conditioning import StyleEncoderConfig
        from stemforge.unet3d import UNet3DConfig

        missing = {"unet", "style_encoder"} - set(config)
        if missing:
            raise ValueError(f"StyleConditionedUNet config lacks {sorted(missing)}; re-export the checkpoint")
        return cls(
            UNet3DConfig.from_dict(dict(config["unet"])), StyleEncoderConfig(**dict(config["style_encoder"]))
        )

    def forward(self, x: Tensor, t: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        if cond is not None and "style_latent" in cond:
            cond = dict(cond)
            cond["style"] = self.style_encoder(cond.pop("style_latent"))
        return self.unet(x, t, cond)
