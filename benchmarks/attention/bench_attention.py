"""Time and peak memory of every stemforge.kernels attention backend at the U-Net's attention sizes.

The MSG-LD U-Net attends over 8192, 2048 and 512 tokens (C x T x F at downsampling 2, 4, 8 of the
(8, 256, 16) latent) with 8, 12 and 20 heads of 32 channels. Each backend runs forward and
forward+backward with a relative-position bias table (what Dynamic Positional Bias produces); the
SDPA path with the bias materialised as an L x L mask is the baseline, and SDPA without any bias is
the floor. Each measurement runs in its own process, so peak memory is that of one configuration:
torch.cuda.max_memory_allocated on GPU, the growth of the resident set (ru_maxrss) on CPU.

    python benchmarks/attention/bench_attention.py                         # CPU, float32
    python benchmarks/attention/bench_attention.py --device cuda --dtype bfloat16

FLOPs: forward 4 B H L^2 D (q k^T and P v); backward 2.5x forward (FlashAttention-2 accounting).
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
from bench_common import cpuinfo_lines, machine_info, peak_rss_mib, run_isolated

PAPER_SIZES = [(8192, 8), (2048, 12), (512, 20)]  # (tokens, heads) of the MSG-LD U-Net
# (name, backend, bias): the materialised-bias SDPA path is the baseline to beat.
VARIANTS = {
    "sdpa-nobias": ("sdpa", False),
    "sdpa-bias": ("sdpa", True),
    "reference-bias": ("reference", True),
    "triton-bias": ("triton", True),
}
BASELINE = "sdpa-bias"
# Dense peak TFLOP/s by device name fragment (vendor data sheets); CPU peak is estimated below.
GPU_PEAK_TFLOPS = {"H100": {"bfloat16": 790.0, "float32": 51.0}, "H200": {"bfloat16": 989.0, "float32": 67.0}}


def attention_flops(batch: int, heads: int, tokens: int, head_dim: int, mode: str) -> float:
    forward = 4.0 * batch * heads * tokens * tokens * head_dim
    return forward * (3.5 if mode == "fwd+bwd" else 1.0)


def cpu_peak_tflops(dtype: str) -> float | None:
    """Nominal fp32 peak: threads x clock x FLOP/cycle, 64 for Intel AVX-512 (2 x 512-bit FMA), else
    32 (2 x 256-bit FMA: AVX2 cores and AMD Zen 2-4, whose AVX-512 is double-pumped)."""
    try:
        mhz = max(float(line.split(":")[1]) for line in cpuinfo_lines() if line.startswith("cpu MHz"))
    except (OSError, ValueError):
        return None
    flags = "\n".join(cpuinfo_lines())
    per_cycle = 64 if "avx512f" in flags and "GenuineIntel" in flags else 32
    return torch.get_num_threads() * mhz * 1e6 * per_cycle / 1e12 if dtype == "float32" else None


def device_info(device: str) -> dict:
    info = machine_info(device)
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    return info


def measure(spec: dict) -> dict:
    """Runs in a child process: warm-up, timed repeats and peak memory of one configuration."""
    from stemforge.kernels import attention

    torch.manual_seed(0)
    device, dtype = spec["device"], getattr(torch, spec["dtype"])
    b, h, n, d = spec["batch"], spec["heads"], spec["tokens"], spec["head_dim"]
    backward = spec["mode"] == "fwd+bwd"
    q, k, v = (torch.randn(b, h, n, d, device=device, dtype=dtype, requires_grad=backward) for _ in range(3))
    table = (
        torch.randn(h, 2 * n - 1, device=device, dtype=torch.float32, requires_grad=backward)
        if spec["bias"]
        else None
    )
    grad = torch.randn(b, h, n, d, device=device, dtype=dtype)

    def step() -> None:
        if backward:
            out = attention(q, k, v, rel_bias_table=table, backend=spec["backend"])
            out.backward(grad)
            for x in (q, k, v, table):
                if x is not None:
                    x.grad = None
        else:
            with torch.no_grad():
                attention(q, k, v, rel_bias_table=table, backend=spec["backend"])

    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    rss0 = peak_rss_mib()
    step()  # first run: compilation / allocation, and the peak memory
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
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
    return {"times_ms": times, "median_ms": statistics.median(times), "peak_mem_mib": peak}


def bias_bytes(spec: dict) -> float:
    """Memory that the materialised paths need for one L x L float32 tensor per head."""
    return spec["batch"] * spec["heads"] * spec["tokens"] ** 2 * 4.0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                        help="default: float32 on CPU, bfloat16 on CUDA")  # fmt: skip
    parser.add_argument(
        "--sizes", default=",".join(f"{n}:{h}" for n, h in PAPER_SIZES), help="tokens:heads,..."
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--variants", default=None, help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--modes", default="fwd,fwd+bwd")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-materialised-gib", type=float, default=3.0,
                        help="skip the SDPA bias path when one L x L float32 tensor exceeds this")  # fmt: skip
    parser.add_argument("--max-reference-gib", type=float, default=1.0,
                        help="skip the reference path when one L x L float32 tensor exceeds this")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for the fraction column")
    parser.add_argument(
        "--out", default=None, help="JSON path (default: benchmarks/attention/results-<device>.json)"
    )
    args = parser.parse_args(argv)
    load_at_start = os.getloadavg()

    dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no CUDA device is visible")
    default_variants = ["sdpa-nobias", "sdpa-bias", "reference-bias"] + (
        ["triton-bias"] if args.device == "cuda" else []
    )
    variants = args.variants.split(",") if args.variants else default_variants
    for name in variants:
        if name not in VARIANTS:
            parser.error(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    info = device_info(args.device)
    peak = args.peak_tflops
    if peak is None:
        if args.device == "cuda":
            peak = next((v.get(dtype) for k, v in GPU_PEAK_TFLOPS.items() if k in info["gpu"]), None)
        else:
            peak = cpu_peak_tflops(dtype)

    rows = []
    for size in args.sizes.split(","):
        tokens, heads = (int(x) for x in size.split(":"))
        for mode in args.modes.split(","):
            for name in variants:
                backend, bias = VARIANTS[name]
                spec = {"device": args.device, "dtype": dtype, "batch": args.batch, "heads": heads, "tokens": tokens,
                        "head_dim": args.head_dim, "mode": mode, "backend": backend, "bias": bias,
                        "warmup": args.warmup, "repeats": args.repeats}  # fmt: skip
                row = {
                    "variant": name,
                    **{k: spec[k] for k in ("tokens", "heads", "batch", "head_dim", "dtype", "mode")},
                }
                limit = {
                    "reference": args.max_reference_gib,
                    "sdpa": args.max_materialised_gib if bias else None,
                }
                gib = bias_bytes(spec) / 2**30
                if limit.get(backend) is not None and gib > limit[backend]:
                    row["skipped"] = (
                        f"one L x L float32 tensor is {gib:.1f} GiB > the {limit[backend]} GiB limit"
                    )
                else:
                    row.update(run_isolated(measure, spec, args.timeout))
                flops = attention_flops(args.batch, heads, tokens, args.head_dim, mode)
                row["flops"] = flops
                if "median_ms" in row:
                    row["tflops_per_s"] = flops / (row["median_ms"] * 1e-3) / 1e12
                    row["fraction_of_peak"] = row["tflops_per_s"] / peak if peak else None
                rows.append(row)
                print(_format(row), flush=True)
    for row in rows:
        base = next((r for r in rows if r["variant"] == BASELINE and r["tokens"] == row["tokens"]
                     and r["mode"] == row["mode"] and "median_ms" in r), None)  # fmt: skip
        if base and "median_ms" in row:
            row["speedup_vs_baseline"] = base["median_ms"] / row["median_ms"]
            row["memory_vs_baseline"] = (
                row["peak_mem_mib"] / base["peak_mem_mib"] if base["peak_mem_mib"] > 0 else None
            )
    info["load_average_at_end"] = os.getloadavg()
    report = {"benchmark": "attention", "command": " ".join(["python", *sys.argv]), "machine": info, "load_average_at_start": load_at_start,
              "peak_tflops": peak, "baseline": BASELINE, "results": rows}  # fmt: skip
    out = Path(args.out or Path(__file__).with_name(f"results-{args.device}.json"))
    out.write_text(json.dumps(report, indent=2))
    print(f"\n{'variant':<15} {'tokens':>6} {'heads':>5} {'mode':<8} {'median ms':>10} {'TFLOP/s':>8} "
          f"{'% peak':>7} {'peak MiB':>9} {'x base':>7}")  # fmt: skip
    for row in rows:
        print(_format(row))
    print(f"peak TFLOP/s used: {peak}; JSON: {out}")
    return report


def _format(row: dict) -> str:
    head = f"{row['variant']:<15} {row['tokens']:>6} {row['heads']:>5} {row['mode']:<8}"
    if "median_ms" not in row:
        return f"{head} {row.get('skipped') or row.get('error')}"
    frac = row.get("fraction_of_peak")
    speed = row.get("speedup_vs_baseline")
    return (f"{head} {row['median_ms']:>10.2f} {row['tflops_per_s']:>8.3f} "
            f"{(f'{100 * frac:.1f}' if frac else '-'):>7} {row['peak_mem_mib']:>9.1f} "
            f"{(f'{speed:.2f}' if speed else '-'):>7}")  # fmt: skip


if __name__ == "__main__":
    main()
