"""Descriptors, the instruction writer and subtractive triplets on real rendered tracks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch

from stemforge.data import (
    InstructionWriter,
    SubtractiveTripletDataset,
    describe_stem,
    subtractive_triplet,
)
from stemforge.midi import group_instruments, load_midi

ROOT = Path(__file__).resolve().parents[3]
MIDI = ROOT / "tests" / "fixtures" / "midi"


def test_descriptors_of_band_stems():
    midi = load_midi(MIDI / "band_tempo_changes.mid")
    groups = group_instruments(midi)
    bass = describe_stem("bass", groups["bass"], midi, start=0.0, end=2.0)
    # Bar 1 at 120 BPM: four quarter notes of pitch 36 (C2), velocity 95.
    assert bass.num_notes == 4 and bass.median_pitch == 36 and bass.register == "low"
    assert bass.tempo_bpm == pytest.approx(120.0) and bass.notes_per_second == 2.0
    assert bass.on_beat_fraction == 1.0 and bass.rhythm == "on the beat"
    assert bass.dynamics == "medium" and bass.instrument == "electric bass (finger)"
    drums = describe_stem("drums", groups["drums"], midi, start=0.0, end=2.0)
    assert drums.is_drum and drums.register is None and drums.instrument == "drums"
    assert drums.density == "busy"  # 8th-note hats plus kick and snare: 12 hits in 2 s
    later = describe_stem("bass", groups["bass"], midi, start=2.0, end=4.0)
    assert later.tempo_bpm == pytest.approx(90.0, abs=1e-3)
    strings = describe_stem("strings", [midi.instruments[4]], midi)
    assert strings.rhythm == "sustained" and strings.register == "high"
    assert strings.mean_velocity == 60 and strings.dynamics == "medium"


@pytest.mark.parametrize(("velocity", "label"), [(30, "soft"), (49, "soft"), (50, "medium"), (96, "loud")])
def test_dynamics_labels(velocity, label):
    midi = pretty_midi.PrettyMIDI(initial_tempo=100)
    inst = pretty_midi.Instrument(program=40)
    inst.notes.append(pretty_midi.Note(velocity, 70, 0.0, 0.6))
    midi.instruments.append(inst)
    d = describe_stem("violin", [inst], midi)
    assert d.dynamics == label and d.instrument == "violin" and d.num_notes == 1


def test_descriptors_measure_audio_levels():
    midi = load_midi(MIDI / "waltz_fixed.mid")
    rng = np.random.default_rng(0)
    stem = 0.1 * rng.standard_normal(16000)
    mix = stem + 0.3 * rng.standard_normal(16000)
    d = describe_stem("piano", [midi.instruments[0]], midi, audio=stem, mix=mix)
    assert d.level_db == pytest.approx(-20.0, abs=0.2)
    assert d.level_vs_mix_db == pytest.approx(20 * np.log10(0.1 / np.sqrt(0.1**2 + 0.3**2)), abs=0.3)


def test_writer_is_deterministic_varied_and_faithful():
    midi = load_midi(MIDI / "band_tempo_changes.mid")
    desc = describe_stem("bass", group_instruments(midi)["bass"], midi, start=0.0, end=2.0)
    assert InstructionWriter(3)(desc, key="a") == InstructionWriter(3)(desc, key="a")
    sentences = {InstructionWriter(seed)(desc, key="a") for seed in range(30)}
    assert len(sentences) >= 15
    for sentence in sentences:
        assert "electric bass (finger)" in sentence and "120" in sentence and sentence.endswith(".")
        assert any(word in sentence for word in ("low", "down"))  # the register is stated


def test_triplets_sum_and_instructions(slakh_root):
    ds = SubtractiveTripletDataset(slakh_root, "train", segment_samples=32000)
    assert len(ds) > 0
    seen = set()
    for i in range(len(ds)):
        item = ds[i]
        torch.testing.assert_close(item["mix_minus"] + item["stem"], item["mix"], atol=1e-6, rtol=0)
        assert float(item["stem"].abs().max()) > 0  # only stems that play in the segment
        assert item["descriptors"]["num_notes"] >= 0 and isinstance(item["instruction"], str)
        seen.add((item["track"], item["stem_name"]))
    # The band has all four default stems, the waltz only bass and piano.
    assert {s for t, s in seen if t == "Track00001"} == {"bass", "drums", "guitar", "piano"}
    assert {s for t, s in seen if t == "Track00004"} == {"bass", "piano"}
    again = SubtractiveTripletDataset(slakh_root, "train", segment_samples=32000)
    assert [again[i]["instruction"] for i in range(5)] == [ds[i]["instruction"] for i in range(5)]


def test_training_triplets_follow_the_epoch(slakh_root):
    ds = SubtractiveTripletDataset(slakh_root, "train", segment_samples=24000, train=True, seed=2)
    first = [(ds[i]["track"], ds[i]["start"], ds[i]["stem_name"]) for i in range(len(ds))]
    ds.set_epoch(1)
    second = [(ds[i]["track"], ds[i]["start"], ds[i]["stem_name"]) for i in range(len(ds))]
    assert first != second
    for i in range(len(ds)):
        item = ds[i]
        assert float(item["stem"].abs().max()) > 0 and item["descriptors"]["seconds"] == pytest.approx(1.5)


def test_user_instruction_callable(slakh_root):
    calls = []

    def my_llm(desc):
        calls.append(desc)
        return f"{desc.stem} please"

    ds = SubtractiveTripletDataset(slakh_root, "train", segment_samples=32000, instruction_fn=my_llm)
    item = ds[0]
    assert item["instruction"] == f"{item['stem_name']} please" and len(calls) == 1
    bad = SubtractiveTripletDataset(slakh_root, "train", segment_samples=32000, instruction_fn=lambda d: "")
    with pytest.raises(ValueError, match="non-empty str"):
        bad[0]


def test_subtractive_triplet_function():
    torch.manual_seed(0)
    stems = torch.randn(2, 4, 100)
    out = subtractive_triplet(stems, 2)
    torch.testing.assert_close(out["mix"], stems.sum(1))
    torch.testing.assert_close(out["mix_minus"], stems[:, [0, 1, 3]].sum(1))
    torch.testing.assert_close(out["stem"], stems[:, 2])
    with pytest.raises(ValueError, match="no stem 4"):
        subtractive_triplet(stems, 4)


def test_drum_instructions_speak_of_grooves_and_names_are_plain():
    from stemforge.data.descriptors import plain_instrument_name

    midi = load_midi(MIDI / "band_tempo_changes.mid")
    drums = describe_stem("drums", group_instruments(midi)["drums"], midi)
    for seed in range(20):
        sentence = InstructionWriter(seed)(drums, key="k")
        assert "drums part" in sentence and " line" not in sentence and "notes" not in sentence
    assert plain_instrument_name("Slap Bass 1") == "slap bass"
    assert plain_instrument_name("Electric Bass (finger)") == "electric bass (finger)"
