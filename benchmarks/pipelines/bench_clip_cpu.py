"""End-to-end separation time of one clip (and optionally a song) at paper size, with the stage breakdown.

``MultiTrackPipeline.separate`` as a user calls it, on an untrained pipeline of the paper's size
(the ``msgld-slakh`` U-Net, 305M parameters, and the MSG-LD codec, mel VAE + HiFi-GAN, random
weights, float32: speed does not depend on the weights' values), built by
``benchmarks/gpu/run.py``'s ``build_pipeline`` so that the CPU and GPU figures time the same
object. Stages, summed over every call of the run:

- ``encode``: ``codec.encode`` of the mixture;
- ``unet``: the U-Net's forward calls (one per step at w = 1, one batched call of two rows at w > 1);
- ``sampler``: the rest of the sampling loop (sampler arithmetic, chunk bookkeeping, checks);
- ``vae_decode`` and ``vocode``: the mel VAE decoder and HiFi-GAN over all stems (one batched call
  per decoded chunk);
- ``other``: what is left of the wall time (resampling, output checks).

Each setting is timed ``--repeats`` times (medians reported, every run kept) after one untimed
warm-up run of the first setting (same shapes); the
process's peak resident memory and the load average are recorded. ``--preset tiny`` runs the same
code at a tiny size in seconds (the test suite's run).

    OMP_NUM_THREADS=2 hatch run python benchmarks/pipelines/bench_clip_cpu.py --preset paper \\
        --runs ddim:10:1 --out benchmarks/pipelines/bench_clip_cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
from bench_common import machine_info  # noqa: E402
from run import PAPER, TINY, build_pipeline, forward_flops  # noqa: E402


class Stages:
    """Wall seconds spent inside chosen calls: modules through forward hooks, methods by wrapping."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._open: dict[str, float] = {}

    def module(self, name: str, module: torch.nn.Module) -> None:
        def start(*_: Any) -> None:
            self._open[name] = time.perf_counter()

        def stop(*_: Any) -> None:
            self._add(name, time.perf_counter() - self._open.pop(name))

        module.register_forward_pre_hook(start)
        module.register_forward_hook(stop)

    def method(self, name: str, owner: Any, attribute: str) -> None:
        call: Callable[..., Any] = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self._add(name, time.perf_counter() - begin)

        setattr(owner, attribute, timed)

    def _add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def take(self) -> tuple[dict[str, float], dict[str, int]]:
        seconds, calls = dict(self.seconds), dict(self.calls)
        self.seconds.clear()
        self.calls.clear()
        return seconds, calls


def breakdown(wall: float, spent: dict[str, float], calls: dict[str, int]) -> dict[str, float]:
    """One timed run's stages; the sampler's share is the sampling loop's time minus the U-Net's."""
    sampling = spent.pop("sampling", 0.0)
    row = {
        "wall_s": wall,
        "encode_s": spent.get("encode", 0.0),
        "unet_s": spent.get("unet", 0.0),
        "sampler_s": sampling - spent.get("unet", 0.0),
        "vae_decode_s": spent.get("vae_decode", 0.0),
        "vocode_s": spent.get("vocode", 0.0),
        "unet_calls": calls.get("unet", 0),
        "seconds_per_unet_call": spent.get("unet", 0.0) / max(1, calls.get("unet", 0)),
    }
    row["other_s"] = wall - sampling - row["encode_s"] - row["vae_decode_s"] - row["vocode_s"]
    return row


def parse_run(text: str) -> dict[str, Any]:
    """``SAMPLER:STEPS:GUIDANCE[:ETA]``, e.g. ``ddim:10:1`` or ``dpm:20:2``."""
    parts = text.split(":")
    if len(parts) not in (3, 4):
        raise argparse.ArgumentTypeError(
            f"--runs {text!r}: expected SAMPLER:STEPS:GUIDANCE[:ETA], e.g. ddim:10:1"
        )
    run = {"sampler": parts[0], "steps": int(parts[1]), "guidance": float(parts[2])}
    if len(parts) == 4:
        run["eta"] = float(parts[3])
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=("paper", "tiny"), default="paper")
    parser.add_argument(
        "--runs", nargs="+", type=parse_run, default=[parse_run("ddim:10:1")],
        help="settings SAMPLER:STEPS:GUIDANCE[:ETA] (default ddim:10:1)",
    )  # fmt: skip
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed runs per setting (the median is reported)"
    )
    parser.add_argument("--song-seconds", type=float, default=0.0, help="also separate a song this long")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    # Random weights give degenerate audio, which --allow-degenerate writes with a warning per call.
    warnings.simplefilter("ignore", UserWarning)
    from stemforge.pipelines import multitrack

    profile = PAPER if args.preset == "paper" else TINY
    pipe = build_pipeline(profile, "cpu", torch.float32)
    stages = Stages()
    stages.module("unet", pipe.unet)
    stages.module("vocode", pipe.codec.vocoder)
    stages.method("vae_decode", pipe.codec.vae, "decode")
    stages.method("encode", pipe.codec, "encode")
    stages.method("sampling", multitrack, "sample_in_chunks")
    rate = pipe.sample_rate
    gen = torch.Generator().manual_seed(0)
    result: dict[str, Any] = {
        "command": "python benchmarks/pipelines/bench_clip_cpu.py " + " ".join(sys.argv[1:]),
        "pipeline": f"random {profile.unet_preset} U-Net ({sum(p.numel() for p in pipe.unet.parameters()):,} "
        f"parameters) + {profile.codec_preset} mel VAE + HiFi-GAN codec, float32",
        "stems": list(pipe.stems),
        "unet_forward_flops_per_row": forward_flops(profile),
        "stages": "encode / unet / sampler (sampling loop minus U-Net) / vae_decode / vocode / other",
        "runs": [],
    }
    clips = [("clip", profile.clip_seconds)] + ([("song", args.song_seconds)] if args.song_seconds else [])
    first = True
    for what, seconds in clips:
        mix = 0.1 * torch.randn(round(seconds * rate), generator=gen)
        for run in args.runs:
            options = {k: v for k, v in run.items() if k != "guidance"}
            call = {
                "method": "cfg",
                "guidance": run["guidance"],
                "seed": 0,
                "allow_degenerate": True,
                **options,
            }
            if first:  # warm-up: same shapes, untimed
                pipe.separate(mix, rate, **call)
                stages.take()
                first = False
            repeats = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                pipe.separate(mix, rate, **call)
                repeats.append(breakdown(time.perf_counter() - start, *stages.take()))
            row = {
                "input": what,
                "audio_seconds": seconds,
                **run,
                **{key: statistics.median(r[key] for r in repeats) for key in repeats[0]},
                "repeats": repeats,
            }
            result["runs"].append(row)
            print(
                f"{what} {seconds:.2f} s {run}: wall {row['wall_s']:.1f} s = encode {row['encode_s']:.1f} + "
                f"U-Net {row['unet_s']:.1f} ({row['unet_calls']:.0f} calls) + sampler {row['sampler_s']:.2f} + "
                f"VAE decode {row['vae_decode_s']:.1f} + vocode {row['vocode_s']:.1f} + other {row['other_s']:.2f}",
                flush=True,
            )
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["machine"] = machine_info("cpu") | {"omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
