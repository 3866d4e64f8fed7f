"""Assemble the demonstration codec from two `stemforge-train export` folders (mel VAE, vocoder):
a stemforge.codec.MelVAECodec with the exported weights and a scale factor of 1 / std of its
latents over the training corpus (MSG-LD's scale factor).

    python apps/insert/demo/assemble_codec.py runs/insert-demo/mel-vae-export runs/insert-demo/vocoder-export \
        --corpus runs/insert-demo/corpus --out runs/insert-demo/codec
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from stemforge.codec import (
    AutoencoderKLConfig,
    HiFiGANConfig,
    MelConfig,
    MelVAECodec,
    MelVAECodecConfig,
    estimate_scale_factor,
    save_codec,
)
from stemforge.data import SlakhDataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("vae", type=Path)
    parser.add_argument("vocoder", type=Path)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--stems", default="soprano,alto,tenor,bass")
    args = parser.parse_args()
    vae_cfg = json.loads((args.vae / "config.json").read_text())
    voc_cfg = json.loads((args.vocoder / "config.json").read_text())
    config = MelVAECodecConfig(
        MelConfig(**vae_cfg["mel_config"]),
        AutoencoderKLConfig.from_dict(vae_cfg["model_config"]),
        HiFiGANConfig.from_dict(voc_cfg["model_config"]),
    )
    codec = MelVAECodec(config)
    codec.vae.load_state_dict(load_file(args.vae / "model.safetensors"), strict=True)
    codec.vocoder.load_state_dict(load_file(args.vocoder / "model.safetensors"), strict=True)
    codec.eval()
    data = SlakhDataset(
        args.corpus,
        "train",
        stems=tuple(args.stems.split(",")),
        group_by="stem_name",
        sample_rate=codec.sample_rate,
        segment_samples=4 * 20480,
        train=False,
    )
    with torch.no_grad():
        scale = estimate_scale_factor(codec, (data[i]["stems"][None] for i in range(min(len(data), 32))))
    save_codec(codec, args.out)
    print(f"codec written to {args.out} (scale factor {scale:.4f})")


if __name__ == "__main__":
    main()
