"""Assemble a stemforge-codec ``MelVAECodec`` from exported mel-VAE (and vocoder) training runs.

The mel VAE and the vocoder train as separate runs (``task: mel_vae`` / ``task: vocoder``); the LDM
and the latent cache need one codec. The latent scale factor is set to 1 / std of the unscaled
latents over the training segments (stemforge-codec's ``estimate_scale_factor``, LDM's recipe), so
that the diffusion model sees unit-variance latents.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file

from stemforge.train.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointError


def _export(folder: Path, task: str) -> tuple[dict, dict[str, torch.Tensor]]:
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(
            f"{folder}: no {CONFIG_FILE}; pass a folder written by `stemforge-train export`"
        )
    config = json.loads(config_path.read_text())
    if config.get("task") != task:
        raise CheckpointError(f"{folder}: exported task is {config.get('task')!r}, expected {task!r}")
    return config, load_file(folder / WEIGHTS_FILE)


def bundle_mel_codec(
    vae_dir: Path,
    out: Path,
    *,
    vocoder_dir: Path | None = None,
    vocoder_preset: str = "tiny",
    scale_batches: Iterator[torch.Tensor] | None = None,
) -> Path:
    """Write a ``MelVAECodec`` (``save_codec`` format) with the trained VAE, the trained vocoder (or a
    freshly initialised ``vocoder_preset`` one, fit for encoding only) and an estimated scale factor."""
    from stemforge.codec import (
        AutoencoderKLConfig,
        HiFiGANConfig,
        MelConfig,
        MelVAECodec,
        MelVAECodecConfig,
        estimate_scale_factor,
        save_codec,
    )

    vae_meta, vae_weights = _export(Path(vae_dir), "mel_vae")
    mel = MelConfig(**vae_meta["mel_config"])
    if vocoder_dir is not None:
        voc_meta, voc_weights = _export(Path(vocoder_dir), "vocoder")
        vocoder = HiFiGANConfig.from_dict(voc_meta["model_config"])
    else:
        voc_weights = None
        vocoder = HiFiGANConfig.from_name(vocoder_preset)
    codec = MelVAECodec(
        MelVAECodecConfig(mel, AutoencoderKLConfig.from_dict(vae_meta["model_config"]), vocoder)
    )
    codec.vae.load_state_dict(vae_weights, strict=True)
    if voc_weights is not None:
        codec.vocoder.load_state_dict(voc_weights, strict=True)
    codec.eval()
    if scale_batches is not None:
        with torch.no_grad():
            estimate_scale_factor(codec, scale_batches)
    return save_codec(codec, out)
