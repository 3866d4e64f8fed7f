"""A NaN loss stops the run: exit code 3, the message names the step and the last good checkpoint.

The NaN comes from data, as in practice: one item of a latent cache holds NaN (the cache writer
refuses NaN; this cache is written by hand to simulate a corrupted file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from stemforge.train.sampler import ShardedBatchSampler

ROOT = Path(__file__).resolve().parents[2]
STEMS = ["soprano", "alto", "tenor", "bass"]


def test_nan_loss_stops_with_step_and_last_checkpoint(tmp_path):
    torch.manual_seed(0)
    items, bad = 8, 5
    stems = torch.randn(items, 4, 8, 32, 16)
    stems[bad, 2, 0, 3, 4] = float("nan")
    split = tmp_path / "cache" / "train"
    split.mkdir(parents=True)
    save_file({"stems": stems, "mix": torch.randn(items, 8, 32, 16)}, split / "shard-00000.safetensors")
    (split / "index.json").write_text(
        json.dumps({"stem_names": STEMS, "shards": [{"file": "shard-00000.safetensors", "items": items}]})
    )
    # The step at which item `bad` arrives, from the loop's own data order (seed 0, batch 2, 1 rank).
    sampler = ShardedBatchSampler(items, 2, 0, 1, seed=0)
    nan_step = next(b + 1 for b in range(sampler.batches_per_epoch) if bad in sampler.batch_indices(0, b))

    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stemforge.train.cli",
            "fit",
            str(ROOT / "configs" / "tiny-ldm.yaml"),
            "--set",
            f"data.latent_cache={tmp_path / 'cache'}",
            "--set",
            f"run.out_dir={out}",
            "--set",
            "dist.devices=1",
            "--set",
            "run.max_steps=8",
            "--set",
            "run.ckpt_every=1",
            "--set",
            "run.val_every=0",
            "--set",
            "run.progress=false",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 3, proc.stderr[-4000:]
    assert f"non-finite loss (nan) at step {nan_step}" in proc.stderr
    if nan_step > 1:
        assert f"last good checkpoint: {out / 'checkpoints' / f'step-{nan_step - 1:08d}'}" in proc.stderr
    else:
        assert "none (no checkpoint written yet)" in proc.stderr
    assert not (out / "checkpoints" / f"step-{nan_step:08d}").exists()
