"""Throughput of the whole training loop: ``stemforge-train fit`` as two CPU processes (gloo, ZeRO-2).

bench_train.py times the model's step alone; this times what a user gets. For each configuration it
runs ``stemforge-train fit`` (Fabric's launcher, two local processes, DeepSpeed ZeRO-2) with
``run.log_every=1``, reads the samples/s column of the run's metrics.csv (global samples of one
optimizer step / wall time of that step: data loading, forward, backward, the DeepSpeed step, the
EMA update and the all-reduce of the loss), drops the first ``--warmup`` steps and reports the
median. tiny-ldm trains from a latent cache written by ``stemforge-train cache`` with a seeded,
untrained tiny mel VAE codec (as tests/integration/test_train_ldm_midi.py does): the loop's cost
does not depend on what the codec has learnt.

    python benchmarks/train/bench_loop.py --configs tiny-midi tiny-ldm --steps 30 \
        --out benchmarks/train/results/bench-loop.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_common import machine_info  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"


def cli(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "stemforge.train.cli", *args]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    return proc


def latent_cache(work: Path) -> Path:
    import torch

    from stemforge.codec import MelVAECodec, MelVAECodecConfig, save_codec

    torch.manual_seed(0)
    codec_dir = save_codec(MelVAECodec(MelVAECodecConfig.from_name("tiny")), work / "codec")
    cache = work / "latents"
    cli("cache", str(ROOT / "configs" / "tiny-ldm.yaml"), "--codec", str(codec_dir), "--out", str(cache),
        "--set", f"data.train_tracks=[{FIXTURE}]", "--set", f"data.val_tracks=[{FIXTURE}]",
        "--set", "data.hop_fraction=0.25")  # fmt: skip
    return cache


def measure(name: str, args: argparse.Namespace, work: Path) -> dict:
    out = work / f"run-{name}"
    overrides = [f"run.out_dir={out}", f"run.max_steps={args.steps}", "run.log_every=1", "run.val_every=0",
                 f"run.ckpt_every={args.steps}", "run.progress=false", "dist.devices=2"]  # fmt: skip
    if name == "tiny-ldm":
        overrides.append(f"data.latent_cache={latent_cache(work)}")
    load_start = os.getloadavg()
    start = time.perf_counter()
    cli("fit", str(ROOT / "configs" / f"{name}.yaml"), *[a for o in overrides for a in ("--set", o)])
    wall = time.perf_counter() - start
    with (out / "metrics.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "train"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    speeds = [float(r["samples_per_s"]) for r in rows]
    timed = speeds[args.warmup :]
    return {
        "config": name,
        "command": f"stemforge-train fit configs/{name}.yaml " + " ".join(f"--set {o}" for o in overrides),
        "processes": 2,
        "samples_per_step": config["run"]["batch_size"] * config["run"]["grad_accum"] * 2,
        "steps": len(speeds),
        "warmup_steps_dropped": args.warmup,
        "samples_per_s_median": statistics.median(timed),
        "samples_per_s_all": speeds,
        "final_loss": float(rows[-1]["loss"]),
        "command_wall_s": wall,
        "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=["tiny-midi", "tiny-ldm"])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/train/bench_loop.json")
    args = parser.parse_args()
    import lightning_fabric

    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        results = [measure(name, args, Path(tmp)) for name in args.configs]
    payload = {
        "machine": machine_info("cpu"),
        "versions": {"lightning_fabric": lightning_fabric.__version__, "deepspeed": _deepspeed_version()},
        "results": results,
    }
    print(
        f"{'config':<12}{'samples/step':>14}{'steps':>7}{'samples/s (median)':>20}{'wall s':>9}{'load start->end':>18}"
    )
    for r in results:
        load = f"{r['load_average_at_start'][0]:.1f}->{r['load_average_at_end'][0]:.1f}"
        print(f"{r['config']:<12}{r['samples_per_step']:>14}{r['steps']:>7}{r['samples_per_s_median']:>20.2f}"
              f"{r['command_wall_s']:>9.1f}{load:>18}")  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")


def _deepspeed_version() -> str:
    from importlib.metadata import version

    return version("deepspeed")


if __name__ == "__main__":
    main()
