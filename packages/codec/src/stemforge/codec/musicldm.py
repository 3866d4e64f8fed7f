"""Load MusicLDM / AudioLDM VAE and HiFi-GAN weights that a user already has on disk.

MSG-LD (Karchkhadze et al., Sec. IV) uses MusicLDM's released VAE and vocoder unchanged. Those
checkpoints are PyTorch files in two layouts, both read with ``torch.load(weights_only=True)``
(tensors only, no code execution):

- latent-diffusion / MusicLDM (a Lightning checkpoint, ``{"state_dict": {...}}`` or the bare dict):
  ``first_stage_model.encoder.down.0.block.0.norm1.weight``, ``first_stage_model.decoder.up.2...``,
  ``first_stage_model.quant_conv.*``, ``first_stage_model.post_quant_conv.*``, the vocoder under
  ``first_stage_model.vocoder.*`` when it was bundled, and the LDM's ``scale_factor``; a bare VAE
  file has the same names without the prefix.
- HiFi-GAN (``{"generator": {...}}`` or the bare dict): ``conv_pre``, ``ups.i``,
  ``resblocks.j.convs1.k`` / ``convs2.k``, ``conv_post``, each with ``weight_g`` / ``weight_v``
  (weight norm) or a folded ``weight``, and ``bias``.

:class:`AutoencoderKL` and :class:`HiFiGAN` use latent-diffusion's and HiFi-GAN's module names, so
the mapping is: strip the prefix; ``weight_g`` -> ``parametrizations.weight.original0`` and
``weight_v`` -> ``original1``; a folded ``weight`` w becomes ``g = ||w||`` (over all axes but the
first) and ``v = w``. Every expected parameter must be present with the expected shape; anything
else is reported with the file name.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from stemforge.codec.autoencoder_kl import AutoencoderKL, AutoencoderKLConfig
from stemforge.codec.hifigan import HiFiGAN, HiFiGANConfig
from stemforge.codec.mel_vae_codec import MelVAECodec, MelVAECodecConfig

__all__ = [
    "load_musicldm_codec",
    "load_musicldm_vae",
    "load_musicldm_vocoder",
    "map_hifigan_state_dict",
    "map_ldm_vae_state_dict",
    "read_torch_state_dict",
]

_VAE_PARTS = ("encoder.", "decoder.", "quant_conv.", "post_quant_conv.")
_VAE_PREFIXES = ("first_stage_model.", "")
_VOCODER_PREFIXES = ("first_stage_model.vocoder.", "vocoder.", "")
_VOCODER_PARTS = ("conv_pre.", "ups.", "resblocks.", "conv_post.")


def read_torch_state_dict(path: str | Path) -> dict[str, Tensor]:
    """``torch.load(weights_only=True)``; unwraps ``state_dict`` / ``generator``; tensors only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such file; pass the path of a MusicLDM/AudioLDM or HiFi-GAN checkpoint"
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{path}: not a PyTorch checkpoint that loads with weights_only=True ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}); stemforge checkpoints are directories "
            "read with load_codec()"
        ) from err
    for key in ("state_dict", "generator"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a dict of tensors, got {type(data).__name__}")
    tensors = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, Tensor)}
    if not tensors:
        raise ValueError(f"{path}: the checkpoint holds no tensors")
    return tensors


def _strip(state: dict[str, Tensor], prefixes: tuple[str, ...], parts: tuple[str, ...]) -> dict[str, Tensor]:
    """The entries under the first prefix that has any key starting with ``prefix + part``."""
    for prefix in prefixes:
        found = {
            key[len(prefix) :]: value
            for key, value in state.items()
            if key.startswith(prefix) and key[len(prefix) :].startswith(parts)
        }
        if found:
            return found
    return {}


def _check_and_load(module: torch.nn.Module, mapped: dict[str, Tensor], source: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    wrong = [
        f"{k} {tuple(mapped[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(mapped))
        if mapped[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        raise ValueError(
            f"{source}: does not match the {type(module).__name__} configuration: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}), "
            f"{len(wrong)} with another shape (e.g. {wrong[:3]}); pass the config the weights were trained with"
        )
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in mapped.items()})


def map_ldm_vae_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """latent-diffusion / MusicLDM names -> :class:`AutoencoderKL` names (empty if none found)."""
    return _strip(state, _VAE_PREFIXES, _VAE_PARTS)


def map_hifigan_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """HiFi-GAN names (``weight_g``/``weight_v`` or folded ``weight``) -> :class:`HiFiGAN` names."""
    stripped = _strip(state, _VOCODER_PREFIXES, _VOCODER_PARTS)
    mapped: dict[str, Tensor] = {}
    for key, value in stripped.items():
        stem, _, leaf = key.rpartition(".")
        if leaf == "weight_g":
            mapped[f"{stem}.parametrizations.weight.original0"] = value
        elif leaf == "weight_v":
            mapped[f"{stem}.parametrizations.weight.original1"] = value
        elif leaf == "weight":
            # Weight norm already removed: w = g * v / ||v|| holds with v = w, g = ||w||.
            norm = torch.linalg.vector_norm(value.double(), dim=tuple(range(1, value.ndim)), keepdim=True)
            mapped[f"{stem}.parametrizations.weight.original0"] = norm.to(value.dtype)
            mapped[f"{stem}.parametrizations.weight.original1"] = value
        else:
            mapped[key] = value
    return mapped


def load_musicldm_vae(
    path: str | Path, config: AutoencoderKLConfig | None = None
) -> tuple[AutoencoderKL, float | None]:
    """The VAE of a MusicLDM/AudioLDM checkpoint and its ``scale_factor`` (None if the file has none)."""
    state = read_torch_state_dict(path)
    mapped = map_ldm_vae_state_dict(state)
    if not mapped:
        raise ValueError(
            f"{path}: holds no latent-diffusion VAE weights (no keys like 'first_stage_model.encoder.conv_in.weight' "
            f"or 'encoder.conv_in.weight'; first keys: {sorted(state)[:3]})"
        )
    vae = AutoencoderKL(config or AutoencoderKLConfig.from_name("msgld"))
    _check_and_load(vae, mapped, str(path))
    scale = state.get("scale_factor")
    return vae.eval(), (float(scale) if scale is not None else None)


def load_musicldm_vocoder(path: str | Path, config: HiFiGANConfig | None = None) -> HiFiGAN:
    """The HiFi-GAN generator of a HiFi-GAN checkpoint or of a MusicLDM checkpoint that bundles it."""
    state = read_torch_state_dict(path)
    mapped = map_hifigan_state_dict(state)
    if not mapped:
        raise ValueError(
            f"{path}: holds no HiFi-GAN generator weights (no keys like 'conv_pre.weight_g', "
            f"'first_stage_model.vocoder.conv_pre.weight'; first keys: {sorted(state)[:3]})"
        )
    vocoder = HiFiGAN(config or HiFiGANConfig.from_name("msgld"))
    _check_and_load(vocoder, mapped, str(path))
    return vocoder.eval()


def load_musicldm_codec(
    vae_path: str | Path,
    vocoder_path: str | Path | None = None,
    config: MelVAECodecConfig | None = None,
    scale_factor: float | None = None,
) -> MelVAECodec:
    """A :class:`MelVAECodec` with MusicLDM's VAE and vocoder (``vocoder_path`` defaults to ``vae_path``).

    The scale factor comes from ``scale_factor``, else from the checkpoint; if neither has one,
    estimate it with :func:`stemforge.codec.estimate_scale_factor`.
    """
    config = config or MelVAECodecConfig.from_name("msgld")
    vae, stored = load_musicldm_vae(vae_path, config.vae)
    vocoder = load_musicldm_vocoder(vocoder_path or vae_path, config.vocoder)
    codec = MelVAECodec(config)
    codec.vae.load_state_dict(vae.state_dict())
    codec.vocoder.load_state_dict(vocoder.state_dict())
    chosen = scale_factor if scale_factor is not None else stored
    if chosen is not None:
        codec.scale_factor.fill_(chosen)
    return codec.eval()
