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
    # No --eta: the eta the shipped model records for separation (ancestral DDIM, MSG-LD's).
    assert json.loads((tmp_path / "one" / "results.json").read_text())["settings"]["eta"] == 1.0
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


def _read_stem(folder: Path, stem: str, seconds: float = 3.0) -> np.ndarray:
    return sf.read(folder / f"{stem}.flac", dtype="float32")[0][: round(seconds * 16000)]


def _finite_baselines(results: dict) -> dict[str, dict[str, float]]:
    """{row: {baseline: FAD}} of results.json, every FAD checked finite and of every window."""
    out = {}
    for row, baselines in results["baselines"].items():
        for name, b in baselines.items():
            assert math.isfinite(b["fad"]) and b["fad"] > 0, (row, name)
            assert (
                b["real_embeddings"] == b["generated_embeddings"] == len(results["tracks"])
            )  # 1 window each
        out[row] = {name: b["fad"] for name, b in baselines.items()}
    return out


def test_generation_fad_one_and_two_processes_agree(stem_set, tmp_path, one_thread, accelerate_launch):
    args = ["generation", "--checkpoint", str(DEMO), "--stems-root", str(stem_set), "--steps", "1"]
    args += ["--seconds", "3", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert one["embedder"] == "musicnn-MSD-max_pool" and list(one["table"]) == ["generation"]
    row = one["table"]["generation"]
    assert row["real_embeddings"] == row["generated_embeddings"] == 2 and row["fad"] > 0
    # One step count: the items, table and files of 0.2.0 (no steps folder, no steps plot), and the
    # baselines in a folder of their own.
    assert (tmp_path / "one" / "items" / "generation" / "track1.safetensors").is_file()
    assert one["settings"]["steps"] == 1 and "vggish_weights" not in one["settings"]
    assert not (tmp_path / "one" / "fad_steps.png").exists()
    baselines = _finite_baselines(one)
    assert list(baselines) == ["generation"] and list(baselines["generation"]) == [
        "codec oracle",
        "shuffled stems",
    ]
    # The untrained-looking 1-step model is far from real stems that do not belong together: the
    # baseline it must beat, it does not, and the table says so.
    assert row["fad"] > 1.5 * baselines["generation"]["shuffled stems"]
    md = (tmp_path / "one" / "results.md").read_text()
    assert "| model | " in md and "| codec oracle | " in md and "| shuffled stems | " in md
    assert "The generated mixtures do not beat `shuffled stems` on FAD." in md
    # The shuffled stems of track 0: soprano and tenor of track 0, alto and bass of track 1 (stem s
    # from track 0 + s of 2); the codec oracle is near the real mixture, not equal to it.
    audio = tmp_path / "one" / "audio" / "generation" / "baselines" / "track0"
    shuffled, _ = sf.read(audio / "generation_shuffled_stems.wav", dtype="float32")
    sources = ["track0", "track1", "track0", "track1"]
    expected = sum(_read_stem(stem_set / source, stem) for source, stem in zip(sources, STEMS))
    assert np.abs(shuffled - expected).max() < 1e-6
    item = json.loads((tmp_path / "one" / "items" / "generation" / "baselines" / "track0.json").read_text())
    assert item["shuffled_from"] == sources and "steps" not in item["settings"]
    oracle, _ = sf.read(audio / "generation_codec_oracle.wav", dtype="float32")
    real = sum(_read_stem(stem_set / "track0", stem) for stem in STEMS)
    assert np.abs(oracle - real).max() > 1e-3 and np.mean((oracle - real) ** 2) < 0.1 * np.mean(real**2)
    proc = accelerate_launch(*args, "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["table"] == one["table"] and two["baselines"] == one["baselines"]
    items = sorted((tmp_path / "two" / "items" / "generation" / "baselines").glob("*.json"))
    assert [json.loads(p.read_text())["process"] for p in items] == ["1/2", "2/2"]  # one track each
    assert (tmp_path / "two" / "results.md").is_file() and (tmp_path / "two" / "generation.png").is_file()


def test_generation_fad_against_sampler_steps_resumes(stem_set, tmp_path, one_thread):
    args = ["generation", "--checkpoint", str(DEMO), "--stems-root", str(stem_set), "--seconds", "3"]
    args += ["--quiet", "--no-audio"]
    sweep = [*args, "--steps", "1,2", "--out", str(tmp_path / "sweep")]
    assert main(sweep) == 0
    before = json.loads((tmp_path / "sweep" / "results.json").read_text())
    # As if interrupted before the last item of the first step count: only that item runs again.
    # The baselines: once per track, not per step count.
    items = tmp_path / "sweep" / "items" / "generation"
    assert sorted(p.relative_to(items).as_posix() for p in items.glob("*/*.json")) == [
        "baselines/track0.json",
        "baselines/track1.json",
        "steps1/track0.json",
        "steps1/track1.json",
        "steps2/track0.json",
        "steps2/track1.json",
    ]
    for folder in ("steps1", "baselines"):
        for suffix in (".json", ".safetensors"):
            (items / folder / f"track1{suffix}").unlink()
    stamps = {p: p.stat().st_mtime_ns for p in items.glob("*/*.json")}
    assert main(sweep) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (items / "steps1" / "track1.json").is_file() and (items / "baselines" / "track1.json").is_file()
    res = json.loads((tmp_path / "sweep" / "results.json").read_text())
    assert res["table"] == before["table"] and res["baselines"] == before["baselines"]
    assert res["settings"]["steps"] == [1, 2]
    assert list(res["table"]) == ["generation, steps=1", "generation, steps=2"]
    assert [(r["generated"], r["steps"]) for r in res["table"].values()] == [
        ("generation", 1),
        ("generation", 2),
    ]
    md = (tmp_path / "sweep" / "results.md").read_text()
    assert "| model | 1 |" in md and "| model | 2 |" in md and "| shuffled stems | - |" in md
    assert (tmp_path / "sweep" / "fad_steps.png").stat().st_size > 0
    # A step count of a sweep is the run at that step count alone: the same noise, the same number;
    # the baselines do not depend on the step counts.
    assert main([*args, "--steps", "2", "--out", str(tmp_path / "two")]) == 0
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    alone = two["table"]["generation"]
    assert res["table"]["generation, steps=2"]["fad"] == alone["fad"]
    assert res["table"]["generation, steps=1"]["fad"] != alone["fad"]
    assert two["baselines"] == res["baselines"] and _finite_baselines(res)


def test_arrangement_subsets_one_and_two_processes_agree(stem_set, tmp_path, one_thread, accelerate_launch):
    base = ["arrangement", "--checkpoint", str(DEMO), "--stems-root", str(stem_set), "--seconds", "3"]
    base += ["--quiet", "--no-audio"]
    args = [*base, "--steps", "1", "--subsets", "alto+soprano,bass"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    # Named as the table names them, in its order (the singles, then the pairs).
    # No --eta: the eta the shipped model records for arrangement (deterministic DDIM).
    assert one["settings"]["eta"] == 0.0
    assert one["settings"]["subsets"] == ["bass", "soprano+alto"] and list(one["table"]) == [
        "bass",
        "soprano+alto",
    ]
    assert all(r["real_embeddings"] == r["generated_embeddings"] == 2 for r in one["table"].values())
    baselines = _finite_baselines(one)
    assert list(baselines) == ["bass", "soprano+alto"]
    assert all(list(b) == ["given only", "codec oracle"] for b in baselines.values())
    # The codec's round trip of the missing stems is closer to the test mixtures than silence.
    assert all(b["codec oracle"] < b["given only"] for b in baselines.values())
    md = (tmp_path / "one" / "results.md").read_text()
    assert (
        "| bass | model | " in md
        and "| bass | given only | " in md
        and "| soprano+alto | codec oracle | " in md
    )
    losing = [name for name, r in one["table"].items() if r["fad"] >= baselines[name]["given only"]]
    assert losing and f"Subsets where the model does not beat `given only` on FAD: {', '.join(losing)}." in md
    proc = accelerate_launch(*args, "--out", str(tmp_path / "two"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for folder in ("arrangement", "arrangement/baselines"):
        items = sorted((tmp_path / "two" / "items" / folder).glob("*.json"))
        assert [json.loads(p.read_text())["process"] for p in items] == ["1/2", "2/2"]
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["table"] == one["table"] and two["baselines"] == one["baselines"]
    # Other sampler settings and one subset: another model row, the same baselines.
    other = ["--steps", "2", "--eta", "1", "--seed", "5", "--subsets", "bass"]
    assert main([*base, *other, "--out", str(tmp_path / "other")]) == 0
    res = json.loads((tmp_path / "other" / "results.json").read_text())
    assert res["settings"]["eta"] == 1.0
    assert res["table"]["bass"]["fad"] != one["table"]["bass"]["fad"]
    assert res["baselines"] == {"bass": one["baselines"]["bass"]}


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
    # Its `given only` baseline is those originals alone, the soprano left silent.
    baseline = tmp_path / "arr" / "audio" / "arrangement" / "baselines" / "track0" / "soprano_given_only.wav"
    assert float(np.abs(sf.read(baseline, dtype="float32")[0] - given).max()) < 1e-6
    res = json.loads((tmp_path / "arr" / "results.json").read_text())
    baselines = {row: {name: b["fad"] for name, b in rows.items()} for row, rows in res["baselines"].items()}
    assert list(baselines) == rows and all(
        list(b) == ["given only", "codec oracle"] for b in baselines.values()
    )
    # On these chorales the codec's round trip of the missing stems beats silence in every subset.
    assert all(b["codec oracle"] < b["given only"] for b in baselines.values())
    losing = [row for row in rows if res["table"][row]["fad"] >= baselines[row]["given only"]]
    md = (tmp_path / "arr" / "results.md").read_text()
    assert losing and f"Subsets where the model does not beat `given only` on FAD: {', '.join(losing)}." in md
    # A subset keeps its seed when the others are left out (--subsets): the same row, the same baselines.
    assert main([*args, "--subsets", "tenor+bass", "--no-audio", "--out", str(tmp_path / "some")]) == 0
    some = json.loads((tmp_path / "some" / "results.json").read_text())
    assert some["table"]["tenor+bass"] == res["table"]["tenor+bass"]
    assert some["baselines"] == {"tenor+bass": res["baselines"]["tenor+bass"]}


def test_fad_of_identical_sets_is_zero():
    from stemforge.evaluate.arrangement import fad_table

    gen = torch.Generator().manual_seed(0)
    real = torch.randn(40, 8, generator=gen)
    same = fad_table([{"real": real, "row": real.clone()}], ["row"])["row"]["fad"]
    shifted = fad_table([{"real": real, "row": real + 1.0}], ["row"])["row"]["fad"]
    assert same == pytest.approx(0.0, abs=1e-9)
    assert shifted == pytest.approx(8.0, rel=1e-6)  # |mean shift|^2 = 8 x 1^2, covariances equal


def _fad(value: float) -> dict:
    return {"fad": value, "real_embeddings": 2, "generated_embeddings": 2}


def test_fad_markdown_names_the_rows_that_do_not_beat_the_baseline():
    from stemforge.evaluate.report import fad_markdown, not_beating

    settings = {"checkpoint": "m", "test_set": "t", "seconds": 3.0, "offset": 0.0, "sampler": "ddim"}
    settings |= {"steps": [5, 10], "eta": 1.0, "seed": 0}
    table = {
        f"{row}, steps={k}": {"generated": row, "steps": k, **_fad(fad)}
        for k, row, fad in [(5, "bass", 9.0), (5, "tenor", 7.0), (10, "bass", 5.0), (10, "tenor", 6.0)]
    }
    results = {"protocol": "arrangement", "settings": settings, "tracks": ["a", "b"], "embedder": "e"}
    results |= {"table": table, "baseline_rows": {"given only": "silence", "codec oracle": "codec"}}
    results["baselines"] = {
        "bass": {"given only": _fad(6.0), "codec oracle": _fad(1.0)},
        "tenor": {"given only": _fad(6.0), "codec oracle": _fad(2.0)},
    }
    # bass loses at 5 steps only (9 >= 6), tenor at both (7 and 6 >= 6: a tie does not beat it).
    assert not_beating(results) == ["bass, steps=5", "tenor, steps=5", "tenor, steps=10"]
    md = fad_markdown(results)
    assert "Subsets where the model does not beat `given only` on FAD: bass (at 5 steps), tenor." in md
    lines = [line for line in md.splitlines() if line.startswith("| bass |")]
    assert [line.split(" | ")[1:3] for line in lines] == [
        ["model", "5"],
        ["model", "10"],
        ["given only", "-"],
        ["codec oracle", "-"],
    ]
    results["baselines"]["tenor"]["given only"] = _fad(8.0)
    results["baselines"]["bass"]["given only"] = _fad(10.0)
    assert "The model beats `given only` on FAD in every subset." in fad_markdown(results)
    generation = {**results, "protocol": "generation", "baseline_rows": {}}
    generation["table"] = {
        f"generation, steps={k}": {"generated": "generation", "steps": k, **_fad(f)}
        for k, f in [(5, 4.0), (10, 2.0)]
    }
    generation["baselines"] = {"generation": {"codec oracle": _fad(1.0), "shuffled stems": _fad(3.0)}}
    assert "The generated mixtures do not beat `shuffled stems` on FAD at 5 steps." in fad_markdown(
        generation
    )
    del generation["baselines"]["generation"]["shuffled stems"]  # a test set of one track
    assert "No `shuffled stems` row: it needs at least 2 tracks." in fad_markdown(generation)


def test_shuffled_stems_come_from_the_following_tracks():
    from stemforge.evaluate.arrangement import shuffle_sources

    assert shuffle_sources(["a", "b", "c"], 4) == [
        ["a", "b", "c", "a"],
        ["b", "c", "a", "b"],
        ["c", "a", "b", "c"],
    ]
    assert shuffle_sources(["a"], 4) == [None]


def test_a_baseline_item_of_other_shuffled_tracks_is_evaluated_again(tmp_path):
    """The shuffled stems of a track come from the tracks after it: a resumed run on a test set that
    grew gives them other sources, so that item (and only it) is not taken as done."""
    from stemforge.evaluate.arrangement import BaselineStore, GenerationSettings, shuffle_sources

    settings = GenerationSettings(protocol="generation", steps=3, seed=1, stems=STEMS)
    keys = ["generation/baselines/a", "generation/baselines/b"]
    before = BaselineStore(tmp_path, settings, dict(zip(keys, shuffle_sources(["a", "b"], 4))))
    for key, sources in before.sources.items():
        before.save(key, {"shuffled_from": sources})
    assert all(before.done(key) for key in keys)
    # Other sampler settings share the items; a third track changes the sources of both.
    again = BaselineStore(tmp_path, settings.at_steps(7), before.sources)
    assert all(again.done(key) for key in keys) and "steps" not in again.settings
    grown = BaselineStore(tmp_path, settings, dict(zip(keys, shuffle_sources(["a", "b", "c"], 4))))
    assert not grown.done(keys[0]) and not grown.done(keys[1])


def test_baseline_rows_do_not_depend_on_the_seed_or_the_other_subsets():
    """FAD-infinity draws subsets of windows; a baseline's draws follow neither --seed nor which
    other subsets are evaluated, so its row is the same in every run of the same excerpts."""
    from dataclasses import replace

    from stemforge.evaluate.arrangement import baseline_table
    from stemforge.evaluate.fad import FadOptions, fad_row

    gen = torch.Generator().manual_seed(0)
    keys = ("real", "bass:given only", "bass:codec oracle", "tenor:given only", "tenor:codec oracle")
    items = [{k: torch.randn(6, 4, generator=gen) + 0.3 * j for j, k in enumerate(keys)} for _ in range(2)]
    options = FadOptions(modes=("plain", "infinity"), infinity_steps=4, seed=1)
    both = baseline_table(items, "arrangement", [(3, "bass"), (9, "tenor")], options)
    alone = baseline_table(items, "arrangement", [(9, "tenor")], replace(options, seed=7))
    assert list(both) == ["bass", "tenor"] and list(both["tenor"]) == ["given only", "codec oracle"]
    assert alone == {"tenor": both["tenor"]}
    real = [item["real"] for item in items]
    plain = fad_row(real, [item["bass:codec oracle"] for item in items], FadOptions())["fad"]
    assert both["bass"]["codec oracle"]["fad"] == pytest.approx(plain, rel=1e-12)
    assert both["bass"]["given only"]["fad_infinity"] != both["tenor"]["given only"]["fad_infinity"]
