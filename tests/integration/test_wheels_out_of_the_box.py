"""The installed commands work out of the box: stemforge-insert's, stemforge-train's and
stemforge-metrics' wheels and every sibling wheel they declare, built by tools/release.py, are
installed into one fresh virtual environment by pip alone (declared dependencies only, under the
root constraints.txt: no hand-run --no-deps step, no hatch), and there

- ``stemforge-insert midi --example`` writes the inserted MIDI, its rendered preview and its PNG,
- ``stemforge-train data render`` renders two JSB chorales to Slakh-format stems,
- FAD is computed through stemforge-metrics' Python API on two of those renders,
- with the optional outputs' dependencies uninstalled (midirenderer, matplotlib), ``midi --example``
  still writes the inserted MIDI and warns about the preview and the PNG.
"""

from __future__ import annotations

import math
import os
import pathlib
import subprocess
import sys
import venv

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import release  # noqa: E402

DISTRIBUTIONS = (ROOT / "apps" / "insert", ROOT / "apps" / "train", ROOT / "packages" / "metrics")

FAD_SCRIPT = """
import sys

import soundfile as sf
import torch

from stemforge.metrics import FrechetAudioDistance, MusicnnEmbedder

clips = []
for path in sys.argv[1:]:
    wave, rate = sf.read(path, dtype="float32")
    assert rate == 16000, (path, rate)
    clips.append(torch.from_numpy(wave)[None])
fad = FrechetAudioDistance(MusicnnEmbedder())
fad.update(clips[0], real=True, sample_rate=16000)
fad.update(clips[1], real=False, sample_rate=16000)
score = fad.compute()
print(score)
print(score.value)
"""


def _build_wheels(out: pathlib.Path) -> list[pathlib.Path]:
    """The three distributions' wheels (returned) and their siblings' wheels in ``out/wheelhouse``."""
    wheelhouse = out / "wheelhouse"
    wheelhouse.mkdir(parents=True)
    built: set[pathlib.Path] = set()
    wheels = []
    for dist in DISTRIBUTIONS:
        for sibling in release.sibling_dirs(dist):
            if sibling in built or sibling in DISTRIBUTIONS:
                continue
            _, wheel = release.build(sibling, wheelhouse)
            assert not release.check_wheel(wheel, sibling)
            built.add(sibling)
        _, wheel = release.build(dist, wheelhouse)
        assert not release.check_wheel(wheel, dist)
        built.add(dist)
        wheels.append(wheel)
    return wheels


def _run(cmd: list[str], env: dict[str, str], cwd: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=1800)


@pytest.mark.slow
def test_commands_work_after_pip_install_of_the_wheels(tmp_path: pathlib.Path) -> None:
    wheels = _build_wheels(tmp_path / "dist")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"
    env = dict(
        os.environ,
        PIP_CONSTRAINT=str(ROOT / "constraints.txt"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        OMP_NUM_THREADS="1",
    )
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    install = _run(
        [
            str(bin_dir / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--find-links",
            str(tmp_path / "dist" / "wheelhouse"),
        ]
        + [str(w) for w in wheels],
        env,
        tmp_path,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    # Nothing was installed by hand: the hand-installed synthesiser is absent, the declared one is there.
    probe = _run([str(bin_dir / "python"), "-c", "import tinysoundfont"], env, tmp_path)
    assert probe.returncode != 0

    out = tmp_path / "out"
    insert = _run(
        [
            str(bin_dir / "stemforge-insert"),
            "midi",
            "--example",
            "--stem",
            "alto",
            "--out",
            str(out / "alto.mid"),
        ],
        env,
        tmp_path,
    )
    assert insert.returncode == 0, insert.stderr[-3000:]
    assert "warning" not in insert.stderr, insert.stderr[-3000:]
    for name in ("alto.mid", "alto.wav", "alto.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name

    chorales = out / "chorales"
    render = _run(
        [
            str(bin_dir / "stemforge-train"),
            "data",
            "render",
            "--source",
            "jsb",
            "--split",
            "valid",
            "--limit",
            "2",
            "--out",
            str(chorales),
        ],
        env,
        tmp_path,
    )
    assert render.returncode == 0, render.stderr[-3000:]
    tracks = sorted((chorales / "validation").iterdir())
    assert [t.name for t in tracks] == ["Track00001", "Track00002"]
    for track in tracks:
        stems = sorted(p.name for p in (track / "stems").iterdir())
        assert stems == ["S00.flac", "S01.flac", "S02.flac", "S03.flac"]
        assert yaml.safe_load((track / "metadata.yaml").read_text())["render"]["backend"] == "midirenderer"

    fad = _run(
        [str(bin_dir / "python"), "-c", FAD_SCRIPT, *(str(t / "mix.flac") for t in tracks)],
        env,
        tmp_path,
    )
    assert fad.returncode == 0, fad.stderr[-3000:]
    value = float(fad.stdout.strip().splitlines()[-1])
    assert math.isfinite(value) and value > 0, fad.stdout  # two different chorales are apart

    # Optional outputs' dependencies removed: the preview's synthesiser and the PNG's matplotlib.
    # The inserted MIDI is still written, each missing piece is a warning, and the status is 0.
    removed = _run(
        [str(bin_dir / "python"), "-m", "pip", "uninstall", "-y", "-q", "midirenderer", "matplotlib"],
        env,
        tmp_path,
    )
    assert removed.returncode == 0, removed.stderr[-3000:]
    bare = out / "bare"
    insert = _run(
        [
            str(bin_dir / "stemforge-insert"),
            "midi",
            "--example",
            "--stem",
            "tenor",
            "--out",
            str(bare / "tenor.mid"),
        ],
        env,
        tmp_path,
    )
    assert insert.returncode == 0, insert.stderr[-3000:]
    assert (bare / "tenor.mid").is_file() and (bare / "tenor.mid").stat().st_size > 0
    assert not (bare / "tenor.wav").exists() and not (bare / "tenor.png").exists()
    warnings = [line for line in insert.stderr.splitlines() if "warning" in line]
    assert any("no preview tenor.wav" in line for line in warnings), insert.stderr[-3000:]
    assert any("tenor.png not written" in line and "tenor.mid is written" in line for line in warnings), (
        insert.stderr[-3000:]
    )
