"""How much a waveform codec's latent follows the music rather than the waveform, per stem.

A diffusion model tells latent from noise by structure; a latent that is close to white along time
(as white as the noise) leaves it nothing to go on. For each codec folder given (what
``load_codec`` reads: ``assemble_codec.py`` output or an embedded pipeline's ``codec/``), the first
``--seconds`` of every stem under ``--corpus`` (Slakh layout, read by eval_demo_audio.read_track; stems quieter than -50 dBFS skipped)
are encoded and, per stem name, averaged over latent channels and clips:

- ``std``: the latent's standard deviation after the codec's scale factor (what the U-Net sees);
- ``lag1``: correlation of consecutive latent frames (1 = smooth, 0 = white);
- ``upper_half_power``: the share of the latent's power (mean removed) in the upper half of its
  time spectrum (0.5 for white noise, near 0 for a slowly varying latent).

    OMP_NUM_THREADS=1 hatch run python benchmarks/codec/latent_smoothness.py \\
        apps/insert/src/stemforge/insert/checkpoints/demo-audio/codec runs/audio-demo/codec-bottleneck-final \\
        --corpus runs/audio-demo/corpus-tsf/test --out benchmarks/codec/latent_smoothness_bottleneck.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "insert"))
from bench_common import machine_info
from eval_demo_audio import STEMS, read_track

from stemforge.codec import load_codec


def stem_clips(corpus: Path, seconds: float) -> dict[str, list[torch.Tensor]]:
    """The first ``seconds`` of every track's stems by name, those quieter than -50 dBFS left out."""
    clips: dict[str, list[torch.Tensor]] = {name: [] for name in STEMS}
    for track in sorted(p for p in corpus.iterdir() if (p / "metadata.yaml").is_file()):
        for name, clip in zip(STEMS, read_track(track, 0.0, seconds), strict=True):
            if clip.square().mean().sqrt() > 10 ** (-50 / 20):
                clips[name].append(clip)
    if not any(clips.values()):
        raise SystemExit(f"{corpus}: no track (TRACK/metadata.yaml + stems/) with an audible stem")
    return {name: waves for name, waves in clips.items() if waves}


def smoothness(latent: torch.Tensor) -> dict[str, float]:
    """``latent``: (clips, channels, frames), scaled as the U-Net sees it."""
    centred = latent - latent.mean(-1, keepdim=True)
    power = centred.square().sum(-1).clamp_min(1e-12)
    lag1 = (centred[..., 1:] * centred[..., :-1]).sum(-1) / power
    spectrum = torch.fft.rfft(centred, dim=-1).abs().square()
    half = spectrum.shape[-1] // 2
    upper = spectrum[..., half:].sum(-1) / spectrum.sum(-1).clamp_min(1e-12)
    return {
        "std": float(latent.std()),
        "lag1": float(lag1.mean()),
        "upper_half_power": float(upper.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "codecs", type=Path, nargs="+", help="codec folders (config.json + model.safetensors)"
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        required=True,
        help="rendered tracks: TRACK/metadata.yaml + TRACK/stems/Sxx.flac",
    )
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    for folder in args.codecs:
        if not (folder / "config.json").is_file():
            raise SystemExit(
                f"{folder}: not a codec folder (no config.json); give assemble_codec.py's output"
            )
    start = time.perf_counter()
    clips = stem_clips(args.corpus, args.seconds)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for folder in args.codecs:
        codec = load_codec(str(folder)).eval()
        per_stem = {}
        for name, waves in clips.items():
            with torch.no_grad():
                z = codec.encode(torch.stack(waves).unsqueeze(1))  # (clips, 1, C, T, F)
            z = z[:, 0].transpose(-1, -2).flatten(1, 2)  # (clips, C * F, T)
            per_stem[name] = {**smoothness(z), "clips": len(waves)}
        results[str(folder)] = per_stem
    report = {
        "command": "python benchmarks/codec/latent_smoothness.py "
        + " ".join(str(c) for c in args.codecs)
        + f" --corpus {args.corpus} --seconds {args.seconds}",
        "codecs": results,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "machine": machine_info("cpu"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for folder, per_stem in results.items():
        print(folder)
        for name, row in per_stem.items():
            print(
                f"  {name:8s} std {row['std']:.3f}  lag1 {row['lag1']:+.3f}  upper-half {row['upper_half_power']:.3f}"
            )


if __name__ == "__main__":
    main()
