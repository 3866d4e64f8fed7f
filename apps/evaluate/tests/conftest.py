"""Shared by the evaluation tests: one thread per process, and a real two-process launch."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]


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
