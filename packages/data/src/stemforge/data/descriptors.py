"""Descriptors of one stem measured from its MIDI and its audio, the input of the instruction writer.

Subtractive Training (Villa-Renteria et al. 2024) pairs each (mix minus stem) with a text
instruction that describes the missing stem. This module measures what such an instruction talks
about: the instrument, its register (median pitch), note density (notes per second), rhythm (where
onsets fall on the beat grid, and how long notes are held), dynamics (mean MIDI velocity, and the
stem's RMS level relative to the mix), and the tempo. Labels use fixed, documented thresholds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pretty_midi

#: Median MIDI pitch thresholds: below 48 (C3) "low", from 72 (C5) "high", else "middle".
REGISTER_EDGES = (48, 72)
#: Notes per second: below 1.5 "sparse", from 4 "busy", else "moderate".
DENSITY_EDGES = (1.5, 4.0)
#: Mean velocity: below 50 "soft", from 96 "loud", else "medium".
DYNAMICS_EDGES = (50, 96)


@dataclass(frozen=True)
class StemDescriptors:
    """What an instruction may say about a stem; every field is measured, none is invented."""

    stem: str
    instrument: str
    is_drum: bool
    num_notes: int
    seconds: float
    median_pitch: float | None
    register: str | None
    notes_per_second: float
    density: str
    on_beat_fraction: float
    offbeat_sixteenth_fraction: float
    mean_duration_beats: float
    rhythm: str
    mean_velocity: float
    dynamics: str
    level_db: float | None
    level_vs_mix_db: float | None
    tempo_bpm: float

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def plain_instrument_name(name: str) -> str:
    """A General MIDI program name as a musician says it: lower case, without "1"/"2" variants."""
    return re.sub(r"\s+\d$", "", name.strip()).lower()


def _label(value: float, edges: tuple[float, float], names: tuple[str, str, str]) -> str:
    return names[0] if value < edges[0] else names[2] if value >= edges[1] else names[1]


def _rms_db(x: np.ndarray) -> float | None:
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return None if rms <= 0 else 20 * np.log10(rms)


def describe_stem(
    stem: str,
    instruments: Sequence[pretty_midi.Instrument],
    midi: pretty_midi.PrettyMIDI,
    *,
    start: float = 0.0,
    end: float | None = None,
    instrument_name: str | None = None,
    audio: np.ndarray | None = None,
    mix: np.ndarray | None = None,
) -> StemDescriptors:
    """Measure a stem over [start, end) seconds from its MIDI tracks (and optionally its audio).

    ``midi`` gives the tempo map (the beat grid); ``audio`` and ``mix`` (same window, same rate)
    give the stem's RMS level and its level relative to the mixture.
    """
    notes = [n for inst in instruments for n in inst.notes]
    end = end if end is not None else max((n.end for n in notes), default=start)
    window = [n for n in notes if n.start < end and n.end > start]
    onsets = [n for n in window if start <= n.start < end]
    seconds = max(end - start, 1e-9)
    is_drum = bool(instruments) and all(inst.is_drum for inst in instruments)
    if instrument_name is None:
        if is_drum:
            instrument_name = "drums"
        elif instruments:
            instrument_name = plain_instrument_name(
                pretty_midi.program_to_instrument_name(int(instruments[0].program))
            )
        else:
            instrument_name = stem
    times, bpms = midi.get_tempo_changes()
    tempo = float(bpms[np.searchsorted(times, start, side="right") - 1]) if len(bpms) else 120.0
    # Beat positions of onsets through the tempo map (pretty_midi's tick clock).
    ticks_per_beat = midi.resolution
    positions = np.array([midi.time_to_tick(n.start) / ticks_per_beat for n in onsets])
    durations = np.array(
        [(midi.time_to_tick(n.end) - midi.time_to_tick(n.start)) / ticks_per_beat for n in window]
    )
    if positions.size:
        frac = positions - np.floor(positions)
        on_beat = float(np.mean(np.minimum(frac, 1 - frac) < 0.02))
        sixteenth = np.round(frac * 4) % 4
        on_grid = np.abs(frac * 4 - np.round(frac * 4)) < 0.08
        offbeat_16 = float(np.mean(on_grid & ((sixteenth == 1) | (sixteenth == 3))))
    else:
        on_beat = offbeat_16 = 0.0
    mean_dur = float(durations.mean()) if durations.size else 0.0
    if not onsets:
        rhythm = "silent"
    elif mean_dur >= 1.5 and len(onsets) / seconds * 60 / tempo < 1.0:
        rhythm = "sustained"
    elif offbeat_16 >= 0.25:
        rhythm = "syncopated"
    elif on_beat >= 0.75:
        rhythm = "on the beat"
    else:
        rhythm = "flowing"
    pitches = [n.pitch for n in window]
    median = float(np.median(pitches)) if pitches and not is_drum else None
    register = None if median is None else _label(median, REGISTER_EDGES, ("low", "middle", "high"))
    nps = len(onsets) / seconds
    velocity = float(np.mean([n.velocity for n in onsets])) if onsets else 0.0
    level = _rms_db(audio) if audio is not None else None
    mix_level = _rms_db(mix) if mix is not None else None
    return StemDescriptors(
        stem=stem,
        instrument=instrument_name,
        is_drum=is_drum,
        num_notes=len(onsets),
        seconds=float(seconds),
        median_pitch=median,
        register=register,
        notes_per_second=float(nps),
        density=_label(nps, DENSITY_EDGES, ("sparse", "moderate", "busy")),
        on_beat_fraction=on_beat,
        offbeat_sixteenth_fraction=offbeat_16,
        mean_duration_beats=mean_dur,
        rhythm=rhythm,
        mean_velocity=velocity,
        dynamics=_label(velocity, DYNAMICS_EDGES, ("soft", "medium", "loud")),
        level_db=level,
        level_vs_mix_db=None if level is None or mix_level is None else level - mix_level,
        tempo_bpm=tempo,
    )
