"""Per-step overhead of every stemforge sampler beyond the model call, on CPU.

Each sampler runs with a "free" model (it returns a precomputed tensor, so the model costs
nothing) on MSG-LD's latent (1, 4, 8, 256, 16); the sampler's own work per step (schedule terms,
conversions, noise, guidance arithmetic, replacement, constraints, grounding) is the median time of
the whole run divided by its model calls (the fastest run is reported too: on a shared machine it
shows the intrinsic cost where load spikes inflate the median). The reference is one forward pass of a real network on
the same latent: stemforge-unet3d's ``tiny`` preset when it is importable (batch 1, and batch 2 for
the CFG rows), else a small 3-D conv stack (named in the output).

Usage: python benchmarks/samplers/bench_samplers.py [--steps 20] [--repeats 5] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from stemforge.samplers import (
    ClassifierFreeGuidance,
    NoiseSchedule,
    StyleGrounding,
    __version__,
    ddim_sample,
    ddpm_sample,
    dpm_solver_pp_2m_sample,
    inpaint_sample,
    msdm_dirac_separate,
    msdm_gaussian_separate,
)

SHAPE = (1, 4, 8, 256, 16)


class FreeModel:
    """Returns a precomputed prediction of the input's shape: the model call costs ~nothing."""

    def __init__(self) -> None:
        self.outputs: dict[tuple[int, ...], torch.Tensor] = {}
        self.calls = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: dict | None) -> torch.Tensor:
        self.calls += 1
        key = tuple(x.shape)
        if key not in self.outputs:
            self.outputs[key] = torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(x.dtype)
        return self.outputs[key]


def reference_network() -> tuple[str, Callable[[torch.Tensor, torch.Tensor, dict | None], torch.Tensor]]:
    try:
        from stemforge.unet3d import UNet3D, UNet3DConfig

        net = UNet3D(UNet3DConfig.from_name("tiny")).eval()
        params = sum(p.numel() for p in net.parameters())
        return f"stemforge-unet3d tiny ({params / 1e6:.2f}M parameters)", net
    except Exception as err:  # the U-Net package is absent or broken: fall back, and say so
        print(f"stemforge-unet3d tiny unavailable ({err}); using a 3-D conv stack")
        stack = torch.nn.Sequential(
            torch.nn.Conv3d(4, 32, 3, padding=1),
            torch.nn.SiLU(),
            torch.nn.Conv3d(32, 32, 3, padding=1),
            torch.nn.SiLU(),
            torch.nn.Conv3d(32, 4, 3, padding=1),
        ).eval()

        def conv(x: torch.Tensor, t: torch.Tensor, cond: dict | None) -> torch.Tensor:
            return stack(x)  # stems as channels, (C, T, F) as the 3-D volume

        return "3-D conv stack (4 -> 32 -> 32 -> 4 channels, 3x3x3)", conv


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, list[float]]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--net-repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    args = parser.parse_args()

    schedule = NoiseSchedule.from_name("msgld")
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn(SHAPE, generator=gen)
    given = torch.randn(SHAPE, generator=gen)
    stem_mask = torch.tensor([[True, True, False, False]])
    mixture = given.sum(1)
    cond = {"mix_latent": mixture / 4}
    reference_style = torch.randn(1, 4, 8, 300, 16, generator=gen)
    n = args.steps

    cases: dict[str, tuple[Callable[[FreeModel], object], int]] = {
        "ddpm": (
            lambda m: ddpm_sample(m, x_T, schedule, num_steps=n, generator=torch.Generator().manual_seed(1)),
            1,
        ),
        "ddim eta=1": (
            lambda m: ddim_sample(
                m, x_T, schedule, num_steps=n, eta=1.0, generator=torch.Generator().manual_seed(1)
            ),
            1,
        ),
        "ddim eta=0": (lambda m: ddim_sample(m, x_T, schedule, num_steps=n, eta=0.0), 1),
        "dpm-solver++(2m)": (lambda m: dpm_solver_pp_2m_sample(m, x_T, schedule, num_steps=n), 1),
        "ddim + cfg w=2": (
            lambda m: ddim_sample(
                ClassifierFreeGuidance(m, 2.0),
                x_T,
                schedule,
                num_steps=n,
                cond=cond,
                generator=torch.Generator().manual_seed(1),
            ),
            2,
        ),
        "ddim + cfg w=2 rescale 0.7": (
            lambda m: ddim_sample(
                ClassifierFreeGuidance(m, 2.0, rescale=0.7),
                x_T,
                schedule,
                num_steps=n,
                cond=cond,
                generator=torch.Generator().manual_seed(1),
            ),
            2,
        ),
        "ddim + style grounding": (
            lambda m: ddim_sample(
                m,
                x_T,
                schedule,
                num_steps=n,
                denoised_fn=StyleGrounding(reference_style, 0.5),
                generator=torch.Generator().manual_seed(1),
            ),
            1,
        ),
        "inpainting": (
            lambda m: inpaint_sample(
                m, x_T, schedule, given, stem_mask, num_steps=n, generator=torch.Generator().manual_seed(1)
            ),
            1,
        ),
        "msdm dirac": (
            lambda m: msdm_dirac_separate(
                m, mixture, x_T, schedule, num_steps=n, generator=torch.Generator().manual_seed(1)
            ),
            1,
        ),
        "msdm gaussian (sum)": (
            lambda m: msdm_gaussian_separate(
                m, mixture, x_T, schedule, num_steps=n, generator=torch.Generator().manual_seed(1)
            ),
            1,
        ),
        "msdm gaussian (callable)": (
            lambda m: msdm_gaussian_separate(
                m,
                mixture,
                x_T,
                schedule,
                num_steps=n,
                mixing=lambda s: s.sum(1),
                generator=torch.Generator().manual_seed(1),
            ),
            1,
        ),
    }

    net_name, net = reference_network()
    net_times: dict[int, float] = {}
    with torch.no_grad():
        for batch in (1, 2):
            x = x_T.expand(batch, *SHAPE[1:]).contiguous()
            t = torch.full((batch,), 500.0)
            c = {"mix_latent": cond["mix_latent"].expand(batch, *SHAPE[2:]).contiguous()}
            net_times[batch], _ = median_time(lambda x=x, t=t, c=c: net(x, t, c), args.net_repeats)

    rows = []
    for name, (run, batch) in cases.items():
        model = FreeModel()
        run(model)  # counts the calls of one run
        calls = model.calls
        model.calls = 0
        total, times = median_time(lambda run=run, model=model: run(model), args.repeats)
        per_step = total / calls
        rows.append(
            {
                "sampler": name,
                "model_calls": calls,
                "overhead_ms_per_step": 1e3 * per_step,
                "overhead_min_ms_per_step": 1e3 * min(times) / calls,
                "network_ms_per_step": 1e3 * net_times[batch],
                "overhead_percent_of_network": 100 * per_step / net_times[batch],
                "runs_s": times,
            }
        )

    print(
        f"reference network: {net_name}; latent {SHAPE}; {n} steps; median of {args.repeats} runs after 1 warm-up"
    )
    print(
        f"{'sampler':<28} {'calls':>5} {'overhead ms/step':>17} {'(fastest run)':>14} "
        f"{'network ms/step':>16} {'overhead %':>11}"
    )
    for row in rows:
        print(
            f"{row['sampler']:<28} {row['model_calls']:>5} {row['overhead_ms_per_step']:>17.2f} "
            f"{row['overhead_min_ms_per_step']:>14.2f} "
            f"{row['network_ms_per_step']:>16.1f} {row['overhead_percent_of_network']:>10.3f}%"
        )
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average": os.getloadavg(),
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "stemforge-samplers": __version__,
        },
        "shape": list(SHAPE),
        "steps": n,
        "repeats": args.repeats,
        "reference_network": net_name,
        "network_ms": {str(b): 1e3 * s for b, s in net_times.items()},
        "rows": rows,
    }
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
