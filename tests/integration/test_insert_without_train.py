"""stemforge-insert installs from its own wheel (tools/release.py: sdist, wheel, sibling wheels, a
fresh virtual environment) without stemforge-train or DeepSpeed, and runs `separate` and `midi` on
its shipped models there."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import release  # noqa: E402


@pytest.mark.slow
def test_insert_wheel_runs_separate_and_midi_without_train_or_deepspeed(tmp_path: pathlib.Path) -> None:
    env_dir = tmp_path / "venv"
    result = release.release(ROOT / "apps" / "insert", tmp_path / "dist", env_dir)
    assert result["version"]
    python, cli = env_dir / "bin" / "python", env_dir / "bin" / "stemforge-insert"
    for module in ("stemforge.train", "deepspeed", "lightning_fabric"):
        probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True)
        assert probe.returncode != 0, f"{module} is installed with stemforge-insert"
    out = tmp_path / "out"
    midi = subprocess.run(
        [str(cli), "midi", "--example", "--stem", "alto", "--quiet", "--out", str(out / "alto.mid")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert midi.returncode == 0, midi.stderr
    assert (out / "alto.mid").stat().st_size > 0 and (out / "alto.png").is_file()
    mix = ROOT / "tests" / "fixtures" / "audio" / "chorale_demo_16k" / "mix.flac"
    sep = subprocess.run(
        [str(cli), "separate", str(mix), "--steps", "4", "--quiet", "--out", str(out / "sep")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert sep.returncode == 0, sep.stderr
    assert sorted(p.name for p in (out / "sep").iterdir()) == [
        "alto.wav",
        "bass.wav",
        "soprano.wav",
        "tenor.wav",
    ]
