"""Multi-track MIDI <-> piano-roll tensors (S, T, 128) with onset, sustain and velocity planes.

Two time grids:

* ``steps_per_quarter`` (default 4 = 16th notes): a musical grid that follows the file's tempo
  changes. Step k starts at quarter-note position k / steps_per_quarter, whose time in seconds is
  read off the tempo map (piecewise linear in beats), so a note written on a 16th-note tick stays on
  a grid step however the tempo changes.
* ``fps``: a fixed number of frames per second, ignoring the tempo.

A note is quantised to the nearest step boundaries (onset step = round(start), end step =
round(end), at least one step long). ``onset[s, t, p]`` is True where a note of pitch p starts at
step t, ``sustain[s, t, p]`` where it sounds during step t, and the optional ``velocity`` plane holds
the note's MIDI velocity on every step it sounds. Drum tracks stay their own stems and the program
of every stem travels with the roll. ``roll_to_midi`` turns a roll back into notes on the same grid
and writes the roll's tempo map, so MIDI -> roll -> MIDI keeps every note that lies on the grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pretty_midi
import torch

from stemforge.midi.grouping import StemMap, group_instruments
from stemforge.midi.io import MidiError

#: Rolls longer than this many steps are refused (a 16th-note grid at 120 BPM covers ~35 hours).
MAX_STEPS = 1_000_000
_ON_GRID_TOL = 1e-4  # in steps: a note within this of a boundary is "on the grid"


@dataclass(frozen=True)
class TempoMap:
    """Tempo changes as (times in seconds, BPM), with the beat position of each change."""

    times: tuple[float, ...]
    bpm: tuple[float, ...]

    @classmethod
    def from_midi(cls, midi: pretty_midi.PrettyMIDI) -> TempoMap:
        times, bpm = midi.get_tempo_changes()
        if len(times) == 0:
            return cls((0.0,), (120.0,))
        return cls(tuple(float(t) for t in times), tuple(float(b) for b in bpm))

    def _knots(self, end_time: float) -> tuple[np.ndarray, np.ndarray]:
        """Piecewise-linear knots (seconds, quarter notes) covering [0, end_time]."""
        times = list(self.times)
        if times[0] > 0:
            times = [0.0, *times]
            bpms = [self.bpm[0], *self.bpm]
        else:
            bpms = list(self.bpm)
        beats = [0.0]
        for i in range(1, len(times)):
            beats.append(beats[-1] + (times[i] - times[i - 1]) * bpms[i - 1] / 60.0)
        last_t = max(end_time, times[-1]) + 1.0
        beats.append(beats[-1] + (last_t - times[-1]) * bpms[-1] / 60.0)
        times.append(last_t)
        return np.asarray(times), np.asarray(beats)

    def time_to_beat(self, seconds: np.ndarray, end_time: float) -> np.ndarray:
        t, b = self._knots(end_time)
        return np.interp(seconds, t, b)

    def beat_to_time(self, beats: np.ndarray, end_time: float) -> np.ndarray:
        t, b = self._knots(end_time)
        return np.interp(beats, b, t)

    def apply_to(self, midi: pretty_midi.PrettyMIDI) -> None:
        """Make ``midi`` write these tempo changes (note times, in seconds, are unchanged)."""
        _set_tempo_map(midi, self)


@dataclass
class PianoRoll:
    """A multi-stem piano roll. Planes are (S, T, 128); ``times`` (T + 1,) holds step boundaries in seconds."""

    onset: torch.Tensor
    sustain: torch.Tensor
    velocity: torch.Tensor | None
    stems: tuple[str, ...]
    programs: tuple[int, ...]
    is_drum: tuple[bool, ...]
    times: torch.Tensor
    tempo: TempoMap
    steps_per_quarter: int | None = None
    fps: float | None = None

    @property
    def num_steps(self) -> int:
        return int(self.onset.shape[1])

    def __post_init__(self) -> None:
        s, t = len(self.stems), self.times.shape[0] - 1
        for name, plane in (("onset", self.onset), ("sustain", self.sustain), ("velocity", self.velocity)):
            if plane is not None and tuple(plane.shape) != (s, t, 128):
                raise ValueError(f"PianoRoll: {name} has shape {tuple(plane.shape)}, expected {(s, t, 128)}")
        if len(self.programs) != s or len(self.is_drum) != s:
            raise ValueError("PianoRoll: stems, programs and is_drum must have one entry per stem")
        if (self.steps_per_quarter is None) == (self.fps is None):
            raise ValueError("PianoRoll: give exactly one of steps_per_quarter and fps")


def _grid_times(
    tempo: TempoMap, end_time: float, steps_per_quarter: int | None, fps: float | None
) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    if fps is not None:
        if not fps > 0:
            raise ValueError(f"fps={fps}; give a positive number of frames per second")
        steps = max(1, math.ceil(end_time * fps - _ON_GRID_TOL))
        if steps > MAX_STEPS:
            raise MidiError(f"the piece needs {steps} frames at fps={fps}, more than {MAX_STEPS}")
        return np.arange(steps + 1) / fps, lambda sec: np.asarray(sec) * fps
    assert steps_per_quarter is not None
    if steps_per_quarter < 1:
        raise ValueError(f"steps_per_quarter={steps_per_quarter}; use a positive integer")
    end_step = float(tempo.time_to_beat(np.array([end_time]), end_time)[0]) * steps_per_quarter
    steps = max(1, math.ceil(end_step - _ON_GRID_TOL))
    if steps > MAX_STEPS:
        raise MidiError(
            f"the piece needs {steps} steps at {steps_per_quarter} per quarter, more than {MAX_STEPS}"
        )
    times = tempo.beat_to_time(np.arange(steps + 1) / steps_per_quarter, end_time)
    return times, lambda sec: tempo.time_to_beat(np.asarray(sec), end_time) * steps_per_quarter


def midi_to_roll(
    midi: pretty_midi.PrettyMIDI,
    *,
    stem_map: StemMap | None = None,
    steps_per_quarter: int | None = 4,
    fps: float | None = None,
    velocity: bool = False,
) -> PianoRoll:
    """Piano roll of ``midi``: one stem per track, or per named stem of ``stem_map`` (tracks summed).

    Give ``fps`` for a fixed frame rate (``steps_per_quarter`` is then ignored). With a stem map, the
    program of a stem is that of its first track (or the first program of the stem when it is
    empty, -1 for drums without a track).
    """
    if fps is not None:
        steps_per_quarter = None
    if stem_map is None:
        names = [inst.name.strip() or f"track{i}" for i, inst in enumerate(midi.instruments)]
        names = [f"{n}_{i}" if names.count(n) > 1 else n for i, n in enumerate(names)]
        groups = {name: [inst] for name, inst in zip(names, midi.instruments)}
        programs = [inst.program for inst in midi.instruments]
        drums = [inst.is_drum for inst in midi.instruments]
    else:
        groups = group_instruments(midi, stem_map)
        programs, drums = [], []
        for stem, insts in groups.items():
            if insts:
                programs.append(insts[0].program)
                drums.append(insts[0].is_drum)
            else:
                is_drum = stem == stem_map.drums
                progs = sorted(stem_map.programs.get(stem, ()))
                programs.append(progs[0] if progs else (0 if is_drum else -1))
                drums.append(is_drum)
    if not groups:
        raise MidiError("midi_to_roll: the MIDI has no tracks")
    end_time = max((n.end for insts in groups.values() for inst in insts for n in inst.notes), default=0.0)
    if end_time <= 0:
        raise MidiError("midi_to_roll: the MIDI (after stem grouping) has no notes")
    tempo = TempoMap.from_midi(midi)
    times, to_step = _grid_times(tempo, end_time, steps_per_quarter, fps)
    n_steps = len(times) - 1
    shape = (len(groups), n_steps, 128)
    onset = np.zeros(shape, dtype=bool)
    sustain = np.zeros(shape, dtype=bool)
    vel = np.zeros(shape, dtype=np.uint8) if velocity else None
    for s, insts in enumerate(groups.values()):
        notes = [n for inst in insts for n in inst.notes]
        if not notes:
            continue
        starts = to_step(np.array([n.start for n in notes]))
        ends = to_step(np.array([n.end for n in notes]))
        for note, a, b in zip(notes, np.rint(starts).astype(int), np.rint(ends).astype(int)):
            a = min(max(a, 0), n_steps - 1)
            b = min(max(b, a + 1), n_steps)
            onset[s, a, note.pitch] = True
            sustain[s, a:b, note.pitch] = True
            if vel is not None:
                vel[s, a:b, note.pitch] = np.maximum(vel[s, a:b, note.pitch], note.velocity)
    return PianoRoll(
        onset=torch.from_numpy(onset),
        sustain=torch.from_numpy(sustain),
        velocity=None if vel is None else torch.from_numpy(vel),
        stems=tuple(groups),
        programs=tuple(int(p) for p in programs),
        is_drum=tuple(bool(d) for d in drums),
        times=torch.from_numpy(np.asarray(times, dtype=np.float64)),
        tempo=tempo,
        steps_per_quarter=steps_per_quarter,
        fps=fps,
    )


def notes_on_grid(
    midi: pretty_midi.PrettyMIDI, *, steps_per_quarter: int | None = 4, fps: float | None = None
):
    """(instrument index, note) pairs whose start and end lie on the grid (within 1e-4 steps)."""
    if fps is not None:
        steps_per_quarter = None
    end_time = max((n.end for inst in midi.instruments for n in inst.notes), default=0.0)
    _, to_step = _grid_times(TempoMap.from_midi(midi), max(end_time, 1e-3), steps_per_quarter, fps)
    out = []
    for i, inst in enumerate(midi.instruments):
        for note in inst.notes:
            a, b = to_step(np.array([note.start, note.end]))
            if abs(a - round(a)) < _ON_GRID_TOL and abs(b - round(b)) < _ON_GRID_TOL and round(b) > round(a):
                out.append((i, note))
    return out


def _set_tempo_map(midi: pretty_midi.PrettyMIDI, tempo: TempoMap) -> None:
    # pretty_midi has no public setter for tempo changes; it writes them from _tick_scales
    # (tick, seconds per tick), the same list its reader builds.
    res = midi.resolution
    scales, tick, last_t, last_scale = [], 0.0, 0.0, None
    for t, bpm in zip(tempo.times, tempo.bpm):
        if last_scale is not None:
            tick += (t - last_t) / last_scale
        scale = 60.0 / (bpm * res)
        scales.append((round(tick), scale))
        last_t, last_scale = t, scale
    if scales[0][0] != 0:
        scales.insert(0, (0, scales[0][1]))
    midi._tick_scales = scales
    midi._update_tick_to_time(round(tick) + 1)


def roll_to_midi(
    roll: PianoRoll, *, default_velocity: int = 80, resolution: int = 960, stems: Sequence[str] | None = None
) -> pretty_midi.PrettyMIDI:
    """Write a roll back to multi-track MIDI (one named track per stem, with its program and drum flag).

    A note starts at every onset (or where a pitch starts sounding without one) and lasts while
    it sounds without a new onset. Times are the roll's grid times; the roll's tempo map is
    written, so a tempo-following grid read back from the file gives the same steps.
    """
    midi = pretty_midi.PrettyMIDI(resolution=resolution, initial_tempo=roll.tempo.bpm[0])
    _set_tempo_map(midi, roll.tempo)
    times = roll.times.tolist()
    onset = roll.onset.numpy()
    sustain = roll.sustain.numpy() | onset
    vel = None if roll.velocity is None else roll.velocity.numpy()
    chosen = set(stems) if stems is not None else None
    for s, name in enumerate(roll.stems):
        if chosen is not None and name not in chosen:
            continue
        program = roll.programs[s] if roll.programs[s] >= 0 else 0
        inst = pretty_midi.Instrument(program=program, is_drum=roll.is_drum[s], name=name)
        on = sustain[s]
        for pitch in np.flatnonzero(on.any(0)):
            col, starts_here = on[:, pitch], onset[s, :, pitch]
            t = 0
            n = len(col)
            while t < n:
                if not col[t]:
                    t += 1
                    continue
                start = t
                t += 1
                while t < n and col[t] and not starts_here[t]:
                    t += 1
                velocity = (
                    int(vel[s, start, pitch])
                    if vel is not None and vel[s, start, pitch] > 0
                    else default_velocity
                )
                inst.notes.append(pretty_midi.Note(velocity, int(pitch), times[start], times[t]))
        inst.notes.sort(key=lambda note: (note.start, note.pitch))
        midi.instruments.append(inst)
    return midi
