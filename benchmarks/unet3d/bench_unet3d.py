"""Forward and forward+backward time, peak memory and FLOPs of the paper-size MSG-LD 3D U-Net.

Latents (B, 4, 8, T, 16): T = 256 is the paper's 10.24 s clip, T = 64 a quarter of it. On CPU the
model runs in float32 at batch 1; on CUDA in bf16 (weights and activations) at the largest batch
that fits a forward+backward (``--batch auto``: doubling until out of memory). FLOPs come from
torch.utils.flop_counter on the meta device (attention through the reference backend, so its matmuls
are counted), and give the physical limit of one 200-step DDIM sample with classifier-free guidance
(one batched cond/uncond pass per step, i.e. batch 2) at the device's dense peak.
Each measurement runs in its own process so that its peak memory is its own.

    nice -n 10 python benchmarks/unet3d/bench_unet3d.py                       # CPU, float32, batch 1
    python benchmarks/unet3d/bench_unet3d.py --device cuda --batch auto       # GPU, bf16
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_common import machine_info, peak_rss_mib, run_isolated

H100_DENSE_BF16_TFLOPS = 790.0  # the figure this project plans with for an H100 (dense bf16)


def build(preset: str, device: str, dtype: torch.dtype, backend: str, checkpointing: bool):
    from stemforge.unet3d import UNet3D, UNet3DConfig

    config = UNet3DConfig.from_name(preset, attention_backend=backend, gradient_checkpointing=checkpointing)
    with torch.device(device):
        model = UNet3D(config)
    return model.to(dtype)


def count_flops(preset: str, frames: int, batch: int = 1) -> dict:
    """Forward and forward+backward FLOPs at batch ``batch`` on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build(preset, "meta", torch.float32, "reference", False)
    cfg = model.config
    x = torch.empty(batch, cfg.in_channels, 8, frames, 16, device="meta")
    t = torch.zeros(batch, device="meta")
    cond = (
        {"mix_latent": torch.empty(batch, 8, frames, 16, device="meta")} if cfg.mixture_conditioning else {}
    )
    with FlopCounterMode(display=False) as fwd, torch.no_grad():
        model(x, t, cond)
    with FlopCounterMode(display=False) as both:
        model(x, t, cond).sum().backward()
    return {"forward": fwd.get_total_flops(), "fwd+bwd": both.get_total_flops()}


def _inputs(model, batch: int, frames: int, device: str, dtype: torch.dtype):
    cfg = model.config
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(batch, cfg.in_channels, 8, frames, 16, device=device, generator=gen).to(dtype)
    t = torch.randint(0, 1000, (batch,), device=device, generator=gen).float()
    cond = {"mix_latent": x.sum(1)} if cfg.mixture_conditioning else {}
    return x, t, cond


def measure(spec: dict) -> dict:
    """Runs in a child process: one configuration's warm-up, timed repeats and peak memory."""
    torch.manual_seed(0)
    device, dtype = spec["device"], getattr(torch, spec["dtype"])
    model = build(spec["preset"], device, dtype, spec["backend"], spec["checkpointing"])
    backward = spec["mode"] == "fwd+bwd"
    model.train(backward)
    batch = spec["batch"]
    cuda = device == "cuda"
    if batch == "auto":
        batch = largest_batch(model, spec["frames"], device, dtype)
    x, t, cond = _inputs(model, batch, spec["frames"], device, dtype)

    def step() -> None:
        if backward:
            model(x, t, cond).float().square().mean().backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(x, t, cond)

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss0 = peak_rss_mib()
    step()
    if cuda:
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = peak_rss_mib() - rss0
    for _ in range(spec["warmup"]):
        step()
    times = []
    for _ in range(spec["repeats"]):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    return {"batch": batch, "times_s": times, "median_s": statistics.median(times), "peak_mem_mib": peak,
            "parameters": model.num_parameters()}  # fmt: skip


def largest_batch(model, frames: int, device: str, dtype: torch.dtype, limit: int = 1024) -> int:
    """Largest power-of-two batch whose forward+backward fits (CUDA only)."""
    best, batch = 0, 1
    while batch <= limit:
        try:
            x, t, cond = _inputs(model, batch, frames, device, dtype)
            model(x, t, cond).float().square().mean().backward()
            model.zero_grad(set_to_none=True)
            best, batch = batch, batch * 2
        except torch.OutOfMemoryError:
            break
        finally:
            torch.cuda.empty_cache()
    if best == 0:
        raise RuntimeError("batch 1 does not fit in device memory")
    return best


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="msgld-slakh")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16"], help="default: float32 CPU, bfloat16 CUDA"
    )
    parser.add_argument(
        "--batch", default="1", help="an integer, or 'auto' (CUDA: largest power of two that fits)"
    )
    parser.add_argument("--frames", default="256,64", help="latent frames T: 256 = 10.24 s, 64 = a quarter")
    parser.add_argument("--modes", default="fwd,fwd+bwd")
    parser.add_argument("--backend", default="auto", help="attention backend of the U-Net")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing per block")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=H100_DENSE_BF16_TFLOPS,
                        help="dense bf16 peak for the sampling limit (default: H100, 790)")  # fmt: skip
    parser.add_argument("--sampling-steps", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument(
        "--out", default=None, help="JSON path (default: benchmarks/unet3d/results-<device>.json)"
    )
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible")
    if args.batch == "auto" and args.device != "cuda":
        parser.error("--batch auto searches GPU memory; give an integer batch on CPU")
    dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    batch = "auto" if args.batch == "auto" else int(args.batch)

    rows = []
    for frames in (int(f) for f in args.frames.split(",")):
        flops = count_flops(args.preset, frames)
        for mode in args.modes.split(","):
            spec = {"preset": args.preset, "device": args.device, "dtype": dtype, "batch": batch, "frames": frames,
                    "mode": mode, "backend": args.backend, "checkpointing": args.checkpointing,
                    "warmup": args.warmup, "repeats": args.repeats}  # fmt: skip
            row = {
                "frames": frames,
                "mode": mode,
                "dtype": dtype,
                "flops_per_sample": flops["forward" if mode == "fwd" else "fwd+bwd"],
            }
            row.update(run_isolated(measure, spec, args.timeout))
            if "median_s" in row:
                row["tflops_per_s"] = row["flops_per_sample"] * row["batch"] / row["median_s"] / 1e12
            rows.append(row)
            print(_format(row), flush=True)

    full = max(int(f) for f in args.frames.split(","))
    fwd_flops = count_flops(args.preset, full)["forward"]
    # CFG runs cond and uncond rows in one batched pass: 2 forward rows per step.
    sample_flops = args.sampling_steps * 2 * fwd_flops
    limit = {"frames": full, "forward_flops_batch1": fwd_flops, "steps": args.sampling_steps, "cfg_rows": 2,
             "sample_flops": sample_flops, "peak_tflops": args.peak_tflops,
             "seconds_at_peak": sample_flops / (args.peak_tflops * 1e12)}  # fmt: skip
    report = {"benchmark": "unet3d", "preset": args.preset, "command": " ".join(["python", *sys.argv]),
              "machine": machine_info(args.device), "load_average_at_start": load_at_start, "results": rows, "sampling_limit": limit}  # fmt: skip
    out = Path(args.out or Path(__file__).with_name(f"results-{args.device}.json"))
    out.write_text(json.dumps(report, indent=2))
    print(
        f"\n{'frames':>6} {'mode':<8} {'batch':>5} {'median s':>9} {'GFLOP/sample':>13} {'TFLOP/s':>8} {'peak MiB':>9}"
    )
    for row in rows:
        print(_format(row))
    print(f"forward FLOPs at batch 1, T={full}: {fwd_flops / 1e12:.3f} TFLOP; {args.sampling_steps}-step DDIM with "
          f"batched CFG = {sample_flops / 1e15:.3f} PFLOP = {limit['seconds_at_peak']:.3f} s at {args.peak_tflops} TFLOP/s")  # fmt: skip
    print(f"JSON: {out}")
    return report


def _format(row: dict) -> str:
    head = f"{row['frames']:>6} {row['mode']:<8}"
    if "median_s" not in row:
        return f"{head} {row.get('error')}"
    return (f"{head} {row['batch']:>5} {row['median_s']:>9.3f} {row['flops_per_sample'] / 1e9:>13.1f} "
            f"{row['tflops_per_s']:>8.3f} {row['peak_mem_mib']:>9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
