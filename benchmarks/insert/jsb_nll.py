"""Framewise negative log-likelihood of the embedded JSB insertion model on held-out chorales.

Protocol (as stemforge-train's ``midi-nll``, on a subset when CPU time is short): the first window
of ``--length`` 16th-note steps of each of the first ``--limit`` chorales of the split; one random
order of the 4 x length voice tokens per window; exact chain-rule NLL (stemforge-samplers
``chain_rule_nll``), summed over the voices and divided by the number of frames (Coconet's framewise
NLL), averaged over windows, with its standard error.

    python benchmarks/insert/jsb_nll.py --split test --limit 16 --length 32
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from stemforge.insert.embedded import jsb_checkpoint
from stemforge.insert.midi_insert import load_midi_model
from stemforge.midi import load_jsb
from stemforge.samplers import chain_rule_nll, nats_per_frame


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--limit", type=int, default=0, help="first N chorales (0: all)")
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model = load_midi_model(args.checkpoint or jsb_checkpoint())
    chorales = [c for c in load_jsb(args.split) if c.shape[-1] >= args.length]
    if args.limit:
        chorales = chorales[: args.limit]
    windows = torch.stack([c[:, : args.length] for c in chorales])
    start = time.perf_counter()
    with torch.no_grad():
        total = chain_rule_nll(
            model.model, windows, kind="categorical", generator=torch.Generator().manual_seed(args.seed)
        )
    values = nats_per_frame(total, args.length).double()
    result = {
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()},
        "torch": torch.__version__,
        "model": str(model.path),
        "model_step": model.config.get("step"),
        "split": args.split,
        "num_windows": int(values.numel()),
        "window_length": args.length,
        "framewise_nll": float(values.mean()),
        "stderr": float(values.std() / math.sqrt(values.numel())) if values.numel() > 1 else float("nan"),
        "seconds": time.perf_counter() - start,
        "seed": args.seed,
    }
    print(
        f"{args.split}: framewise NLL {result['framewise_nll']:.4f} +- {result['stderr']:.4f} nats "
        f"({result['num_windows']} first windows of {args.length} steps, model step {result['model_step']})"
    )
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
