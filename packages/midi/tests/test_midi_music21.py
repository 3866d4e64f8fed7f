"""The music21 corpus as multi-track MIDI (optional extra; skipped when music21 is missing)."""

from __future__ import annotations

import pytest

from stemforge.midi import iter_music21_corpus, midi_to_roll, music21_corpus_paths, music21_to_midi

music21 = pytest.importorskip(
    "music21", reason="music21 is an optional extra: pip install 'stemforge-midi[music21]'"
)


def test_bach_chorale_parts_become_named_tracks():
    paths = music21_corpus_paths("bach")
    assert len(paths) > 300
    path = next(p for p in paths if p.stem == "bwv10.7")
    score = music21.converter.parse(str(path))
    midi = music21_to_midi(path, programs={"soprano": 73})
    names = [(p.partName or "").lower() for p in score.parts]
    assert [i.name for i in midi.instruments] == names
    assert "soprano" in names and "bass" in names
    by_name = {i.name: i for i in midi.instruments}
    assert by_name["soprano"].program == 73
    # Every part's notes survive the translation: compare with music21's own note list, with tied
    # notes joined (MIDI has no ties).
    for part in score.parts:
        name = (part.partName or "").lower()
        joined = part.stripTies()
        expected = sorted(p.midi for n in joined.recurse().notes for p in n.pitches if not n.duration.isGrace)
        got = sorted(n.pitch for n in by_name[name].notes)
        assert got == expected, name
    roll = midi_to_roll(midi)
    assert roll.stems == tuple(names)


def test_iter_corpus_limit_and_palestrina():
    works = list(iter_music21_corpus("palestrina", limit=2, min_parts=4))
    assert len(works) == 2
    for _, midi in works:
        assert len(midi.instruments) >= 4 and all(len(i.notes) > 0 for i in midi.instruments)
    with pytest.raises(ValueError, match="no works"):
        music21_corpus_paths("nobody-at-all")
