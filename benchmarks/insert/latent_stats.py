"""Per-stem statistics of generated latents against real ones: where total generation goes wrong
before the codec decodes anything.

A pipeline's U-Net generates ``--samples`` latents of the training segment's length (w = 0, DDIM,
``--steps``, each ``--eta``); the real latents are the first items of a latent cache written by
``stemforge-train cache`` with the pipeline's codec (already scaled, as the U-Net sees them). For
every stem: the standard deviation of each item's latent averaged over items (a level in latent
units), the mean over items, time and frequency per latent channel, and the fraction of frames whose
energy is under a tenth of the item's mean (rests).

    OMP_NUM_THREADS=1 hatch run python benchmarks/insert/latent_stats.py --checkpoint PIPELINE \\
        --latents runs/audio-demo/latents-tsf --out benchmarks/insert/latent_stats_stage4.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_common import machine_info


def stem_stats(latents: Tensor, stems: tuple[str, ...]) -> dict[str, dict[str, object]]:
    """Statistics of latents (N, S, C, T, F) per stem."""
    std = latents.std(dim=(2, 3, 4)).mean(0)
    channel_mean = latents.mean(dim=(0, 3, 4))
    energy = latents.pow(2).mean(dim=(2, 4))  # (N, S, T)
    rests = (energy < 0.1 * energy.mean(-1, keepdim=True)).float().mean(dim=(0, 2))
    return {
        stem: {
            "std": round(float(std[i]), 4),
            "channel_mean": [round(float(v), 4) for v in channel_mean[i]],
            "rest_fraction": round(float(rests[i]), 4),
        }
        for i, stem in enumerate(stems)
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="a multitrack pipeline folder")
    parser.add_argument("--latents", type=Path, required=True, help="a stemforge-train latent cache")
    parser.add_argument("--split", default="val", help="the cache's split (default val)")
    parser.add_argument("--items", type=int, default=64, help="real items to read (default 64)")
    parser.add_argument("--samples", type=int, default=8, help="generated latents per eta (default 8)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--eta", type=float, nargs="+", default=[1.0, 0.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from safetensors.torch import load_file

    from stemforge.pipelines import MultiTrackPipeline
    from stemforge.pipelines.generate import null_condition
    from stemforge.pipelines.sampling import SamplingOptions, chunk_noise, sample_model, step_generator

    shards = sorted((args.latents / args.split).glob("shard-*.safetensors"))
    if not shards:
        sys.exit(
            f"--latents {args.latents}: no {args.split}/shard-*.safetensors; write it with stemforge-train cache"
        )
    real = load_file(shards[0])["stems"][: args.items].float()
    pipe = MultiTrackPipeline.from_pretrained(args.checkpoint)
    if real.shape[1] != len(pipe.stems):
        sys.exit(f"--latents {args.latents}: {real.shape[1]} stems, the pipeline has {len(pipe.stems)}")
    start = time.perf_counter()
    result: dict[str, object] = {
        "command": "python benchmarks/insert/latent_stats.py " + " ".join(sys.argv[1:]),
        "checkpoint": str(args.checkpoint),
        "latent_shape": list(real.shape[1:]),
        "real": {"items": int(real.shape[0]), "stems": stem_stats(real, pipe.stems)},
        "generated": {},
    }
    chunks = list(range(args.samples))
    for eta in args.eta:
        x_T = chunk_noise(tuple(real.shape[1:]), args.seed, chunks, torch.device("cpu"))
        options = SamplingOptions(steps=args.steps, eta=eta, seed=args.seed)
        with torch.no_grad():
            out = sample_model(
                pipe,
                x_T,
                options,
                cond=null_condition(pipe, x_T),
                generator=step_generator(args.seed, chunks),
            )
        result["generated"][f"eta {eta:g}"] = {  # type: ignore[index]
            "samples": args.samples,
            "steps": args.steps,
            "stems": stem_stats(out, pipe.stems),
        }
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    result["machine"] = machine_info("cpu")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, block in [("real", result["real"]), *result["generated"].items()]:  # type: ignore[union-attr]
        stds = ", ".join(f"{s} {v['std']:.2f}" for s, v in block["stems"].items())  # type: ignore[index]
        print(f"{name}: std {stds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
