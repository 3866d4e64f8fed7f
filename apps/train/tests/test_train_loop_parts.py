"""The loop's parts against obviously correct references: data order, EMA, warm-up, checkpoint files."""

import itertools
import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from stemforge.train.checkpoint import (
    CheckpointError,
    finalize_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    resolve_checkpoint,
)
from stemforge.train.ema import EMA
from stemforge.train.lr import scheduled_lr, warmup_lr
from stemforge.train.sampler import DataPosition, ShardedBatchSampler


def test_ranks_partition_each_epoch_and_resume_continues_the_order():
    n, batch, world = 23, 2, 2
    samplers = [ShardedBatchSampler(n, batch, r, world, seed=5) for r in range(world)]
    per_epoch = samplers[0].batches_per_epoch
    assert per_epoch == n // (batch * world)
    for epoch in range(3):
        seen = [i for s in samplers for b in range(per_epoch) for i in s.batch_indices(epoch, b)]
        assert len(seen) == len(set(seen)) == per_epoch * batch * world
    # Uninterrupted stream of rank 1 vs. a stream resumed from the position after 7 batches.
    it = iter(samplers[1])
    full = [next(it) for _ in range(12)]
    pos = DataPosition()
    for _ in range(7):
        pos = samplers[1].advance(pos)
    resumed = ShardedBatchSampler(n, batch, 1, world, seed=5, position=pos)
    it2 = iter(resumed)
    assert [next(it2) for _ in range(5)] == full[7:]
    assert pos == DataPosition(7 // per_epoch, 7 % per_epoch)


def test_sampler_rejects_dataset_smaller_than_a_global_batch():
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ShardedBatchSampler(3, 2, 0, 2, seed=0)


def test_ema_matches_a_float64_reference():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    ema = EMA(model, decay=0.99)
    ref = {n: p.detach().double().clone() for n, p in model.named_parameters()}
    for k in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        d = min(0.99, (1 + k) / (10 + k))
        for n, p in model.named_parameters():
            ref[n] = d * ref[n] + (1 - d) * p.detach().double()
        ema.update(model)
    for name, shadow in ema.items():
        torch.testing.assert_close(shadow.double(), ref[name], rtol=1e-5, atol=1e-5)
    restored = EMA(model, decay=0.99)
    restored.load_state_tensors(ema.state_tensors())
    assert restored.num_updates == 30
    for name, shadow in restored.items():
        assert torch.equal(shadow, ema.shadow[name])


def test_ema_state_must_match_the_model():
    ema = EMA(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="does not match"):
        ema.load_state_tensors({"ema.other": torch.ones(1), "num_updates": torch.tensor(0)})


def test_warmup_is_linear_then_constant():
    assert [warmup_lr(1.0, s, 4) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_lr(3e-5, 0, 0) == 3e-5


def test_cosine_decay_follows_the_warm_up_to_the_floor_and_stays_there():
    lrs = [scheduled_lr(1.0, s, 2, decay="cosine", decay_steps=6, min_lr_ratio=0.1) for s in range(9)]
    # Warm-up (0.5, 1.0), then a half cosine over steps 2..6 from 1.0 to 0.1, then the floor.
    assert lrs[:3] == [0.5, 1.0, 1.0]
    assert lrs[4] == pytest.approx(0.55)
    assert lrs[6:] == pytest.approx([0.1, 0.1, 0.1])
    assert all(a >= b for a, b in itertools.pairwise(lrs[1:]))
    assert [scheduled_lr(2.0, s, 2) for s in range(4)] == [warmup_lr(2.0, s, 2) for s in range(4)]
    with pytest.raises(ValueError, match="unknown learning-rate decay 'linear'"):
        scheduled_lr(1.0, 5, 2, decay="linear")


def test_finalize_is_atomic_and_keeps_the_last_n(tmp_path):
    root = tmp_path / "checkpoints"
    root.mkdir()
    ema = {"ema.w": torch.randn(3), "num_updates": torch.tensor(1)}
    for step in (1, 2, 3, 4):
        tmp = root / f".step-{step:08d}.tmp"
        finalize_checkpoint(root, tmp, step, {"step": step}, {"ema.safetensors": ema}, keep_last=2)
    assert [p.name for p in list_checkpoints(root)] == ["step-00000003", "step-00000004"]
    assert latest_checkpoint(root) == root / "step-00000004"
    assert json.loads((root / "step-00000004" / "meta.json").read_text())["step"] == 4
    # A stale .tmp of the same step (a run killed while writing) is replaced, not merged.
    stale = root / ".step-00000005.tmp"
    (stale / "checkpoint").mkdir(parents=True)
    finalize_checkpoint(root, stale, 5, {"step": 5}, {"ema.safetensors": ema}, keep_last=2)
    assert sorted(p.name for p in (root / "step-00000005").iterdir()) == ["ema.safetensors", "meta.json"]
    shutil.rmtree(root / "step-00000005")
    (root / "latest").write_text("step-00000004\n")
    # An interrupted write (a .tmp folder, no meta.json) is never picked up.
    (root / ".step-00000005.tmp").mkdir()
    (root / "step-00000006").mkdir()
    (root / "latest").unlink()
    assert latest_checkpoint(root) == root / "step-00000004"
    assert resolve_checkpoint(tmp_path) == root / "step-00000004"
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        resolve_checkpoint(tmp_path / "nothing")


def test_init_from_reads_the_network_of_a_shipped_pipeline_folder():
    """``run.init_from`` continues from a pipeline folder: the multitrack pipeline's ``unet/`` for an
    LDM, the voice-insertion pipeline's ``network/`` for a MIDI model; another kind is refused."""
    import json

    from safetensors.torch import load_file

    from stemforge.train.engine import init_from_export
    from stemforge.unet3d import UNet3D, UNet3DConfig

    shipped = Path(__file__).resolve().parents[2] / "insert" / "src" / "stemforge" / "insert" / "checkpoints"
    config = json.loads((shipped / "demo-audio" / "unet" / "config.json").read_text())
    unet = UNet3D(UNet3DConfig.from_dict(config))
    stored = load_file(shipped / "demo-audio" / "unet" / "model.safetensors")
    assert any(not torch.equal(unet.state_dict()[k], stored[k].float()) for k in stored)
    init_from_export(unet, shipped / "demo-audio", "ldm")
    assert all(torch.equal(unet.state_dict()[k], stored[k].float()) for k in stored)
    assert all(v.dtype == torch.float32 for v in unet.state_dict().values() if v.is_floating_point())
    with pytest.raises(
        ValueError, match="a 'voice-insertion' pipeline folder holds no network for a 'ldm' run"
    ):
        init_from_export(unet, shipped / "jsb-insertion", "ldm")
