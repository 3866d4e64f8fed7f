"""Checkpoints are safetensors + JSON only, refuse the old pickle format, and do not depend on the world
size or the ZeRO stage that wrote them.

The slow tests train the tiny waveform autoencoder with two real CPU processes (gloo, ZeRO-2) on the
chorale fixture, then load that checkpoint into engines of other sizes and stages in fresh processes.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from stemforge.train.checkpoint import (
    CheckpointError,
    check_checkpoint_files,
    export_checkpoint,
    read_meta,
    resolve_checkpoint,
)

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"


def test_file_check_accepts_safetensors_and_json_only(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    save_file({"w": torch.randn(3, 2), "b": torch.randn(4)}, good / "model.safetensors")
    (good / "meta.json").write_text(json.dumps({"step": 1}))
    check_checkpoint_files(good)

    cases = {
        "torch.save (zip)": lambda p: torch.save({"w": torch.randn(2)}, p / "model.safetensors"),
        "raw pickle": lambda p: (p / "model.safetensors").write_bytes(pickle.dumps({"w": [1.0, 2.0]})),
        "legacy torch.save": lambda p: torch.save(
            {"w": torch.randn(2)}, p / "model.safetensors", _use_new_zipfile_serialization=False
        ),
        "truncated safetensors": lambda p: (p / "model.safetensors").write_bytes(
            (good / "model.safetensors").read_bytes()[:-4]
        ),
        "pickle under another name": lambda p: (p / "extra.pt").write_bytes(pickle.dumps(1)),
        "broken JSON": lambda p: (p / "meta.json").write_text("{"),
        "sub-folder": lambda p: (p / "checkpoint").mkdir(),
    }
    for label, make in cases.items():
        folder = tmp_path / label.replace(" ", "_")
        shutil.copytree(good, folder)
        make(folder)
        with pytest.raises(CheckpointError, match="only safetensors and JSON"):
            check_checkpoint_files(folder)
        assert label


def test_old_pickle_format_is_refused_with_the_reason(tmp_path):
    # stemforge-train 0.1.0's layout: DeepSpeed shards (torch.save) + our EMA and meta.json.
    ckpt = tmp_path / "run" / "checkpoints" / "step-00000003"
    (ckpt / "checkpoint" / "checkpoint").mkdir(parents=True)
    torch.save(
        {"module": {"w": torch.randn(2)}}, ckpt / "checkpoint" / "checkpoint" / "mp_rank_00_model_states.pt"
    )
    save_file({"ema.w": torch.randn(2), "num_updates": torch.tensor(3)}, ckpt / "ema.safetensors")
    (ckpt / "meta.json").write_text(json.dumps({"step": 3, "position": {}, "export": {}}))
    (ckpt.parent / "latest").write_text("step-00000003\n")
    assert resolve_checkpoint(tmp_path / "run") == ckpt
    with pytest.raises(CheckpointError, match=r"pickle\) shards"):
        read_meta(ckpt)
    with pytest.raises(CheckpointError, match=r"stemforge-train 0\.1\.0"):
        export_checkpoint(ckpt, tmp_path / "export", weights="ema")
    assert not (tmp_path / "export").exists()


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stemforge.train.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fit_args(out_dir: Path, *extra: str) -> list[str]:
    sets = [
        f"run.out_dir={out_dir}",
        f"data.train_tracks=[{FIXTURE}]",
        f"data.val_tracks=[{FIXTURE}]",
        "data.segment_seconds=0.256",
        "run.batch_size=1",
        "run.log_every=1",
        "run.val_every=0",
        "run.ckpt_every=3",
        "run.progress=false",
        "dist.devices=2",
        *extra,
    ]
    return ["fit", str(ROOT / "configs" / "tiny-waveform-ae.yaml"), *[a for s in sets for a in ("--set", s)]]


def train_losses(out_dir: Path) -> dict[int, float]:
    with (out_dir / "metrics.csv").open() as fh:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(fh) if r["split"] == "train"}


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zero2") / "run"
    proc = run_cli(*fit_args(out, "run.max_steps=3"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


# Loads a checkpoint into a fresh engine (any world size / stage), gathers it again and compares
# every tensor with the files; then checks that the optimizer really holds the moments (a step
# with them differs from a step with zeroed moments only if they were loaded).
ROUND_TRIP = r"""
import sys, torch
from stemforge.train.checkpoint import read_full_state
from stemforge.train.config import load_config
from stemforge.train.strategy import make_fabric
from stemforge.train.tasks import build_task
from stemforge.train.zero_state import gather_full_state, load_full_state

ckpt, stage, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config = load_config(sys.argv[4], [f"dist.zero_stage={stage}", "dist.devices=1", f"dist.port={port}"])
fabric = make_fabric(config.dist, config.optim, 1, 1)
fabric.launch()
torch.manual_seed(123)  # different initial weights from the run's: they must all be overwritten
task = build_task(config)
with fabric.init_module():
    raw = task.build_model()
optimizer = torch.optim.AdamW(raw.parameters(), lr=1e-3)
model, optimizer = fabric.setup(raw, optimizer)
saved = read_full_state(__import__("pathlib").Path(ckpt))
load_full_state(model, raw, saved, ckpt)
again = gather_full_state(model, raw, keep=True)
assert set(again.weights) == set(saved.weights), "weight names differ"
assert set(again.optimizer) == set(saved.optimizer), sorted(set(again.optimizer) ^ set(saved.optimizer))[:4]
for key, value in saved.weights.items():
    assert torch.equal(again.weights[key], value), key
for key, value in saved.optimizer.items():
    assert torch.equal(again.optimizer[key].to(value.dtype), value), key
print("round trip ok", len(saved.weights), len(saved.optimizer))
"""


@pytest.mark.slow
def test_checkpoint_files_hold_no_pickle_and_the_state_is_whole(two_process_run):
    ckpt = two_process_run / "checkpoints" / "step-00000003"
    check_checkpoint_files(ckpt)
    for path in ckpt.iterdir():
        head = path.read_bytes()[:4]
        assert not head.startswith(b"PK\x03\x04") and not head.startswith(b"\x80"), path
    meta = read_meta(ckpt)
    assert meta["world_size"] == 2 and meta["zero_stage"] == 2 and meta["step"] == 3
    weights = load_file(ckpt / "model.safetensors")
    optim = load_file(ckpt / "optimizer.safetensors")
    from stemforge.codec import WaveformAutoencoder, WaveformAutoencoderConfig

    reference = WaveformAutoencoder(WaveformAutoencoderConfig.from_name("tiny"))
    assert set(weights) == set(reference.state_dict())
    for name, param in reference.named_parameters():
        assert weights[name].shape == param.shape
        assert optim[f"exp_avg.{name}"].shape == param.shape
        # exp_avg_sq > 0 wherever a gradient was ever non-zero; never negative.
        assert (optim[f"exp_avg_sq.{name}"] >= 0).all()
        assert float(optim[f"step.{name}"]) == 3.0
    assert any(float(optim[f"exp_avg_sq.{n}"].abs().sum()) > 0 for n, _ in reference.named_parameters())


@pytest.mark.slow
@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_a_two_process_zero2_checkpoint_loads_exactly_into_one_process_at_any_stage(
    two_process_run, stage, tmp_path
):
    ckpt = two_process_run / "checkpoints" / "step-00000003"
    config = two_process_run / "config.yaml"
    proc = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, str(ckpt), str(stage), str(29700 + stage), str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "round trip ok" in proc.stdout


@pytest.mark.slow
def test_resume_a_two_process_run_in_one_process_continues_training(two_process_run, tmp_path):
    out = tmp_path / "one"
    shutil.copytree(two_process_run, out)
    # One process with twice the micro-batch sees the same global batches (same data position).
    proc = run_cli(*fit_args(out, "run.max_steps=6", "dist.devices=1", "run.batch_size=2"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resumed from" in proc.stderr and "step-00000003" in proc.stderr
    losses = train_losses(out)
    assert sorted(losses) == list(range(1, 7))
    assert all(math.isfinite(v) for v in losses.values())
    meta = read_meta(out / "checkpoints" / "step-00000006")
    assert meta["world_size"] == 1
    # The optimizer continued from the saved moments and step count (3 + 3 steps).
    optim = load_file(out / "checkpoints" / "step-00000006" / "optimizer.safetensors")
    assert {float(v) for k, v in optim.items() if k.startswith("step.")} == {6.0}


@pytest.mark.slow
def test_zero3_kill_free_resume_equals_uninterrupted(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    proc = run_cli(*fit_args(full, "run.max_steps=6", "dist.zero_stage=3"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = run_cli(*fit_args(part, "run.max_steps=3", "dist.zero_stage=3"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = run_cli(*fit_args(part, "run.max_steps=6", "dist.zero_stage=3"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resumed from" in proc.stderr
    expected, resumed = train_losses(full), train_losses(part)
    for step in range(4, 7):
        assert resumed[step] == expected[step], (step, resumed[step], expected[step])
    assert read_meta(part / "checkpoints" / "step-00000006")["zero_stage"] == 3


@pytest.mark.slow
def test_bf16_mixed_resume_equals_uninterrupted(tmp_path):
    # bf16: the model holds bf16 working weights, ZeRO-2 the fp32 masters; both must come back.
    full, part = tmp_path / "full", tmp_path / "part"
    sets = ("dist.precision=bf16-mixed", "dist.devices=1", "run.ckpt_every=1")
    proc = run_cli(*fit_args(full, "run.max_steps=2", *sets), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = run_cli(*fit_args(part, "run.max_steps=1", *sets), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    proc = run_cli(*fit_args(part, "run.max_steps=2", *sets), timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resumed from" in proc.stderr
    assert train_losses(part)[2] == train_losses(full)[2]
    meta = read_meta(part / "checkpoints" / "step-00000002")
    assert meta["precision"] == "bf16-mixed"
    weights = load_file(part / "checkpoints" / "step-00000002" / "model.safetensors")
    assert all(v.dtype == torch.float32 for v in weights.values())  # the fp32 masters, not bf16 copies
    expected = load_file(full / "checkpoints" / "step-00000002" / "model.safetensors")
    assert all(torch.equal(weights[k], expected[k]) for k in expected)


def test_curves_png_is_drawn_beside_the_metrics(two_process_run, tmp_path, capsys):
    """Rank 0 redraws curves.png at each checkpoint; a curve that cannot be drawn is one warning."""
    from stemforge.train.curves import CurvesWriter, read_curves

    png = two_process_run / "curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    curves = read_curves(two_process_run / "metrics.csv")
    assert [s for s, _ in curves["train"]] == [1, 2, 3] and len(curves["lr"]) == 3
    broken = tmp_path / "metrics.csv"
    broken.write_text("step,split,loss,lr,samples_per_s,extra\n1,train,not-a-number,0.1,1.0,\n")
    writer = CurvesWriter(broken)
    writer.update()
    writer.update()
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "curves.png not written" in err
    assert not (tmp_path / "curves.png").exists() and not list(tmp_path.glob(".curves*"))


def test_a_codec_run_exports_flat_by_default(two_process_run, tmp_path, capsys):
    """Without --format, `export` of a codec (waveform_ae) run writes its component folder, the same
    files as ``export_checkpoint``; --codec and --format pipeline have no place there (one line each)."""
    from stemforge.train.checkpoint import load_exported
    from stemforge.train.cli import main

    out = tmp_path / "export"
    assert main(["export", str(two_process_run), str(out)]) == 0
    assert "as model.safetensors + config.json" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    _, config = load_exported(out)
    assert config["task"] == "waveform_ae"
    api = export_checkpoint(two_process_run, tmp_path / "api")
    for name in ("config.json", "model.safetensors"):
        assert (out / name).read_bytes() == (api / name).read_bytes(), name
    for extra, says in (
        (["--codec", str(tmp_path)], ("'waveform_ae' run, exported flat", "leave out --codec")),
        (
            ["--format", "pipeline"],
            ("'waveform_ae' run is a pipeline component", "without --format pipeline"),
        ),
    ):
        assert main(["export", str(two_process_run), str(tmp_path / "refused"), *extra]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and all(part in lines[0] for part in says), lines
        assert not (tmp_path / "refused").exists()
