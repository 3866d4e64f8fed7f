"""Stem grouping by General MIDI program family (Slakh2100 classes)."""

from __future__ import annotations

from pathlib import Path

import pretty_midi
import pytest

from stemforge.midi import (
    GM_FAMILIES,
    StemMap,
    family_programs,
    group_instruments,
    instrument_class,
    load_midi,
)

ROOT = Path(__file__).resolve().parents[3]
MIDI = ROOT / "tests" / "fixtures" / "midi"


def test_slakh_classes():
    assert instrument_class(0, False) == "Piano"
    assert instrument_class(7, False) == "Piano"
    assert instrument_class(24, False) == "Guitar" and instrument_class(31, False) == "Guitar"
    assert instrument_class(32, False) == "Bass" and instrument_class(39, False) == "Bass"
    assert instrument_class(50, False) == "Strings (continued)"
    assert instrument_class(50, True) == "Drums"
    assert len(GM_FAMILIES) == 16
    # Agrees with pretty_midi for every family except the one it renamed after Slakh was made.
    for program in range(128):
        if program // 8 != 6:
            assert instrument_class(program, False) == pretty_midi.program_to_instrument_class(program)
    assert list(family_programs(27)) == list(range(24, 32))
    with pytest.raises(ValueError, match="0-127"):
        instrument_class(128, False)


def test_group_band_file_into_default_stems():
    midi = load_midi(MIDI / "band_tempo_changes.mid")
    groups = group_instruments(midi)
    assert list(groups) == ["bass", "drums", "guitar", "piano"]
    assert {k: [i.name for i in v] for k, v in groups.items()} == {
        "bass": ["Bass"],
        "drums": ["Drums"],
        "guitar": ["Guitar"],
        "piano": ["Piano"],
    }
    with_other = group_instruments(midi, other="other")
    assert [i.name for i in with_other["other"]] == ["Strings"]


def test_custom_map_and_tracks_of_one_stem_grouped():
    midi = load_midi(MIDI / "band_tempo_changes.mid")
    keys = StemMap(programs={"keys": frozenset(range(0, 8)), "plucked": frozenset(range(24, 40))}, drums=None)
    groups = group_instruments(midi, keys)
    assert [i.name for i in groups["plucked"]] == ["Guitar", "Bass"]
    assert "drums" not in groups


def test_stem_map_validation():
    with pytest.raises(ValueError, match="both"):
        StemMap(programs={"a": frozenset({1, 2}), "b": frozenset({2})})
    with pytest.raises(ValueError, match="0-127"):
        StemMap(programs={"a": frozenset({200})})
    with pytest.raises(ValueError, match="unknown stems"):
        StemMap.slakh(("vocals",))
    assert StemMap.slakh(("strings (continued)", "drums")).stem_of(50, False) == "strings (continued)"
