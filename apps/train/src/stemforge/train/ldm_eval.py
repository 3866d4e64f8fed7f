"""Validation losses of an exported conditioned LDM with each input given or replaced by its learned
null: how much the instruction (subtractive mode) or the style reference (accompaniment with a
style encoder) lowers the denoising loss on held-out data.

    python -m stemforge.train.ldm_eval CONFIG.yaml EXPORT_DIR [--batches 4] [--set key=value ...]

``EXPORT_DIR`` is a flat export of the run (``stemforge-train export RUN EXPORT_DIR --format flat``).

Each condition is scored on the same ``run.batch_size`` x ``batches`` validation items with the
same timesteps and noise (the loop's validation seeds), so the differences come from the inputs only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from stemforge.train.checkpoint import load_exported
from stemforge.train.config import TrainConfig, load_config
from stemforge.train.engine import step_seed
from stemforge.train.tasks.ldm import LDMTask, ValCondition


def conditioning_val_losses(
    config: TrainConfig,
    export_dir: Path,
    conditions: Sequence[ValCondition] = ("full", "null_text", "null"),
    *,
    batches: int = 4,
) -> dict[str, float]:
    """Mean validation loss of the exported model under each of ``conditions``."""
    task = LDMTask(config)
    if not task.conditioned:
        raise ValueError(f"{export_dir}: model.mode = {task.mode} has no text or style input to ablate")
    dataset = task.val_dataset()
    if dataset is None:
        raise ValueError("the config has no validation split (data.slakh_root/validation or data.val_tracks)")
    model, _ = load_exported(Path(export_dir))
    size = config.run.batch_size
    count = min(batches, len(dataset) // size)  # type: ignore[arg-type]
    losses: dict[str, float] = {}
    with torch.no_grad():
        for condition in conditions:
            task.val_condition = condition
            total = 0.0
            for i in range(count):
                batch = task.collate([dataset[j] for j in range(i * size, (i + 1) * size)])
                gen = torch.Generator().manual_seed(step_seed(config.run.seed + 7, 0, 0, i))
                loss, _ = task.loss(model, batch, gen)
                total += float(loss)
            losses[condition] = total / max(count, 1)
    return losses


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stemforge.train.ldm_eval", description=__doc__)
    parser.add_argument("config")
    parser.add_argument("export")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides)
    text = dict(config.model).get("mode") == "subtractive"
    conditions: tuple[ValCondition, ...] = ("full", "null_text" if text else "null_style", "null")
    losses = conditioning_val_losses(config, Path(args.export), conditions, batches=args.batches)
    print(f"{'condition':<12} val loss ({args.export}, {args.batches} batches of {config.run.batch_size})")
    for condition, value in losses.items():
        print(f"{condition:<12} {value:.4f}")
    print(json.dumps({"export": args.export, "run": dataclasses.asdict(config.run), "losses": losses}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
