"""Property test: random multi-track MIDI files with random tempo maps survive MIDI -> roll -> MIDI."""

from __future__ import annotations

import mido
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stemforge.midi import load_midi, midi_to_roll, roll_to_midi, write_midi

TPQ = 480
TICKS_PER_STEP = TPQ // 4


@st.composite
def midi_files(draw):
    tempos = draw(st.lists(st.tuples(st.integers(1, 60), st.floats(40, 240)), max_size=3))
    raw = draw(
        st.lists(
            st.tuples(
                st.integers(0, 2),
                st.integers(30, 90),
                st.integers(0, 63),
                st.integers(1, 8),
                st.integers(1, 127),
            ),
            min_size=1,
            max_size=25,
        )
    )
    notes, busy = [], set()
    for track, pitch, start, dur, vel in raw:  # no overlapping notes of one pitch in one track
        steps = {(track, pitch, s) for s in range(start, start + dur)}
        if not steps & busy:
            busy |= steps
            notes.append((track, pitch, start, dur, vel))
    return sorted({(0, 120.0), *((s, round(b, 3)) for s, b in tempos)}), notes


def write_file(path, tempos, notes):
    f = mido.MidiFile(type=1, ticks_per_beat=TPQ)
    conductor, last = mido.MidiTrack(), 0
    for step, bpm in tempos:
        conductor.append(
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=step * TICKS_PER_STEP - last)
        )
        last = step * TICKS_PER_STEP
    f.tracks.append(conductor)
    for track in range(3):
        events = []
        for t, pitch, start, dur, vel in notes:
            if t == track:
                events.append(
                    (
                        start * TICKS_PER_STEP,
                        1,
                        mido.Message("note_on", channel=track, note=pitch, velocity=vel),
                    )
                )
                events.append(
                    ((start + dur) * TICKS_PER_STEP, 0, mido.Message("note_off", channel=track, note=pitch))
                )
        events.sort(key=lambda e: (e[0], e[1]))
        midi_track, now = mido.MidiTrack([mido.MetaMessage("track_name", name=f"t{track}", time=0)]), 0
        for tick, _, msg in events:
            midi_track.append(msg.copy(time=tick - now))
            now = tick
        f.tracks.append(midi_track)
    f.save(path)


def note_list(midi):
    return sorted(
        (inst.name, n.pitch, n.velocity, n.start, n.end) for inst in midi.instruments for n in inst.notes
    )


@settings(
    max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(midi_files())
def test_random_files_round_trip(tmp_path, case):
    tempos, notes = case
    path = tmp_path / "random.mid"
    write_file(path, tempos, notes)
    midi = load_midi(path)
    roll = midi_to_roll(midi, velocity=True)
    # Every note sits on its 16th-note step, whatever the tempo map.
    for track, pitch, start, dur, _ in notes:
        s = roll.stems.index(f"t{track}")
        assert roll.onset[s, start, pitch] and roll.sustain[s, start : start + dur, pitch].all()
    assert int(roll.onset.sum()) == len(notes)
    back = load_midi(write_midi(roll_to_midi(roll), tmp_path / "back.mid"))
    expected = note_list(midi)
    got = note_list(back)
    assert [(a[0], a[1], a[2]) for a in got] == [(e[0], e[1], e[2]) for e in expected]
    # Times come back through integer ticks (960 per quarter) of the rewritten tempo map: within
    # one tick at 240 BPM (0.26 ms).
    np.testing.assert_allclose([g[3:] for g in got], [e[3:] for e in expected], atol=3e-4)
