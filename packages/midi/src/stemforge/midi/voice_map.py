"""Which track of a real multi-track MIDI file plays which voice of a model.

A Slakh ``all_src.mid`` has a dozen tracks named after instruments ("Electric Bass", "Drums", or
nothing at all), while a model knows a few named voices (soprano, alto, tenor, bass; or bass,
drums, guitar, piano). :func:`map_tracks_to_voices` matches them, in this order:

1. an explicit map (``--map soprano=Flute,bass=#3``: a track name, or ``#`` and its index);
2. a track named after the voice (case-insensitive);
3. a voice named after a General MIDI family ("bass", "guitar", "piano", "drums", ...) takes the
   busiest unmatched track of that family;
4. voices with a known register (soprano, alto, tenor, bass) take the busiest remaining pitched
   tracks, highest median pitch to the highest voice.

Every track left over is reported as dropped with the reason (drums, no notes, not needed), so that
the caller can say what it ignored instead of silently treating a piano's chords as one voice.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pretty_midi

from stemforge.midi.grouping import GM_FAMILIES, instrument_class
from stemforge.midi.io import MidiError

#: Voices with a register: the order is from the highest to the lowest.
REGISTER_VOICES = ("soprano", "alto", "tenor", "bass")


@dataclass(frozen=True)
class VoiceMapping:
    """``tracks[voice]`` = index of the track that plays it; ``how[voice]`` says why; ``dropped``
    lists (track index, track name, reason) for every track no voice uses."""

    tracks: dict[str, int]
    how: dict[str, str]
    dropped: list[tuple[int, str, str]] = field(default_factory=list)

    def describe(self, midi: pretty_midi.PrettyMIDI) -> list[str]:
        """One line per mapped voice and per dropped track."""
        lines = [
            f"{voice} <- track #{i} {_label(midi.instruments[i])} ({self.how[voice]})"
            for voice, i in self.tracks.items()
        ]
        lines += [f"dropped track #{i} {name}: {why}" for i, name, why in self.dropped]
        return lines


def _label(inst: pretty_midi.Instrument) -> str:
    name = inst.name.strip() or "(unnamed)"
    kind = "drums" if inst.is_drum else f"program {inst.program}"
    return f"{name!r} [{kind}]"


def parse_voice_map(text: str) -> dict[str, str]:
    """``"soprano=Flute,bass=#3"`` -> {"soprano": "Flute", "bass": "#3"}."""
    mapping: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        voice, sep, track = item.partition("=")
        if not sep or not voice.strip() or not track.strip():
            raise MidiError(
                f"--map {text!r}: expected VOICE=TRACK pairs (a track name or #index), e.g. bass=#3"
            )
        if voice.strip() in mapping:
            raise MidiError(f"--map {text!r}: voice {voice.strip()!r} is mapped twice")
        mapping[voice.strip()] = track.strip()
    return mapping


def _find_track(midi: pretty_midi.PrettyMIDI, spec: str, source: str) -> int:
    names = [inst.name.strip().lower() for inst in midi.instruments]
    listing = ", ".join(f"#{i} {_label(inst)}" for i, inst in enumerate(midi.instruments))
    if spec.startswith("#"):
        try:
            index = int(spec[1:])
        except ValueError:
            index = -1
        if not 0 <= index < len(names):
            raise MidiError(f"{source}: --map track {spec!r} does not exist; the tracks are {listing}")
        return index
    if spec.lower() not in names:
        raise MidiError(f"{source}: --map track {spec!r} is not a track name; the tracks are {listing}")
    return names.index(spec.lower())


def map_tracks_to_voices(
    midi: pretty_midi.PrettyMIDI,
    voices: Sequence[str],
    *,
    explicit: Mapping[str, str] | None = None,
    skip: Sequence[str] = (),
    source: str = "MIDI",
) -> VoiceMapping:
    """Match the tracks of ``midi`` to ``voices`` (see the module docstring).

    ``skip``: voices to leave unmatched by the automatic rules (the ones about to be generated);
    an explicit map still matches them. ``source`` names the file in errors.
    """
    explicit = dict(explicit or {})
    unknown = sorted(set(explicit) - set(voices))
    if unknown:
        raise MidiError(
            f"{source}: --map names {', '.join(unknown)}, which the model lacks; its voices are {', '.join(voices)}"
        )
    tracks: dict[str, int] = {}
    how: dict[str, str] = {}
    used: set[int] = set()

    def take(voice: str, index: int, reason: str) -> None:
        if index in used:
            owner = next(v for v, i in tracks.items() if i == index)
            raise MidiError(
                f"{source}: track #{index} is mapped to both {owner} and {voice}; give each voice its own track"
            )
        tracks[voice], how[voice] = index, reason
        used.add(index)

    for voice, spec in explicit.items():
        take(voice, _find_track(midi, spec, source), "--map")
    names = [inst.name.strip().lower() for inst in midi.instruments]
    pending = [v for v in voices if v not in tracks and v not in skip]
    for voice in list(pending):
        if voice.lower() in names and names.index(voice.lower()) not in used:
            take(voice, names.index(voice.lower()), "track name")
            pending.remove(voice)

    def busy(i: int) -> int:
        return len(midi.instruments[i].notes)

    pitched = [i for i, inst in enumerate(midi.instruments) if not inst.is_drum and inst.notes]
    families = {f.lower(): f for f in (*GM_FAMILIES, "Drums")}
    for voice in list(pending):
        family = families.get(voice.lower())
        if family is None:
            continue
        candidates = [
            i
            for i, inst in enumerate(midi.instruments)
            if i not in used and inst.notes and instrument_class(inst.program, inst.is_drum) == family
        ]
        if candidates:
            take(voice, max(candidates, key=busy), f"General MIDI family {family}")
            pending.remove(voice)
    register = [v for v in REGISTER_VOICES if v in pending]
    free = sorted((i for i in pitched if i not in used), key=busy, reverse=True)[: len(register)]
    by_pitch = sorted(
        free, key=lambda i: statistics.median(n.pitch for n in midi.instruments[i].notes), reverse=True
    )
    for voice, index in zip(register, by_pitch):
        median = statistics.median(n.pitch for n in midi.instruments[index].notes)
        take(voice, index, f"register: median pitch {median:g}")
    dropped = []
    for i, inst in enumerate(midi.instruments):
        if i in used:
            continue
        if inst.is_drum:
            why = "drums (no voice of the model is a drum part)"
        elif not inst.notes:
            why = "no notes"
        else:
            why = "not needed (every voice to keep has a track)"
        dropped.append((i, inst.name.strip() or "(unnamed)", why))
    return VoiceMapping(tracks, how, dropped)
