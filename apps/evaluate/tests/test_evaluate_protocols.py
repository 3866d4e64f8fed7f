"""stemforge-evaluate end to end: the separation protocol on the shipped demo model and the MIDI
protocols on a small voice model, each as one process and as two processes under
``accelerate launch`` (the same numbers), resumed after an interruption, with the metrics checked
on constructed cases against independent computations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.evaluate.cli import main
from stemforge.evaluate.midi import coconet_ranks
from stemforge.evaluate.separation import SeparationSettings, _mel_16k, score

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_demo_16k"
DEMO = ROOT / "apps" / "insert" / "src" / "stemforge" / "insert" / "checkpoints" / "demo-audio"
STEMS = ("soprano", "alto", "tenor", "bass")


@pytest.fixture(scope="module")
def voice_model(tmp_path_factory) -> Path:
    """A small voice-insertion pipeline (random weights: the protocols' mechanics are under test)."""
    from stemforge.pipelines import VoiceInsertionModel, VoiceInsertionPipeline, VoiceModelConfig
    from stemforge.unet3d import UNet3DConfig

    torch.manual_seed(0)
    unet = UNet3DConfig.from_name("pianoroll-jsb", model_channels=8, head_channels=8, text_dim=0)
    network = VoiceInsertionModel(VoiceModelConfig(unet, pitch_low=36, pitch_high=81))
    return VoiceInsertionPipeline(network, STEMS, window=16, label="tiny").save_pretrained(
        tmp_path_factory.mktemp("voice") / "tiny"
    )


def table(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())["table"]


def test_separation_one_and_two_processes_agree_and_resume(
    stem_set, tmp_path, capsys, one_thread, accelerate_launch
):
    args = ["separation", "--checkpoint", str(DEMO), "--stems-root", str(stem_set), "--steps", "2"]
    args += ["--methods", "cfg", "--guidance", "1", "--seconds", "4", "--quiet"]
    # An interrupted run: only the first track is done.
    assert main([*args, "--out", str(tmp_path / "one"), "--max-tracks", "1"]) == 0
    first = tmp_path / "one" / "items" / "separation" / "track0.json"
    stamp = first.stat().st_mtime_ns
    # Other settings are refused rather than mixed in.
    assert main([*args, "--out", str(tmp_path / "one"), "--steps", "3"]) == 2
    assert "holds a result of other settings" in capsys.readouterr().err
    # Resumed: the stored track is not evaluated again, the missing one is.
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert first.stat().st_mtime_ns == stamp
    one = table(tmp_path / "one")
    assert list(one) == ["mixture / S", "codec oracle", "cfg w=1"]
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in one["mixture / S"]["si_sdri"].values())
    assert one["codec oracle"]["si_sdri_mean"] > 10.0  # the shipped codec: 15-20 dB on these stems
    assert (tmp_path / "one" / "results.md").is_file() and (tmp_path / "one" / "separation.png").is_file()
    assert (tmp_path / "one" / "audio" / "cfg_w1" / "track1" / "bass.wav").is_file()

    proc = accelerate_launch(*args, "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    items = sorted((tmp_path / "two" / "items" / "separation").glob("*.json"))
    assert [json.loads(p.read_text())["process"] for p in items] == ["1/2", "2/2"]  # one track each
    assert table(tmp_path / "two") == one


def test_si_sdri_and_mel_mse_on_a_constructed_case():
    """Estimates = references + white noise at a known level: SI-SDRi must equal SI-SDR(estimate) -
    SI-SDR(mixture), each computed here with numpy from the definition (one 4 s window)."""
    rate = 16000
    gen = torch.Generator().manual_seed(0)
    t = torch.arange(4 * rate) / rate
    references = torch.stack([0.3 * torch.sin(2 * math.pi * f * t) for f in (220.0, 330.0, 440.0, 110.0)])
    estimates = references + 0.05 * torch.randn(references.shape, generator=gen)

    def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
        alpha = (est @ ref + 1e-8) / (ref @ ref + 1e-8)
        target = alpha * ref
        return 10 * math.log10((target @ target + 1e-8) / ((target - est) @ (target - est) + 1e-8))

    ref64, est64 = references.double().numpy(), estimates.double().numpy()
    mix = ref64.sum(0)
    expected = [si_sdr(est64[s], ref64[s]) - si_sdr(mix, ref64[s]) for s in range(4)]
    result = score(estimates, references, rate, SeparationSettings(), _mel_16k(rate))
    assert result["num_windows"] == 1
    assert [w[0] for w in result["si_sdri_windows"]] == pytest.approx(expected, abs=1e-6)
    assert all(v > 10 for v in expected)  # the noise is 20 dB below the sines, the mixture far worse
    identical = score(references, references, rate, SeparationSettings(), _mel_16k(rate))
    assert identical["mel_mse"] == [0.0, 0.0, 0.0, 0.0]


def test_coconet_order_visits_whole_frames_in_random_order():
    ranks = coconet_ranks(4, 12, 3, torch.Generator().manual_seed(1))
    assert ranks.shape == (3, 4, 12)
    for k in range(3):
        assert sorted(ranks[k].flatten().tolist()) == list(range(48))
        frame_of_rank = {int(ranks[k, v, t]): t for v in range(4) for t in range(12)}
        frames = [frame_of_rank[r] for r in range(48)]
        # Ranks 4j..4j+3 are the four voices of one frame; frames are not visited left to right.
        assert all(len(set(frames[4 * j : 4 * j + 4])) == 1 for j in range(12))
        assert [frames[4 * j] for j in range(12)] != list(range(12))
    assert not torch.equal(ranks[0], ranks[1])


def test_midi_protocols_one_and_two_processes_agree(
    voice_model, tmp_path, capsys, one_thread, accelerate_launch
):
    args = ["midi", "--checkpoint", str(voice_model), "--protocols", "windowed,coconet", "--length", "16"]
    args += ["--max-pieces", "2", "--max-frames", "16", "--orderings", "2", "--split", "valid", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one = table(tmp_path / "one")
    # A nearly uniform network over 47 classes (46 pitches and the rest): about 4 ln 47 nats a frame.
    assert one["windowed"]["count"] == 2 and 0.7 * 15.4 < one["windowed"]["framewise_nll"] < 1.3 * 15.4
    assert one["coconet"]["count"] == 2 and 0.7 * 15.4 < one["coconet"]["framewise_nll"] < 1.3 * 15.4
    proc = accelerate_launch(*args, "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert table(tmp_path / "two") == one


def test_bad_input_is_refused_before_work(stem_set, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["separation", "--checkpoint", str(DEMO), "--out", str(out)]) == 2
    assert "either --slakh-root or --stems-root" in capsys.readouterr().err
    assert (
        main(["separation", "--checkpoint", str(DEMO), "--stems-root", str(tmp_path), "--out", str(out)]) == 2
    )
    assert "no track folder holds any of soprano.wav" in capsys.readouterr().err
    common = ["separation", "--checkpoint", str(DEMO), "--stems-root", str(stem_set), "--out", str(out)]
    assert main([*common, "--guidance", "0.5"]) == 2
    assert "w >= 1" in capsys.readouterr().err
    assert main([*common, "--methods", "magic"]) == 2
    assert "choose among cfg, dirac, gaussian" in capsys.readouterr().err
    assert (
        main(
            [
                "separation",
                "--checkpoint",
                str(tmp_path / "nope"),
                "--stems-root",
                str(stem_set),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "nope" in capsys.readouterr().err
    assert not out.exists()


def test_generation_fad_one_and_two_processes_agree(stem_set, tmp_path, one_thread, accelerate_launch):
    args = ["generation", "--checkpoint", str(DEMO), "--stems-root", str(stem_set), "--steps", "1"]
    args += ["--seconds", "3", "--quiet", "--no-audio"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert one["embedder"] == "musicnn-MSD-max_pool" and list(one["table"]) == ["generation"]
    row = one["table"]["generation"]
    assert row["real_embeddings"] == row["generated_embeddings"] == 2 and row["fad"] > 0
    # One step count: the items, table and files of 0.2.0 (no steps folder, no steps plot).
    assert (tmp_path / "one" / "items" / "generation" / "track1.safetensors").is_file()
    assert one["settings"]["steps"] == 1 and "vggish_weights" not in one["settings"]
    assert not (tmp_path / "one" / "fad_steps.png").exists()
    proc = accelerate_launch(*args, "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert table(tmp_path / "two") == one["table"]
    assert (tmp_path / "two" / "results.md").is_file() and (tmp_path / "two" / "generation.png").is_file()


def test_generation_fad_against_sampler_steps_resumes(stem_set, tmp_path, one_thread):
    args = ["generation", "--checkpoint", str(DEMO), "--stems-root", str(stem_set), "--seconds", "3"]
    args += ["--quiet", "--no-audio"]
    sweep = [*args, "--steps", "1,2", "--out", str(tmp_path / "sweep")]
    assert main(sweep) == 0
    before = json.loads((tmp_path / "sweep" / "results.json").read_text())
    # As if interrupted before the last item of the first step count: only that item runs again.
    items = tmp_path / "sweep" / "items" / "generation"
    for suffix in (".json", ".safetensors"):
        (items / "steps1" / f"track1{suffix}").unlink()
    stamps = {p: p.stat().st_mtime_ns for p in items.glob("*/*.json")}
    assert main(sweep) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps and (
        items / "steps1" / "track1.json"
    ).is_file()
    res = json.loads((tmp_path / "sweep" / "results.json").read_text())
    assert res["table"] == before["table"]
    assert res["settings"]["steps"] == [1, 2]
    assert list(res["table"]) == ["generation, steps=1", "generation, steps=2"]
    assert [(r["generated"], r["steps"]) for r in res["table"].values()] == [
        ("generation", 1),
        ("generation", 2),
    ]
    md = (tmp_path / "sweep" / "results.md").read_text()
    assert "| generation | 1 |" in md and "| generation | 2 |" in md
    assert (tmp_path / "sweep" / "fad_steps.png").stat().st_size > 0
    # A step count of a sweep is the run at that step count alone: the same noise, the same number.
    assert main([*args, "--steps", "2", "--out", str(tmp_path / "two")]) == 0
    alone = table(tmp_path / "two")["generation"]
    assert res["table"]["generation, steps=2"]["fad"] == alone["fad"]
    assert res["table"]["generation, steps=1"]["fad"] != alone["fad"]


def test_arrangement_subsets_one_and_two_processes_agree(stem_set, tmp_path, one_thread, accelerate_launch):
    args = ["arrangement", "--checkpoint", str(DEMO), "--stems-root", str(stem_set), "--steps", "1"]
    args += ["--seconds", "3", "--subsets", "alto+soprano,bass", "--quiet", "--no-audio"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    # Named as the table names them, in its order (the singles, then the pairs).
    assert one["settings"]["subsets"] == ["bass", "soprano+alto"] and list(one["table"]) == [
        "bass",
        "soprano+alto",
    ]
    assert all(r["real_embeddings"] == r["generated_embeddings"] == 2 for r in one["table"].values())
    proc = accelerate_launch(*args, "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    items = sorted((tmp_path / "two" / "items" / "arrangement").glob("*.json"))
    assert [json.loads(p.read_text())["process"] for p in items] == ["1/2", "2/2"]
    assert table(tmp_path / "two") == one["table"]


def test_bad_arrangement_input_is_refused(stem_set, tmp_path, capsys):
    args = [
        "arrangement",
        "--checkpoint",
        str(DEMO),
        "--stems-root",
        str(stem_set),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main([*args, "--subsets", "bass+piano"]) == 2
    assert "piano is not a stem of the model" in capsys.readouterr().err
    assert main([*args, "--subsets", "soprano+alto+tenor+bass"]) == 2
    assert "leaves at least one stem given" in capsys.readouterr().err
    assert main([*args, "--max-tracks", "1", "--seconds", "4"]) == 2  # one musicnn window in all
    assert "a covariance needs at least 2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow  # 28 arrangements: about 90 s on 2 cores
def test_arrangement_has_one_row_per_proper_subset(stem_set, tmp_path, one_thread):
    args = ["arrangement", "--checkpoint", str(DEMO), "--stems-root", str(stem_set), "--steps", "1"]
    args += ["--seconds", "3", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "arr")]) == 0
    rows = list(table(tmp_path / "arr"))
    assert len(rows) == 14 and len(set(rows)) == 14
    assert [len(r.split("+")) for r in rows] == [1] * 4 + [2] * 6 + [3] * 4  # no empty set, no full set
    assert all(set(r.split("+")) < set(STEMS) for r in rows)
    # A sub-mixture is the given originals plus what was generated: here the generated soprano.
    mix, _ = sf.read(tmp_path / "arr" / "audio" / "arrangement" / "track0" / "soprano.wav", dtype="float32")
    given = sum(
        sf.read(stem_set / "track0" / f"{s}.flac", dtype="float32")[0][: 3 * 16000] for s in STEMS[1:]
    )
    assert mix.shape == given.shape and float(np.abs(mix - given).max()) > 1e-3
    # A subset keeps its seed when the others are left out (--subsets): the same row.
    assert main([*args, "--subsets", "tenor+bass", "--no-audio", "--out", str(tmp_path / "some")]) == 0
    assert table(tmp_path / "some")["tenor+bass"] == table(tmp_path / "arr")["tenor+bass"]


def test_fad_of_identical_sets_is_zero():
    from stemforge.evaluate.arrangement import fad_table

    gen = torch.Generator().manual_seed(0)
    real = torch.randn(40, 8, generator=gen)
    same = fad_table([{"real": real, "row": real.clone()}], ["row"])["row"]["fad"]
    shifted = fad_table([{"real": real, "row": real + 1.0}], ["row"])["row"]["fad"]
    assert same == pytest.approx(0.0, abs=1e-9)
    assert shifted == pytest.approx(8.0, rel=1e-6)  # |mean shift|^2 = 8 x 1^2, covariances equal
