"""Piano rolls on real MIDI files: tempo-following and fixed-fps grids, round trips, drums, programs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch

from stemforge.midi import (
    MidiError,
    StemMap,
    load_midi,
    midi_to_roll,
    notes_on_grid,
    roll_to_midi,
    write_midi,
)

ROOT = Path(__file__).resolve().parents[3]
MIDI = ROOT / "tests" / "fixtures" / "midi"
FILES = ["band_tempo_changes.mid", "chorale_train000.mid", "chorale_test005.mid", "waltz_fixed.mid"]


def note_set(midi, notes=None):
    """Notes as (track, pitch, start ms, end ms); times rounded to the millisecond grid."""
    items = (
        notes
        if notes is not None
        else [(i, n) for i, inst in enumerate(midi.instruments) for n in inst.notes]
    )
    return {(i, n.pitch, round(n.start * 1000), round(n.end * 1000)) for i, n in items}


def reference_onsets(midi: pretty_midi.PrettyMIDI, steps_per_quarter: int) -> np.ndarray:
    """Slow reference: pretty_midi's own tick clock (time_to_tick) divided into grid steps."""
    ticks_per_step = midi.resolution / steps_per_quarter
    end = max(n.end for inst in midi.instruments for n in inst.notes)
    steps = int(np.ceil(midi.time_to_tick(end) / ticks_per_step - 1e-4))
    onset = np.zeros((len(midi.instruments), steps, 128), dtype=bool)
    for s, inst in enumerate(midi.instruments):
        for note in inst.notes:
            onset[s, round(midi.time_to_tick(note.start) / ticks_per_step), note.pitch] = True
    return onset


@pytest.mark.parametrize("name", FILES)
def test_tempo_following_grid_matches_tick_reference(name):
    midi = load_midi(MIDI / name)
    roll = midi_to_roll(midi)
    np.testing.assert_array_equal(roll.onset.numpy(), reference_onsets(midi, 4))


@pytest.mark.parametrize("name", FILES)
def test_round_trip_keeps_every_note_on_the_grid(name, tmp_path):
    midi = load_midi(MIDI / name)
    on_grid = notes_on_grid(midi)
    roll = midi_to_roll(midi, velocity=True)
    path = write_midi(roll_to_midi(roll), tmp_path / "back.mid")
    back = load_midi(path)
    assert note_set(midi, on_grid) <= note_set(back)
    # Velocities, programs, drum flags and names come back too.
    vel_in = {(i, n.pitch, round(n.start * 1000)): n.velocity for i, n in on_grid}
    vel_out = {
        (i, n.pitch, round(n.start * 1000)): n.velocity
        for i, inst in enumerate(back.instruments)
        for n in inst.notes
    }
    assert all(vel_out[k] == v for k, v in vel_in.items())
    assert [(i.program, i.is_drum) for i in back.instruments] == [
        (i.program, i.is_drum) for i in midi.instruments
    ]
    # Reading the written file gives the same roll (its tempo map was written).
    again = midi_to_roll(back, velocity=True)
    assert torch.equal(again.onset, roll.onset) and torch.equal(again.sustain, roll.sustain)


def test_band_file_grid_follows_tempo_changes():
    midi = load_midi(MIDI / "band_tempo_changes.mid")
    assert len(midi.get_tempo_changes()[0]) == 4
    roll = midi_to_roll(midi)
    assert roll.num_steps == 80  # 5 bars of 16ths, whatever the tempo
    step_lengths = np.diff(roll.times.numpy())
    # 16th notes last 60 / bpm / 4 seconds in each tempo section: 120, 90, 150, 100 BPM.
    np.testing.assert_allclose(step_lengths[[0, 20, 40, 70]], [0.125, 60 / 90 / 4, 0.1, 0.15], rtol=1e-4)
    # Every note but the two triplets is on the grid.
    assert len(notes_on_grid(midi)) == sum(len(i.notes) for i in midi.instruments) - 2


def test_fixed_fps_grid_on_file_with_tempo_changes(tmp_path):
    midi = load_midi(MIDI / "band_tempo_changes.mid")
    roll = midi_to_roll(midi, fps=8.0)  # 8 frames/s = 16th notes at 120 BPM, the first tempo only
    end = max(n.end for i in midi.instruments for n in i.notes)
    assert roll.num_steps == int(np.ceil(end * 8 - 1e-4)) and roll.fps == 8.0
    np.testing.assert_allclose(roll.times.numpy(), np.arange(roll.num_steps + 1) / 8)
    for s, inst in enumerate(midi.instruments):
        for note in inst.notes:
            assert roll.onset[s, round(note.start * 8), note.pitch]
    on_fps = notes_on_grid(midi, fps=8.0)
    on_beats = notes_on_grid(midi)
    assert 0 < len(on_fps) < len(on_beats)  # the tempo changes move notes off a fixed grid
    assert all(n.start < 2.0 + 1e-6 or abs(n.start * 8 - round(n.start * 8)) < 1e-3 for _, n in on_fps)
    back = load_midi(write_midi(roll_to_midi(roll), tmp_path / "fps.mid"))
    assert note_set(midi, on_fps) <= note_set(back)


def test_fixed_fps_round_trip_of_chorale():
    midi = load_midi(MIDI / "chorale_train000.mid")  # 100 BPM: a 16th is 0.15 s = 3 frames at 20 fps
    assert len(notes_on_grid(midi, fps=20.0)) == sum(len(i.notes) for i in midi.instruments)
    roll = midi_to_roll(midi, fps=20.0)
    assert note_set(midi) == note_set(roll_to_midi(roll))


def test_stem_map_groups_tracks_and_keeps_drums():
    midi = load_midi(MIDI / "band_tempo_changes.mid")
    roll = midi_to_roll(midi, stem_map=StemMap.slakh())
    assert roll.stems == ("bass", "drums", "guitar", "piano")
    assert roll.is_drum == (False, True, False, False)
    assert roll.programs == (33, 0, 25, 0)
    per_track = midi_to_roll(midi)
    # The grouped bass stem equals the Bass track's roll; the strings track is left out.
    assert torch.equal(roll.sustain[0], per_track.sustain[3])
    assert torch.equal(roll.onset[1], per_track.onset[0])
    assert int(roll.onset.sum()) == int(per_track.onset[:4].sum())


def test_stem_names_per_track():
    assert midi_to_roll(load_midi(MIDI / "waltz_fixed.mid")).stems == ("track0", "track1")
    midi = load_midi(MIDI / "band_tempo_changes.mid")
    midi.instruments[1].name = "Drums"
    assert midi_to_roll(midi).stems == ("Drums_0", "Drums_1", "Guitar", "Bass", "Strings")


def test_missing_stem_is_silent_with_family_program():
    midi = load_midi(MIDI / "waltz_fixed.mid")  # piano and bass only
    roll = midi_to_roll(midi, stem_map=StemMap.slakh())
    assert roll.stems == ("bass", "drums", "guitar", "piano")
    assert not roll.sustain[1].any() and not roll.sustain[2].any()
    assert roll.programs[2] == 24 and roll.programs[3] == 1


def test_velocity_plane_and_overlapping_onsets():
    midi = pretty_midi.PrettyMIDI(initial_tempo=120)
    inst = pretty_midi.Instrument(program=0, name="keys")
    # Repeated pitch: two notes back to back must stay two notes.
    inst.notes += [pretty_midi.Note(50, 60, 0.0, 0.25), pretty_midi.Note(100, 60, 0.25, 0.5)]
    midi.instruments.append(inst)
    roll = midi_to_roll(midi, velocity=True)
    assert roll.velocity is not None
    assert roll.velocity[0, :2, 60].tolist() == [50, 50] and roll.velocity[0, 2:4, 60].tolist() == [100, 100]
    notes = roll_to_midi(roll).instruments[0].notes
    assert [(n.start, n.end, n.velocity) for n in notes] == [(0.0, 0.25, 50), (0.25, 0.5, 100)]


def test_roll_errors():
    empty = pretty_midi.PrettyMIDI()
    empty.instruments.append(pretty_midi.Instrument(0))
    with pytest.raises(MidiError, match="no notes"):
        midi_to_roll(empty)
    midi = load_midi(MIDI / "waltz_fixed.mid")
    with pytest.raises(ValueError, match="steps_per_quarter"):
        midi_to_roll(midi, steps_per_quarter=0)
    with pytest.raises(MidiError, match="more than"):
        midi_to_roll(midi, fps=1e6)
