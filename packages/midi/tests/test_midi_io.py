"""Bad MIDI input gets a clear MidiError naming the file; writing is atomic."""

from __future__ import annotations

from pathlib import Path

import mido
import pretty_midi
import pytest

from stemforge.midi import MidiError, load_midi, write_midi

ROOT = Path(__file__).resolve().parents[3]
MIDI = ROOT / "tests" / "fixtures" / "midi"


def test_loads_real_files():
    midi = load_midi(MIDI / "band_tempo_changes.mid")
    assert [i.name for i in midi.instruments] == ["Drums", "Piano", "Guitar", "Bass", "Strings"]
    assert load_midi((MIDI / "waltz_fixed.mid").read_bytes()).instruments[0].program == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "not a Standard MIDI file"),
        (b"hello, I am a text file\n", "not a Standard MIDI file"),
    ],
)
def test_empty_and_non_midi_files(tmp_path, content, message):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(MidiError, match=message) as info:
        load_midi(path)
    assert str(path) in str(info.value)


def test_truncated_file(tmp_path):
    data = (MIDI / "band_tempo_changes.mid").read_bytes()
    path = tmp_path / "cut.mid"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(MidiError, match="truncated or corrupt") as info:
        load_midi(path)
    assert "cut.mid" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(MidiError, match="no such MIDI file"):
        load_midi(tmp_path / "nothing.mid")


def test_file_without_notes(tmp_path):
    midi = pretty_midi.PrettyMIDI()
    midi.instruments.append(pretty_midi.Instrument(program=0, name="empty"))
    path = write_midi(midi, tmp_path / "silent.mid")
    with pytest.raises(MidiError, match="has no notes"):
        load_midi(path)
    assert load_midi(path, require_notes=False).instruments == []


@pytest.mark.parametrize("microseconds_per_beat", [1, 16_000_000])
def test_absurd_tempo(tmp_path, microseconds_per_beat):
    f = mido.MidiFile(type=1, ticks_per_beat=480)
    track = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=microseconds_per_beat, time=0),
            mido.Message("note_on", note=60, velocity=90, time=0),
            mido.Message("note_off", note=60, velocity=0, time=480),
        ]
    )
    f.tracks.append(track)
    path = tmp_path / "tempo.mid"
    f.save(path)
    with pytest.raises(MidiError, match=r"tempo .* BPM is outside"):
        load_midi(path)


def test_huge_file_and_too_long_piece(tmp_path):
    path = MIDI / "band_tempo_changes.mid"
    with pytest.raises(MidiError, match="more than max_bytes=100"):
        load_midi(path, max_bytes=100)
    with pytest.raises(MidiError, match="raise max_seconds"):
        load_midi(path, max_seconds=5.0)


def test_write_is_atomic(tmp_path):
    midi = load_midi(MIDI / "waltz_fixed.mid")
    out = write_midi(midi, tmp_path / "sub" / "copy.mid")
    again = load_midi(out)
    assert [len(i.notes) for i in again.instruments] == [len(i.notes) for i in midi.instruments]
    broken = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(program=0)
    inst.notes.append(pretty_midi.Note(velocity=90, pitch=300, start=0.0, end=1.0))  # not a MIDI pitch
    broken.instruments.append(inst)
    with pytest.raises(ValueError):
        write_midi(broken, tmp_path / "broken.mid")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # no half-written file, no temp file
