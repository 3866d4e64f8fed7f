"""stemforge-train end to end: two real CPU processes (gloo) with DeepSpeed ZeRO-2, real models and
real rendered audio. Kill-and-resume must continue the uninterrupted loss curve exactly, and an
exported checkpoint loaded in a fresh process must give the trained network's outputs exactly.

The runs use ``optim.ema_decay=0``, so ``ema.safetensors`` holds a copy of the live (all-gathered)
working weights taken by the EMA code: a reference for the consolidated ``model.safetensors`` and the
export that does not go through the ZeRO consolidation.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "stemforge.train.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def codec_args(out_dir: Path, *extra: str) -> list[str]:
    return [
        "fit",
        str(ROOT / "configs" / "tiny-waveform-ae.yaml"),
        "--set",
        f"run.out_dir={out_dir}",
        "--set",
        f"data.train_tracks=[{FIXTURE}]",
        "--set",
        f"data.val_tracks=[{FIXTURE}]",
        "--set",
        "data.segment_seconds=0.256",
        "--set",
        "run.batch_size=1",
        "--set",
        "run.log_every=1",
        "--set",
        "run.val_every=3",
        "--set",
        "run.ckpt_every=3",
        "--set",
        "run.progress=false",
        "--set",
        "dist.devices=2",
        "--set",
        "optim.ema_decay=0.0",
        *extra,
    ]


def train_losses(out_dir: Path) -> dict[int, float]:
    with (out_dir / "metrics.csv").open() as fh:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(fh) if r["split"] == "train"}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    proc = run_cli(*codec_args(out, "--set", "run.max_steps=9"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def test_two_processes_zero2_train_and_checkpoint(uninterrupted):
    losses = train_losses(uninterrupted)
    assert sorted(losses) == list(range(1, 10))
    assert all(torch.isfinite(torch.tensor(v)) for v in losses.values())
    ckpts = sorted(p.name for p in (uninterrupted / "checkpoints").glob("step-*"))
    assert ckpts == ["step-00000006", "step-00000009"]  # keep_last = 2
    files = sorted(p.name for p in (uninterrupted / "checkpoints" / "step-00000009").iterdir())
    assert files == ["ema.safetensors", "meta.json", "model.safetensors", "optimizer.safetensors"]
    # No pickle anywhere: every file is well-formed safetensors or JSON, none starts like a
    # torch.save zip or a pickle stream.
    from stemforge.train.checkpoint import check_checkpoint_files

    for ckpt in (uninterrupted / "checkpoints").glob("step-*"):
        check_checkpoint_files(ckpt)
        for path in ckpt.iterdir():
            head = path.read_bytes()[:2]
            assert head != b"PK" and head[:1] != b"\x80", path


def test_kill_and_resume_equals_uninterrupted(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stemforge.train.cli", *codec_args(out, "--set", "run.max_steps=100000")],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "latest").is_file():
            assert proc.poll() is None, "the run ended before writing a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # both ranks, mid-training
        proc.wait()
    resumed_from = int((out / "checkpoints" / "latest").read_text().strip().removeprefix("step-"))
    assert resumed_from < 9, "the killed run got too far to compare; nothing to resume"
    proc2 = run_cli(*codec_args(out, "--set", "run.max_steps=9"))
    assert proc2.returncode == 0, proc2.stderr[-4000:]
    assert "resumed from" in proc2.stderr
    expected = train_losses(uninterrupted)
    resumed = train_losses(out)
    assert sorted(resumed) == list(range(1, 10))
    for step in range(resumed_from + 1, 10):
        assert resumed[step] == expected[step], (step, resumed[step], expected[step])


def test_export_then_fresh_process_gives_identical_outputs(uninterrupted, tmp_path):
    export_dir = tmp_path / "export"
    proc = run_cli("export", str(uninterrupted), str(export_dir), "--weights", "raw")
    assert proc.returncode == 0, proc.stderr[-4000:]
    probe = tmp_path / "probe.pt"
    torch.manual_seed(1)
    wave = torch.randn(2, 4096) * 0.1
    torch.save(wave, probe)
    script = (
        "import sys, torch\n"
        "from stemforge.train.checkpoint import load_exported\n"
        "model, config = load_exported(sys.argv[1])\n"
        "x = torch.load(sys.argv[2])\n"
        "with torch.no_grad():\n"
        "    torch.save(model(x), sys.argv[3])\n"
    )
    out_file = tmp_path / "out.pt"
    fresh = subprocess.run(
        [sys.executable, "-c", script, str(export_dir), str(probe), str(out_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert fresh.returncode == 0, fresh.stderr[-4000:]
    # Reference: the live weights at step 9 as the EMA code copied them (decay 0), not consolidated.
    from safetensors.torch import load_file

    from stemforge.codec import WaveformAutoencoder, WaveformAutoencoderConfig

    reference = WaveformAutoencoder(WaveformAutoencoderConfig.from_name("tiny"))
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    ema = load_file(uninterrupted / "checkpoints" / "step-00000009" / "ema.safetensors")
    live = {k.removeprefix("ema."): v for k, v in ema.items() if k.startswith("ema.")}
    reference.load_state_dict(live, strict=True)
    assert any(not torch.equal(initial[k], v) for k, v in reference.state_dict().items())
    with torch.no_grad():
        expected = reference.eval()(wave)
    assert torch.equal(torch.load(out_file), expected)


def test_float16_export_stores_half_and_loads_the_rounded_weights(uninterrupted, tmp_path):
    from safetensors import safe_open

    from stemforge.train.checkpoint import load_exported

    export_dir = tmp_path / "export16"
    proc = run_cli("export", str(uninterrupted), str(export_dir), "--weights", "raw", "--dtype", "float16")
    assert proc.returncode == 0, proc.stderr[-4000:]
    with safe_open(export_dir / "model.safetensors", framework="pt") as fh:
        stored = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open has no iterator)
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    model, config = load_exported(export_dir)
    assert config["storage_dtype"] == "float16"
    loaded = model.state_dict()
    for name, value in stored.items():
        assert loaded[name].dtype == torch.float32
        assert torch.equal(loaded[name], value.float()), name
    full, _ = load_exported(_export_raw(uninterrupted, tmp_path / "export32"))
    rounded = {k: v.half().float() for k, v in full.state_dict().items()}
    assert any(not torch.equal(rounded[k], v) for k, v in full.state_dict().items())
    assert all(torch.equal(rounded[k], loaded[k]) for k in rounded)


def _export_raw(run: Path, out: Path) -> Path:
    proc = run_cli("export", str(run), str(out), "--weights", "raw")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


@pytest.mark.slow
def test_overfit_fixed_batch(tmp_path):
    out = tmp_path / "overfit"
    proc = run_cli(
        *codec_args(
            out,
            "--set",
            "run.max_steps=40",
            "--set",
            "run.fixed_batch=true",
            "--set",
            "run.val_every=0",
            "--set",
            "run.ckpt_every=1000",
            "--set",
            "optim.lr=3e-3",
        )
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    losses = train_losses(out)
    first = sum(losses[s] for s in (1, 2, 3)) / 3
    last = sum(losses[s] for s in (38, 39, 40)) / 3
    assert last < 0.6 * first, (first, last)
