"""Importing a full-size MSG-LD checkpoint, and one guided sampler step at full size, on CPU.

The released weights are not here, so a checkpoint of the released 128-channel eval configuration
is written with random weights in the original Lightning layout (key names, EMA buffers without
dots, vocoder without weight norm, schedule buffers, ``scale_factor``; the keys and shapes the
loader requires, which its tests show equal the released model's). Then, each in a fresh process:

- ``load_msgld_checkpoint`` (wall time and peak resident memory of the process);
- one guided DDIM step's model call at full size: the U-Net on a batch of 2 (conditional and
  unconditional rows, batched CFG) of 4 stems x (8, 256, 16) latents = 10.24 s of audio, float32.

    OMP_NUM_THREADS=2 hatch run python benchmarks/pipelines/bench_msgld_import.py --work /tmp/msgld-bench \\
        --out benchmarks/pipelines/bench_msgld_import.json
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "msgld-parity"


def released_config() -> dict:
    """The fixture's config with the released 128-channel values (as the loader's key-set test)."""
    from stemforge.pipelines.msgld import read_msgld_config

    config = copy.deepcopy(read_msgld_config(FIXTURE / "config.yaml"))
    params = config["model"]["params"]
    params["unet_config"]["params"].update(
        model_channels=128, channel_mult=[1, 2, 3, 5], num_res_blocks=2, num_head_channels=32
    )
    params["first_stage_config"]["params"]["ddconfig"].update(ch=128, ch_mult=[1, 2, 4], num_res_blocks=2)
    params["latent_t_size"] = 256
    return config


def write_checkpoint(path: Path) -> dict:
    import torch

    from stemforge.pipelines.msgld import _settings, msgld_schedule_buffers, msgld_state_dict_shapes
    from stemforge.samplers import NoiseSchedule

    config = released_config()
    shapes = msgld_state_dict_shapes(config)
    schedule = msgld_schedule_buffers(NoiseSchedule(_settings(config, "released").schedule))
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in shapes.items():
        name = key.rsplit(".", 1)[-1]
        if key in schedule:
            state[key] = schedule[key].float()
        elif name == "num_updates":
            state[key] = torch.tensor(3, dtype=torch.int32)
        elif name == "num_batches_tracked":
            state[key] = torch.tensor(0, dtype=torch.int64)
        elif key == "scale_factor":
            state[key] = torch.tensor(0.73)
        elif name == "decay":
            state[key] = torch.tensor(0.9999)
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.02
    torch.save(
        {"state_dict": state, "epoch": 0, "global_step": 0, "pytorch-lightning_version": "1.9.4"}, path
    )
    (path.parent / "config.json").write_text(json.dumps(config))
    unet = sum(math.prod(s) for k, s in shapes.items() if k.startswith("model.diffusion_model."))
    return {"keys": len(shapes), "unet_parameters": unet, "bytes": path.stat().st_size}


def child_import(path: Path) -> None:
    import resource

    from stemforge.pipelines import load_msgld_checkpoint

    config = json.loads((path.parent / "config.json").read_text())
    start = time.perf_counter()
    pipe = load_msgld_checkpoint(path, config)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    params = sum(p.numel() for p in pipe.unet.parameters())
    print(json.dumps({"import_seconds": seconds, "peak_rss_bytes": peak, "unet_parameters": params}))


def child_step(path: Path, repeats: int) -> None:
    import torch

    from stemforge.pipelines import load_msgld_checkpoint

    config = json.loads((path.parent / "config.json").read_text())
    unet = load_msgld_checkpoint(path, config).unet
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 256, 16, generator=gen)
    mix = torch.randn(2, 8, 256, 16, generator=gen)
    mix[1] = 0.0  # the unconditional row: the original feeds a zero mixture
    t = torch.tensor([500, 500])
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            unet(x, t, {"mix_latent": mix})
            times.append(time.perf_counter() - start)
    print(json.dumps({"guided_step_seconds": times, "threads": torch.get_num_threads()}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--work", type=Path, required=True, help="folder for the full-size checkpoint (about 2.7 GB)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--child", choices=("import", "step"))
    args = parser.parse_args()
    ckpt = args.work / "msgld-random.ckpt"
    if args.child == "import":
        child_import(ckpt)
        return 0
    if args.child == "step":
        child_step(ckpt, args.repeats)
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    written = write_checkpoint(ckpt)
    written["write_seconds"] = time.perf_counter() - start
    results = {"checkpoint": written}
    for child in ("import", "step"):
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--work",
                str(args.work),
                "--out",
                str(args.out),
                "--child",
                child,
                "--repeats",
                str(args.repeats),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        results[child] = json.loads(proc.stdout.strip().splitlines()[-1])
    results["machine"] = {"cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg()}
    results["command"] = " ".join(sys.argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    ckpt.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
