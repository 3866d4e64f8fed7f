"""A multi-track MIDI piece read as a voice model's input, and written back with new voices.

:func:`read_voice_song` puts a piece on the 16th-note grid that follows its tempo map
(:func:`~stemforge.midi.midi_to_roll`), matches its tracks to the model's voices
(:func:`~stemforge.midi.map_tracks_to_voices`) and reduces each matched track to one voice (the
bottom note of a chord for a bass, the top note otherwise), saying what it matched, reduced and
dropped. :func:`song_with_voices` replaces the generated voices' tracks by the new tokens and keeps
everything else of the file (other tracks, tempo map, programs).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pretty_midi
import torch
from torch import Tensor

from stemforge.midi.io import MidiError, load_midi
from stemforge.midi.roll import midi_to_roll
from stemforge.midi.voice_map import map_tracks_to_voices
from stemforge.midi.voices import REST, roll_to_voices

#: Grid of the voice models: 16th notes, four steps per quarter note.
STEPS_PER_QUARTER = 4


@dataclass(frozen=True)
class VoiceSong:
    """A MIDI piece on a voice model's stems: tokens, which stems it has, and the grid's times."""

    midi: pretty_midi.PrettyMIDI
    tokens: Tensor
    """(S, T) voice tokens in the model's stem order (REST where a stem is absent)."""
    present: tuple[bool, ...]
    """Per stem: the file has a track for it."""
    times: Tensor
    """(T + 1,) step boundaries in seconds."""
    programs: dict[str, int]
    track_of: dict[str, int]
    notes: tuple[str, ...] = ()
    """What the reading did that a user should know: tracks matched by family or register,
    polyphonic tracks reduced to one voice, tracks dropped."""
    source: str = "MIDI"
    """How errors name the piece (``MIDI path/to/file.mid``)."""


def read_voice_song(
    source: str | os.PathLike[str] | pretty_midi.PrettyMIDI,
    stems: Sequence[str],
    *,
    targets: Sequence[str] = (),
    voice_map: Mapping[str, str] | None = None,
    steps_per_quarter: int = STEPS_PER_QUARTER,
) -> VoiceSong:
    """Read ``source`` (a .mid path or a ``PrettyMIDI``) on ``stems``.

    Tracks match voices through ``voice_map`` (voice -> track name or ``#index``), then track names,
    General MIDI families and registers; the ``targets`` about to be generated are matched only
    through ``voice_map`` or their name (a target is not taken from another voice's track). Raises
    :class:`~stemforge.midi.MidiError` naming the file for unreadable input.
    """
    if isinstance(source, pretty_midi.PrettyMIDI):
        midi, label = source, "MIDI (in memory)"
    else:
        path = os.fspath(source)
        label = f"MIDI {path}"
        if os.path.isdir(path):
            raise MidiError(f"{label}: is a folder; give a .mid file")
        try:
            midi = load_midi(path)
        except MidiError as err:
            message = str(err)
            raise MidiError(message if message.startswith("MIDI") else f"MIDI {message}") from err
    roll = midi_to_roll(midi, steps_per_quarter=steps_per_quarter)
    named = {inst.name.strip().lower() for inst in midi.instruments}
    skip = [t for t in targets if t.lower() not in named]
    mapping = map_tracks_to_voices(midi, stems, explicit=dict(voice_map or {}), skip=skip, source=label)
    track_of = dict(mapping.tracks)
    notes: list[str] = []
    if any(how != "track name" for how in mapping.how.values()) or mapping.dropped:
        notes += mapping.describe(midi)
    tokens = torch.full((len(stems), roll.num_steps), REST, dtype=torch.long)
    for s, stem in enumerate(stems):
        if stem not in track_of:
            continue
        i = track_of[stem]
        chords = float((roll.sustain[i].sum(-1) > 1).float().mean())
        rule = "lowest" if stem.lower() == "bass" else "highest"
        tokens[s] = roll_to_voices(roll.sustain[i : i + 1], polyphony=rule)[0]
        if chords > 0:
            notes.append(
                f"{stem}: track #{i} plays chords on {100 * chords:.0f} % of its steps; reduced to its "
                f"{rule} note at each step"
            )
    return VoiceSong(
        midi=midi,
        tokens=tokens,
        present=tuple(s in track_of for s in stems),
        times=roll.times.float(),
        programs={stem: int(midi.instruments[i].program) for stem, i in track_of.items()},
        track_of=track_of,
        notes=tuple(notes),
        source=label,
    )


def check_context(song: VoiceSong, stems: Sequence[str], targets: Sequence[int]) -> None:
    """Insertion needs at least one given voice besides the ones to generate."""
    context = [stems[s] for s in range(len(stems)) if song.present[s] and s not in targets]
    if context:
        return
    others = [stems[s] for s in range(len(stems)) if s not in targets]
    raise MidiError(
        f"{song.source}: no track can play {', '.join(others) or '(none)'} (none is named so, none is of "
        f"that General MIDI family, no pitched track is left for a register), so there is no context to insert "
        f"{', '.join(stems[s] for s in targets)} into; say which track plays which voice with "
        f"--map VOICE=TRACK (a track name or #index), or give a file with those parts"
    )


def song_with_voices(
    song: VoiceSong,
    stems: Sequence[str],
    tokens: Tensor,
    targets: Sequence[int],
    default_programs: Mapping[str, int],
    velocity: int = 90,
) -> pretty_midi.PrettyMIDI:
    """A copy of the song's MIDI with the target stems' tracks replaced by ``tokens`` (S, T): equal
    consecutive tokens become one note, on the song's grid times."""
    midi = copy.deepcopy(song.midi)
    replaced = {song.track_of[stems[s]] for s in targets if stems[s] in song.track_of}
    midi.instruments = [inst for i, inst in enumerate(midi.instruments) if i not in replaced]
    times = song.times.tolist()
    for s in targets:
        stem = stems[s]
        program = song.programs.get(stem, default_programs.get(stem, 0))
        inst = pretty_midi.Instrument(program=program, name=stem)
        row = tokens[s].tolist()
        begin = 0
        for step in range(1, len(row) + 1):
            if step == len(row) or row[step] != row[begin]:
                if row[begin] != REST:
                    inst.notes.append(pretty_midi.Note(velocity, int(row[begin]), times[begin], times[step]))
                begin = step
        midi.instruments.append(inst)
    return midi
