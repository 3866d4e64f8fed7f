"""Categorical voices and the JSB chorales: split sizes, token range, MIDI round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stemforge.midi import (
    JSB_PROGRAMS,
    JSB_STEMS,
    NUM_CLASSES,
    REST,
    MidiError,
    jsb_midi,
    load_jsb,
    load_jsb_splits,
    load_midi,
    midi_to_roll,
    roll_to_voices,
    voices_to_midi,
    voices_to_roll,
    write_midi,
)

ROOT = Path(__file__).resolve().parents[3]
MIDI = ROOT / "tests" / "fixtures" / "midi"


def test_standard_split_sizes_and_token_range():
    splits = load_jsb_splits()
    assert {k: len(v) for k, v in splits.items()} == {"train": 229, "valid": 76, "test": 77}
    for chorales in splits.values():
        for tokens in chorales:
            assert tokens.dtype == torch.int64 and tokens.shape[0] == 4
            assert int(tokens.min()) >= 0 and int(tokens.max()) <= REST
    # Soprano above bass wherever both sing (SATB order).
    tokens = splits["train"][0]
    both = (tokens[0] != REST) & (tokens[3] != REST)
    assert bool((tokens[0][both] > tokens[3][both]).all())
    assert NUM_CLASSES == 129


def test_first_train_chorale_matches_the_json_source():
    tokens = load_jsb("train")[0]
    assert tokens[:, 0].tolist() == [74, 70, 65, 58]
    assert tokens[:, 4].tolist() == [75, 70, 58, 55]
    assert tokens.shape[1] == 192


@pytest.mark.parametrize(("split", "index"), [("train", 0), ("valid", 3), ("test", 76)])
def test_voices_midi_roll_voices_round_trip(split, index, tmp_path):
    tokens = load_jsb(split)[index]
    midi = jsb_midi(split, index)
    assert [i.name for i in midi.instruments] == list(JSB_STEMS)
    assert [i.program for i in midi.instruments] == [JSB_PROGRAMS[s] for s in JSB_STEMS]
    back = load_midi(write_midi(midi, tmp_path / "c.mid"))
    roll = midi_to_roll(back)
    # The roll ends at the last sounding step; trailing rests are not in the MIDI file.
    got = roll_to_voices(roll.sustain)
    assert torch.equal(got, tokens[:, : got.shape[1]])
    assert bool((tokens[:, got.shape[1] :] == REST).all())


def test_fixture_chorale_file_is_the_corpus_chorale():
    roll = midi_to_roll(load_midi(MIDI / "chorale_test005.mid"))
    tokens = load_jsb("test")[5]
    got = roll_to_voices(roll.sustain)
    assert torch.equal(got, tokens[:, : got.shape[1]])


def test_merge_repeats_controls_note_count():
    tokens = torch.tensor([[60, 60, 60, REST, 62, 62]])
    merged = voices_to_midi(tokens, ["v"], [0])
    split = voices_to_midi(tokens, ["v"], [0], merge_repeats=False)
    got = [(n.pitch, round(n.start, 9), round(n.end, 9)) for n in merged.instruments[0].notes]
    assert got == [(60, 0.0, 0.45), (62, 0.6, 0.9)]
    assert len(split.instruments[0].notes) == 5


def test_voices_to_roll_inverts_roll_to_voices():
    torch.manual_seed(0)
    tokens = torch.randint(0, NUM_CLASSES, (4, 50))
    roll = voices_to_roll(tokens)
    assert roll.shape == (4, 50, 128) and roll.dtype == torch.bool
    assert int(roll.sum()) == int((tokens != REST).sum())
    assert torch.equal(roll_to_voices(roll), tokens)


def test_polyphony_is_an_error_or_keeps_the_top_note():
    roll = torch.zeros(1, 3, 128, dtype=torch.bool)
    roll[0, 1, [60, 64]] = True
    with pytest.raises(MidiError, match="monophonic"):
        roll_to_voices(roll)
    assert roll_to_voices(roll, polyphony="highest").tolist() == [[REST, 64, REST]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        load_jsb("validation")  # type: ignore[arg-type]
    with pytest.raises(IndexError, match="77 chorales"):
        jsb_midi("test", 77)
    with pytest.raises(ValueError, match="programs has no entry"):
        jsb_midi("test", 0, programs={"soprano": 0})
    with pytest.raises(ValueError, match=r"0\.\.128"):
        voices_to_midi(torch.tensor([[200]]), ["v"], [0])
