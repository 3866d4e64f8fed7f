"""stemforge-evaluate's insertion, accompaniment and MIDI voice-insertion protocols on real
checkpoints (the tiny subtractive and accompaniment test models trained by stemforge-train, the
shipped JSB insertion model) and real rendered chorale audio; one and two processes agree."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import soundfile as sf
import torch

from stemforge.evaluate.cli import main

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_demo_16k"
SUBTRACTIVE = ROOT / "tests" / "fixtures" / "checkpoints" / "tiny-subtractive"
ACCOMPANIMENT = ROOT / "tests" / "fixtures" / "checkpoints" / "tiny-accompaniment"
JSB = ROOT / "apps" / "insert" / "src" / "stemforge" / "insert" / "checkpoints" / "jsb-insertion"
STEMS = ("soprano", "alto", "tenor", "bass")


def _cut(root: Path, spans: list[tuple[float, float]]) -> Path:
    for k, (start, stop) in enumerate(spans):
        (root / f"track{k}").mkdir(parents=True)
        for stem in STEMS:
            audio, rate = sf.read(CHORALE / f"{stem}.flac", dtype="float32")
            sf.write(
                root / f"track{k}" / f"{stem}.flac", audio[round(start * rate) : round(stop * rate)], rate
            )
    return root


@pytest.fixture(scope="module")
def short_set(tmp_path_factory) -> Path:
    """Two 4 s tracks of the held-out chorale fixture (MUSDB-style folders)."""
    return _cut(tmp_path_factory.mktemp("short"), [(0.0, 4.0), (4.0, 8.0)])


@pytest.fixture(scope="module")
def long_set(tmp_path_factory) -> Path:
    """Two 6 s tracks (two musicnn windows each, for per-song FAD); they overlap by 0.1 s."""
    return _cut(tmp_path_factory.mktemp("long"), [(0.0, 6.0), (5.9, 11.9)])


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow  # the MiniLM instruction encoder and 6 s tracks: about 60 s on 2 busy cores
def test_insertion_with_an_instruction_and_fad_options(long_set, tmp_path, one_thread):
    args = ["insertion", "--checkpoint", str(SUBTRACTIVE), "--stems-root", str(long_set), "--stems", "bass"]
    args += ["--instruction", "a {stem} line", "--guidance", "2", "--steps", "2", "--seconds", "6"]
    args += ["--fad", "infinity,per-song", "--quiet", "--out", str(tmp_path / "one")]
    assert main(args) == 0
    one = results(tmp_path / "one")
    assert one["embedder"] == "musicnn-MSD-max_pool" and one["settings"]["instruction"] == "a {stem} line"
    rows = one["table"]["bass"]
    assert list(rows) == ["model", "codec oracle", "no stem"] and rows["no stem"]["stem"] is None
    model, oracle = rows["model"], rows["codec oracle"]
    assert (
        model["stem"]["real_embeddings"] == model["stem"]["generated_embeddings"] == 4
    )  # 2 tracks x 2 windows
    # The 50-step test model writes clipped noise; the codec's own round trip of the true bass is far
    # closer to the real basses, and the mixture with it closer to the real mixtures.
    assert oracle["stem"]["fad"] < model["stem"]["fad"] and oracle["mix"]["fad"] < model["mix"]["fad"]
    inf = model["mix"]["fad_infinity"]
    assert inf["sizes"] == [2, 4] and math.isfinite(inf["value"])
    assert model["mix"]["fad_per_song"]["songs"] == 2
    md = (tmp_path / "one" / "results.md").read_text()
    assert "musicnn-MSD-max_pool" in md and "2 steps" in md and "FAD-inf" in md and "per-song" in md
    assert (tmp_path / "one" / "audio" / "insertion" / "track1" / "mix_with_bass.wav").is_file()
    assert (tmp_path / "one" / "insertion.png").is_file()


def test_insertion_one_and_two_processes_agree(short_set, tmp_path, one_thread, accelerate_launch):
    args = ["insertion", "--checkpoint", str(SUBTRACTIVE), "--stems-root", str(short_set), "--stems", "tenor"]
    args += ["--steps", "1", "--seconds", "3", "--quiet", "--no-audio"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    proc = accelerate_launch(*args, "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    items = sorted((tmp_path / "two" / "items" / "insertion").glob("*.json"))
    assert [json.loads(p.read_text())["process"] for p in items] == ["1/2", "2/2"]
    assert results(tmp_path / "two")["table"] == results(tmp_path / "one")["table"]


def test_accompaniment_cfg_and_style_curves(short_set, tmp_path, one_thread):
    args = ["accompaniment", "--checkpoint", str(ACCOMPANIMENT), "--stems-root", str(short_set)]
    args += ["--test-stems", ",".join(STEMS), "--steps", "2", "--seconds", "3", "--cfg-sweep", "1,3"]
    args += ["--style-sweep", "0,1", "--quiet", "--no-audio", "--out", str(tmp_path / "acc")]
    assert main(args) == 0
    res = results(tmp_path / "acc")
    assert res["settings"]["insert_stems"] == ["bass"] and res["mode"] == "accompaniment"
    points = res["cfg"]["bass"]
    assert [(p["guidance"], p["rescale"]) for p in points] == [(1.0, 0.0), (1.0, 0.7), (3.0, 0.0), (3.0, 0.7)]
    # At w = 1 the guided prediction is the conditional one, so rescaling it to its own standard
    # deviation changes nothing: the two curves meet there, and part at w = 3.
    assert points[0]["stem"]["fad"] == points[1]["stem"]["fad"]
    assert points[2]["stem"]["fad"] != points[3]["stem"]["fad"]
    # The main setting (w 3, phi 0.7, lambda 0.7) is the sweep's last point: the same noise, the same stem.
    assert res["table"]["bass"]["model"]["stem"]["fad"] == points[3]["stem"]["fad"]
    style = res["style"]["bass"]
    assert [p["strength"] for p in style["by_strength"]] == [0.0, 1.0]
    assert all(p["tracks"] == 2 and p["to_reference"] > 0 for p in style["by_strength"])
    # The true bass of one passage is far closer in timbre to the next passage's bass than the
    # untrained model's output is.
    assert style["true_to_reference"] < min(p["to_reference"] for p in style["by_strength"])
    for name in ("results.md", "accompaniment.png", "cfg.png", "style.png"):
        assert (tmp_path / "acc" / name).is_file()
    assert "Pasini et al., Fig. 2" in (tmp_path / "acc" / "results.md").read_text()


def test_accompaniment_one_and_two_processes_agree(short_set, tmp_path, one_thread, accelerate_launch):
    """Each process takes one track; the style reference (the next track's bass) is read from the
    test set, not from the other process's output, so the numbers do not depend on the sharding."""
    args = ["accompaniment", "--checkpoint", str(ACCOMPANIMENT), "--stems-root", str(short_set)]
    args += ["--test-stems", ",".join(STEMS), "--steps", "1", "--seconds", "3", "--quiet", "--no-audio"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    proc = accelerate_launch(*args, "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    items = sorted((tmp_path / "two" / "items" / "accompaniment").glob("*.json"))
    assert [json.loads(p.read_text())["process"] for p in items] == ["1/2", "2/2"]
    one, two = results(tmp_path / "one"), results(tmp_path / "two")
    assert two["table"] == one["table"] and two["style"] == one["style"]


def test_bad_subtractive_input_is_refused_before_work(short_set, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["--stems-root", str(short_set), "--out", str(out), "--steps", "1"]
    assert main(["accompaniment", "--checkpoint", str(ACCOMPANIMENT), *base]) == 2
    assert "--test-stems soprano,alto,tenor,bass" in capsys.readouterr().err
    assert main(["insertion", "--checkpoint", str(SUBTRACTIVE), *base, "--fad", "per-song"]) == 2
    assert "give --seconds 6 or more" in capsys.readouterr().err
    assert main(["insertion", "--checkpoint", str(SUBTRACTIVE), *base, "--fad", "infinity"]) == 2
    assert "the fit needs at least 4" in capsys.readouterr().err
    assert main(["insertion", "--checkpoint", str(SUBTRACTIVE), *base, "--stems", "piano"]) == 2
    assert "--stems piano: not among the test set's stems" in capsys.readouterr().err
    assert main(["accompaniment", "--checkpoint", str(SUBTRACTIVE), *base]) == 2
    assert "accompany needs an accompaniment or a joint" in capsys.readouterr().err
    single = ["--test-stems", ",".join(STEMS), "--max-tracks", "1"]
    assert main(["accompaniment", "--checkpoint", str(ACCOMPANIMENT), *base, *single]) == 2
    assert "at least 2 tracks" in capsys.readouterr().err
    test_stems = ["--test-stems", ",".join(STEMS)]
    assert (
        main(["accompaniment", "--checkpoint", str(ACCOMPANIMENT), *base, *test_stems, "--rescale", "2"]) == 2
    )
    assert "--rescale 2" in capsys.readouterr().err
    assert not out.exists()


def test_midi_voice_insertion_against_baselines_one_and_two_processes(
    tmp_path, one_thread, accelerate_launch
):
    args = ["midi", "--checkpoint", str(JSB), "--protocols", "insertion", "--max-pieces", "2"]
    args += ["--max-frames", "32", "--split", "valid", "--insert-steps", "8", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    table = results(tmp_path / "one")["table"]["insertion"]
    assert list(table) == ["model", "most frequent pitch", "voice leading", "Bach"]
    assert table["Bach"]["note_f1_mean"] == 1.0
    # The trained model recovers Bach's notes far better than either baseline, and the
    # no-parallels constraint (the default) leaves it none.
    assert table["model"]["note_f1_mean"] > table["voice leading"]["note_f1_mean"] + 0.2
    assert table["voice leading"]["note_f1_mean"] > table["most frequent pitch"]["note_f1_mean"]
    assert table["model"]["parallels_mean"] == 0.0
    assert "## Voice insertion" in (tmp_path / "one" / "results.md").read_text()
    proc = accelerate_launch(*args, "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results(tmp_path / "two")["table"] == results(tmp_path / "one")["table"]


def test_fad_options_on_constructed_embeddings():
    from stemforge.evaluate.fad import FadOptions, fad_row
    from stemforge.metrics import fad_per_file, frechet_distance, gaussian_stats

    gen = torch.Generator().manual_seed(0)
    real = [torch.randn(30, 6, generator=gen) for _ in range(3)]
    fake = [torch.randn(30, 6, generator=gen) + 0.5 for _ in range(3)]
    row = fad_row(real, fake, FadOptions(modes=("plain", "infinity", "per-song"), infinity_steps=5))
    ref, ev = gaussian_stats(torch.cat(real).double()), gaussian_stats(torch.cat(fake).double())
    assert row["fad"] == pytest.approx(frechet_distance(ref.mean, ref.cov, ev.mean, ev.cov), rel=1e-12)
    assert row["fad_infinity"]["sizes"] == [45, 90] and row["fad_infinity"]["steps"] == 5
    per_song = [s.value for s in fad_per_file(ref, [f.double() for f in fake])]
    assert row["fad_per_song"]["mean"] == pytest.approx(sum(per_song) / 3, rel=1e-12)
    same = fad_row(real, [r.clone() for r in real], FadOptions())
    assert same["fad"] == pytest.approx(0.0, abs=1e-9) and "fad_infinity" not in same
