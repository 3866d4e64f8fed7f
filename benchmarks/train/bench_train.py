"""Training-step throughput and peak memory of stemforge-train's tasks.

One optimizer step = the task's loss on a batch + backward + AdamW step, the loop's inner work
(without the DeepSpeed engine, so CPU and GPU figures isolate the model). Prints a table and writes
JSON with the machine, versions, shapes and the median of the timed steps after warm-up.

    python benchmarks/train/bench_train.py --configs tiny-ldm tiny-midi jsb-insertion --out bench.json
    python benchmarks/train/bench_train.py --configs msgld-slakh --batch-size 1 --steps 2 --warmup 1
    # GPU (bf16 autocast, device-event timing, model FLOPs utilisation against --peak-tflops):
    python benchmarks/train/bench_train.py --configs msgld-slakh --device cuda --bf16 --peak-tflops 989
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def synthetic_batch(task, kind: str, batch_size: int, gen: torch.Generator):
    """A batch of the task's real input layout: JSB crops for MIDI, random unit-variance latents for the LDM."""
    if kind == "midi":
        from stemforge.train.datasets import ChoraleCropDataset

        data = ChoraleCropDataset("train", task.length, hop=task.length)
        return torch.stack([data[i] for i in range(batch_size)])
    cfg = task.unet_config
    frames = int(task.data.get("bench_latent_frames", 256 if cfg.name.startswith("msgld") else 32))
    freq = 16
    stems = torch.randn(batch_size, cfg.in_channels, 8, frames, freq, generator=gen)
    return {"stems": stems, "mix": stems.sum(1)}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def bench(name: str, args: argparse.Namespace) -> dict:
    from stemforge.train.config import load_config
    from stemforge.train.tasks import build_task

    overrides = [f"run.batch_size={args.batch_size}"] if args.batch_size else []
    if name.startswith("msgld") or "ldm" in name:
        overrides.append("data.latent_cache=unused")
    config = load_config(ROOT / "configs" / f"{name}.yaml", overrides)
    torch.manual_seed(0)
    task = build_task(config)
    device = torch.device(args.device)
    model = task.build_model().to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    gen = torch.Generator().manual_seed(0)
    batch = synthetic_batch(task, config.task, config.run.batch_size, gen)
    batch = (
        batch.to(device) if isinstance(batch, torch.Tensor) else {k: v.to(device) for k, v in batch.items()}
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss, _ = task.loss(model, batch, torch.Generator().manual_seed(i))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    shape = tuple(batch.shape) if isinstance(batch, torch.Tensor) else tuple(batch["stems"].shape)
    result = {
        "config": name,
        "task": config.task,
        "parameters": params,
        "batch_shape": list(shape),
        "device": str(device),
        "bf16": args.bf16,
        "step_s_median": step_s,
        "step_s_all": times,
        "samples_per_s": shape[0] / step_s,
        "peak_memory_mib": (
            torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mib()
        ),
        "peak_memory_kind": "cuda max_memory_allocated"
        if device.type == "cuda"
        else "process peak RSS (ru_maxrss)",
    }
    if args.peak_tflops and device.type == "cuda":
        # Model FLOPs of one step = 3 x forward FLOPs (forward + backward), counted by torch's FLOP counter.
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter, torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss, _ = task.loss(model, batch, torch.Generator().manual_seed(0))
            loss.backward()
        opt.zero_grad(set_to_none=True)
        flops = counter.get_total_flops()
        result["step_flops"] = flops
        result["mfu"] = flops / step_s / (args.peak_tflops * 1e12)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=["tiny-ldm", "tiny-midi", "jsb-insertion"])
    parser.add_argument("--batch-size", type=int, default=0, help="override run.batch_size")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="device peak (dense bf16) for MFU")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/train/bench_train.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_at_start = os.getloadavg()[0]
    results = [bench(name, args) for name in args.configs]
    import lightning_fabric

    payload = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "loadavg_1min_at_start": load_at_start,
            "loadavg_1min_at_end": os.getloadavg()[0],
        },
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "lightning_fabric": lightning_fabric.__version__,
        },
        "warmup": args.warmup,
        "timed_steps": args.steps,
        "results": results,
    }
    print(f"{'config':<16}{'params':>12}{'batch shape':>28}{'step s':>10}{'samples/s':>11}{'peak MiB':>10}")
    for r in results:
        print(
            f"{r['config']:<16}{r['parameters']:>12,}{tuple(r['batch_shape'])!s:>28}"
            f"{r['step_s_median']:>10.3f}{r['samples_per_s']:>11.2f}{r['peak_memory_mib']:>10.0f}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
