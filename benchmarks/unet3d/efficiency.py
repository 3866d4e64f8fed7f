"""How close the paper-size U-Net forward runs to the machine's float32 limit, and what a layout change does.

Interleaved in one process (so that load changes hit every variant alike), ``--repeats`` rounds of:

- ``matmul``: ten 2048 x 2048 float32 matmuls, the machine's practical float32 peak;
- ``unet``: one forward of the ``msgld-slakh`` U-Net (random weights, every parameter drawn from
  N(0, 0.02) so that no layer is skipped as zero) on a (B, 4, 8, T, 16) latent with its mixture;
- ``unet_channels_last``: the same weights and input in ``torch.channels_last_3d`` memory format
  (oneDNN's NDHWC convolution path), checked equal to ``unet`` to float32 tolerance first.

FLOPs per forward come from ``bench_unet3d.count_flops``: ``torch.utils.flop_counter`` on the meta
device with the reference attention backend (so the attention matmuls count; the CPU flash kernel
that SDPA runs is invisible to it). Reported: GFLOP/s per
round, medians, the U-Net's fraction of the matmul peak and the channels-last speed ratio.

    OMP_NUM_THREADS=2 hatch run python benchmarks/unet3d/efficiency.py --frames 256 --out benchmarks/unet3d/efficiency.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_common import machine_info
from bench_unet3d import count_flops  # this script's folder, first on sys.path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="msgld-slakh")
    parser.add_argument("--frames", type=int, default=64, help="latent frames T (256 = 10.24 s)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    from stemforge.unet3d import UNet3D, UNet3DConfig

    torch.manual_seed(0)
    plain = UNet3D(UNet3DConfig.from_name(args.preset)).eval().requires_grad_(False)
    for p in plain.parameters():
        p.normal_(0.0, 0.02)
    last = copy.deepcopy(plain).to(memory_format=torch.channels_last_3d)
    stems = plain.config.in_channels
    x = torch.randn(args.batch, stems, 8, args.frames, 16)
    cond = {
        "mix_latent": torch.randn(args.batch, 8, args.frames, 16),
        "drop": torch.zeros(args.batch, dtype=torch.bool),
    }
    t = torch.full((args.batch,), 500)
    x_last = x.contiguous(memory_format=torch.channels_last_3d)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    flops = count_flops(args.preset, args.frames, args.batch)["forward"]
    with torch.no_grad():
        want = plain(x, t, cond)
        got = last(x_last, t, cond)
        error = float((got - want).abs().max() / want.abs().max())
        if error > 1e-4:
            raise SystemExit(f"channels-last forward differs from the plain one: relative error {error:.2e}")
        rounds: dict[str, list[float]] = {"matmul": [], "unet": [], "unet_channels_last": []}
        for _ in range(args.repeats):
            start = time.perf_counter()
            for _ in range(10):
                a @ b
            rounds["matmul"].append(10 * 2 * 2048**3 / (time.perf_counter() - start) / 1e9)
            for name, model, inp in (("unet", plain, x), ("unet_channels_last", last, x_last)):
                start = time.perf_counter()
                model(inp, t, cond)
                rounds[name].append(flops / (time.perf_counter() - start) / 1e9)
    med = {k: statistics.median(v) for k, v in rounds.items()}
    result = {
        "command": "python benchmarks/unet3d/efficiency.py " + " ".join(sys.argv[1:]),
        "preset": args.preset,
        "latent": [args.batch, stems, 8, args.frames, 16],
        "forward_tflop": flops / 1e12,
        "channels_last_relative_error": error,
        "gflops_per_s": rounds,
        "median_gflops_per_s": med,
        "median_forward_s": {k: flops / 1e9 / med[k] for k in ("unet", "unet_channels_last")},
        "unet_fraction_of_matmul_peak": med["unet"] / med["matmul"],
        "channels_last_speedup": med["unet_channels_last"] / med["unet"],
        "machine": machine_info("cpu"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "median_gflops_per_s",
                    "median_forward_s",
                    "unet_fraction_of_matmul_peak",
                    "channels_last_speedup",
                )
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
