"""Assemble a demonstration codec from `stemforge-train export` folders, with a scale factor of
1 / std of its latents over the training corpus (MSG-LD's scale factor).

Two kinds:

- the mel path: a stemforge.codec.MelVAECodec from a mel VAE export and a vocoder export;
- the waveform path (the shipped demonstration codec): a stemforge.codec.WaveformCodec from one
  waveform autoencoder export, presented in the (C, T, F) layout of the 3D U-Net with
  ``--latent-freq`` (16 latent channels as 4 x 4).

    python apps/insert/demo/assemble_codec.py mel runs/insert-demo/mel-vae-export runs/insert-demo/vocoder-export \
        --corpus runs/insert-demo/corpus --out runs/insert-demo/codec
    python apps/insert/demo/assemble_codec.py waveform runs/audio-demo/codec-ae-export \
        --latent-freq 4 --corpus runs/audio-demo/corpus --out runs/audio-demo/codec
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from stemforge.codec import (
    AutoencoderKLConfig,
    Codec,
    HiFiGANConfig,
    MelConfig,
    MelVAECodec,
    MelVAECodecConfig,
    WaveformAutoencoderConfig,
    WaveformCodec,
    estimate_scale_factor,
    save_codec,
)
from stemforge.data import SlakhDataset


def mel_codec(vae: Path, vocoder: Path) -> Codec:
    vae_cfg = json.loads((vae / "config.json").read_text())
    voc_cfg = json.loads((vocoder / "config.json").read_text())
    config = MelVAECodecConfig(
        MelConfig(**vae_cfg["mel_config"]),
        AutoencoderKLConfig.from_dict(vae_cfg["model_config"]),
        HiFiGANConfig.from_dict(voc_cfg["model_config"]),
    )
    codec = MelVAECodec(config)
    codec.vae.load_state_dict(load_file(vae / "model.safetensors"), strict=True)
    codec.vocoder.load_state_dict(load_file(vocoder / "model.safetensors"), strict=True)
    return codec


def waveform_codec(export: Path, latent_freq: int) -> Codec:
    config = WaveformAutoencoderConfig.from_dict(
        json.loads((export / "config.json").read_text())["model_config"]
    )
    codec = WaveformCodec(dataclasses.replace(config, latent_freq=latent_freq))
    codec.autoencoder.load_state_dict(load_file(export / "model.safetensors"), strict=True)
    return codec


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="kind", required=True)
    mel = sub.add_parser("mel", help="mel VAE + HiFi-GAN vocoder")
    mel.add_argument("vae", type=Path)
    mel.add_argument("vocoder", type=Path)
    wave = sub.add_parser("waveform", help="waveform autoencoder")
    wave.add_argument("export", type=Path)
    wave.add_argument("--latent-freq", type=int, default=4)
    wave.add_argument(
        "--scale-from",
        type=Path,
        help="take the scale factor of this codec folder instead of estimating it (a decoder-only stage: "
        "the encoder, and so the latents an LDM was trained on, are that codec's)",
    )
    mel.set_defaults(scale_from=None)
    for command in (mel, wave):
        command.add_argument("--corpus", type=Path, required=True)
        command.add_argument("--out", type=Path, required=True)
        command.add_argument("--stems", default="soprano,alto,tenor,bass")
    args = parser.parse_args()
    codec = (
        mel_codec(args.vae, args.vocoder)
        if args.kind == "mel"
        else waveform_codec(args.export, args.latent_freq)
    )
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
    if args.scale_from is not None:
        scale = float(json.loads((args.scale_from / "config.json").read_text())["scale_factor"])
        codec.scale_factor.fill_(scale)
    else:
        with torch.no_grad():
            scale = estimate_scale_factor(codec, (data[i]["stems"][None] for i in range(min(len(data), 32))))
    save_codec(codec, args.out)
    print(f"codec written to {args.out} (scale factor {scale:.4f})")


if __name__ == "__main__":
    main()
