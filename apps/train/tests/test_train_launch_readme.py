"""The README's ``data`` commands run as written (real processes, real SoundFont rendering)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import soundfile as sf
import yaml

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "apps" / "train" / "README.md"


def data_commands() -> list[list[str]]:
    section = README.read_text().split("## Data commands", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_data_render_and_info_run_as_written(tmp_path):
    commands = data_commands()
    assert [c[:3] for c in commands] == [
        ["stemforge-train", "data", "render"],
        ["stemforge-train", "data", "info"],
    ]
    out = tmp_path / "jsb-rendered"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    outputs = []
    for command in commands:
        command = [str(out) if a == "runs/jsb-rendered" else a for a in command]
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-4000:]
        outputs.append(proc.stdout)
    # The layout the README describes.
    tracks = sorted(p.name for p in (out / "validation").iterdir())
    assert tracks == ["Track00001", "Track00002"]
    track = out / "validation" / "Track00001"
    for name in ("mix.flac", "all_src.mid", "metadata.yaml", *(f"stems/S0{i}.flac" for i in range(4))):
        assert (track / name).is_file(), name
    meta = yaml.safe_load((track / "metadata.yaml").read_text())
    assert meta["lmd_midi_dir"] == "jsb:valid:0"
    assert [meta["stems"][f"S0{i}"]["stem_name"] for i in range(4)] == ["soprano", "alto", "tenor", "bass"]
    mix = sf.info(track / "mix.flac")
    assert mix.samplerate == 16000
    # data info lists both tracks with their durations and sources.
    info = outputs[1]
    assert "jsb:valid:0" in info and "jsb:valid:1" in info
    assert f"{mix.frames / 16000:.1f} s" in info
