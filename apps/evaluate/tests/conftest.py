"""Shared by the evaluation tests: one thread per process, a real two-process launch and two short
tracks of rendered chorale audio."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_demo_16k"
STEMS = ("soprano", "alto", "tenor", "bass")


@pytest.fixture(scope="module")
def stem_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tracks of 4 s (one MSDM window each) cut from the held-out chorale fixture (rendered by
    stemforge-data), one folder per track (MUSDB style)."""
    root = tmp_path_factory.mktemp("set")
    for k in range(2):
        (root / f"track{k}").mkdir()
        for stem in STEMS:
            audio, rate = sf.read(CHORALE / f"{stem}.flac", dtype="float32")
            sf.write(root / f"track{k}" / f"{stem}.flac", audio[4 * k * rate : 4 * (k + 1) * rate], rate)
    return root


@pytest.fixture
def one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """One thread per process in both runs: float sums depend on the thread count."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _accelerate_launch(*args: str) -> subprocess.CompletedProcess[str]:
    """Two real processes (torchrun + gloo on CPU; accelerate's own --cpu multi-process path needs MPI)."""
    launcher = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += [
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "stemforge.evaluate.cli",
        *args,
        "--cpu",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


@pytest.fixture
def accelerate_launch() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``accelerate_launch(*cli_args)``: ``stemforge-evaluate`` as two processes."""
    return _accelerate_launch
