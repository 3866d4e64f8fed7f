"""Matching the tracks of real multi-track MIDI files (no voice names) to a model's voices."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stemforge.midi import (
    JSB_STEMS,
    MidiError,
    load_midi,
    map_tracks_to_voices,
    midi_to_roll,
    parse_voice_map,
    roll_to_voices,
)

MIDI = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "midi"


def test_band_file_maps_by_family_and_register_and_drops_drums() -> None:
    midi = load_midi(MIDI / "band_tempo_changes.mid")  # Drums, Piano, Guitar, Bass, Strings
    mapping = map_tracks_to_voices(midi, JSB_STEMS, skip=["alto"])
    assert mapping.tracks["bass"] == 3 and mapping.how["bass"] == "track name"
    assert "alto" not in mapping.tracks
    # The two busiest remaining pitched tracks take soprano and tenor, the higher one soprano.
    high, low = mapping.tracks["soprano"], mapping.tracks["tenor"]
    median = {
        i: sorted(n.pitch for n in midi.instruments[i].notes)[len(midi.instruments[i].notes) // 2]
        for i in (high, low)
    }
    assert median[high] > median[low]
    dropped = {i: why for i, _, why in mapping.dropped}
    assert dropped[0].startswith("drums")
    assert set(dropped) | set(mapping.tracks.values()) == set(range(len(midi.instruments)))
    lines = mapping.describe(midi)
    assert any(line.startswith("dropped track #0 Drums") for line in lines)


def test_family_names_and_explicit_map() -> None:
    midi = load_midi(MIDI / "band_tempo_changes.mid")
    mapping = map_tracks_to_voices(midi, ("bass", "drums", "guitar", "piano"))
    assert mapping.tracks == {"bass": 3, "drums": 0, "guitar": 2, "piano": 1}
    assert [why for _, _, why in mapping.dropped] == ["not needed (every voice to keep has a track)"]
    explicit = map_tracks_to_voices(midi, JSB_STEMS, explicit=parse_voice_map("soprano=strings, bass=#1"))
    assert explicit.tracks["soprano"] == 4 and explicit.tracks["bass"] == 1
    assert explicit.how["soprano"] == "--map"


def test_unnamed_tracks_map_by_register() -> None:
    midi = load_midi(MIDI / "waltz_fixed.mid")  # unnamed piano (program 1) and bass (program 32)
    mapping = map_tracks_to_voices(midi, JSB_STEMS, skip=["alto", "tenor"])
    piano, bass = (i for i, inst in enumerate(midi.instruments) if not inst.is_drum)
    assert midi.instruments[bass].program == 32
    assert mapping.tracks == {"bass": bass, "soprano": piano}


def test_bad_maps_name_the_problem() -> None:
    midi = load_midi(MIDI / "band_tempo_changes.mid")
    with pytest.raises(MidiError, match="expected VOICE=TRACK"):
        parse_voice_map("soprano")
    with pytest.raises(MidiError, match="'Oboe' is not a track name; the tracks are #0 'Drums'"):
        map_tracks_to_voices(midi, JSB_STEMS, explicit={"soprano": "Oboe"})
    with pytest.raises(MidiError, match="track '#9' does not exist"):
        map_tracks_to_voices(midi, JSB_STEMS, explicit={"soprano": "#9"})
    with pytest.raises(MidiError, match="names piccolo, which the model lacks"):
        map_tracks_to_voices(midi, JSB_STEMS, explicit={"piccolo": "#1"})
    with pytest.raises(MidiError, match="track #1 is mapped to both soprano and alto"):
        map_tracks_to_voices(midi, JSB_STEMS, explicit={"soprano": "#1", "alto": "Piano"})


def test_lowest_note_reduction_of_chords() -> None:
    roll = midi_to_roll(load_midi(MIDI / "band_tempo_changes.mid"))
    piano = roll.sustain[1:2]
    chords = piano.sum(-1) > 1
    assert bool(chords.any())
    low, high = roll_to_voices(piano, polyphony="lowest")[0], roll_to_voices(piano, polyphony="highest")[0]
    assert bool((low[chords[0]] < high[chords[0]]).all())
    assert torch.equal(low[~chords[0]], high[~chords[0]])
