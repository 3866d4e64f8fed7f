"""Training-step throughput of the JSB insertion model on CPU: planar convolutions against the
plain 3x3x3 Conv3d path, at one thread per process (what `stemforge-train fit` gives each of its two
gloo processes on a 2-core machine).

One step = masked_diffusion_loss forward + backward + AdamW update on a batch of 32-step SATB crops,
with the instruction input (pooled 384-d vectors) when the preset has one. Median of ``--repeats``
timed steps after two warm-up steps; both variants run in the same process, alternately.

    python benchmarks/insert/jsb_train_step.py --out benchmarks/insert/jsb_train_step.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from stemforge.samplers.masked_discrete import masked_diffusion_loss
from stemforge.train.tasks.midi import VoiceInsertionModel, VoiceModelConfig, text_cond


def plain_conv3d(model: VoiceInsertionModel) -> VoiceInsertionModel:
    for module in model.unet.modules():
        if isinstance(module, nn.Conv3d):
            module.__class__ = nn.Conv3d
    return model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="jsb-small-text")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = VoiceModelConfig.from_name(args.preset)
    variants = {"planar (shipped)": VoiceInsertionModel(config)}
    variants["Conv3d"] = plain_conv3d(VoiceInsertionModel(config))
    variants["Conv3d"].load_state_dict(variants["planar (shipped)"].state_dict())
    optims = {k: torch.optim.AdamW(m.parameters(), 1e-3) for k, m in variants.items()}
    x = torch.randint(config.pitch_low, config.pitch_high + 1, (args.batch_size, 4, 32))
    cond = text_cond(torch.randn(args.batch_size, config.text_dim)) if config.text_dim else None
    times: dict[str, list[float]] = {k: [] for k in variants}
    for i in range(args.repeats + 2):
        for name, model in variants.items():
            gen = torch.Generator().manual_seed(i)
            start = time.perf_counter()
            loss = masked_diffusion_loss(model, x, cond=cond, generator=gen)
            loss.backward()
            optims[name].step()
            optims[name].zero_grad()
            if i >= 2:
                times[name].append(time.perf_counter() - start)
    params = sum(p.numel() for p in variants["planar (shipped)"].parameters())
    rows = {}
    print(f"| variant | step (ms, median of {args.repeats}) | samples/s | speed-up |")
    print("|---|---|---|---|")
    base = statistics.median(times["Conv3d"])
    for name, values in times.items():
        median = statistics.median(values)
        rows[name] = {"step_s": median, "samples_per_s": args.batch_size / median, "speedup": base / median}
        print(f"| {name} | {median * 1000:.0f} | {args.batch_size / median:.1f} | {base / median:.2f}x |")
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": args.threads,
        },
        "torch": torch.__version__,
        "preset": args.preset,
        "parameters": params,
        "batch_size": args.batch_size,
        "crop": [4, 32],
        "bins": config.bins,
        "repeats": args.repeats,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
