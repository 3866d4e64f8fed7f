"""Multi-part pieces of the music21 corpus (Bach chorales, Palestrina masses, ...) as multi-track MIDI.

music21 (optional extra: ``pip install 'stemforge-midi[music21]'``) ships its corpus inside its
wheel, so this works offline. Each part of a score becomes one named MIDI track (the part name in
lower case, e.g. "soprano"); music21's MIDI translator writes the score's tempo and the MIDI file
is read back and validated by :func:`stemforge.midi.load_midi`. Parts without an instrument
program get program 0 unless ``programs`` names one for them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pretty_midi

from stemforge.midi.io import MidiError, load_midi

EXTRA_HINT = "install the optional extra: pip install 'stemforge-midi[music21]'"


def _music21():
    try:
        import music21
    except ImportError as err:
        raise ImportError(f"music21 is not installed; {EXTRA_HINT}") from err
    return music21


def music21_corpus_paths(composer: str = "bach") -> list[Path]:
    """Paths of the corpus works of ``composer`` ("bach", "palestrina", "monteverdi", ...)."""
    music21 = _music21()
    paths = [Path(p) for p in music21.corpus.getComposer(composer)]
    if not paths:
        raise ValueError(f"music21 corpus has no works for composer={composer!r}; try 'bach' or 'palestrina'")
    return sorted(paths)


def music21_to_midi(
    source: str | Path,
    *,
    min_parts: int = 2,
    programs: Mapping[str, int] | None = None,
) -> pretty_midi.PrettyMIDI:
    """Parse a score (a corpus path or any file music21 reads) into multi-track MIDI, one track per part."""
    music21 = _music21()
    try:
        score = music21.converter.parse(str(source))
    except Exception as err:
        raise MidiError(f"{source}: music21 cannot parse this score ({type(err).__name__}: {err})") from err
    parts = list(getattr(score, "parts", []))
    if len(parts) < min_parts:
        raise MidiError(f"{source}: {len(parts)} part(s), fewer than min_parts={min_parts}")
    data = music21.midi.translate.music21ObjectToMidiFile(score).writestr()
    midi = load_midi(bytes(data))
    names = [(p.partName or f"part{i}").strip().lower() for i, p in enumerate(parts)]
    if len(midi.instruments) != len(parts):
        raise MidiError(
            f"{source}: {len(parts)} parts but {len(midi.instruments)} MIDI tracks after translation"
        )
    for inst, name in zip(midi.instruments, names):
        inst.name = name
        if programs is not None and name in programs:
            inst.program = int(programs[name])
    return midi


def iter_music21_corpus(
    composer: str = "bach",
    *,
    limit: int | None = None,
    min_parts: int = 2,
    programs: Mapping[str, int] | None = None,
) -> Iterator[tuple[str, pretty_midi.PrettyMIDI]]:
    """(work name, MIDI) for the corpus works of ``composer`` with at least ``min_parts`` parts.

    Works that are not multi-part (or that music21 cannot translate) are skipped.
    """
    count = 0
    for path in music21_corpus_paths(composer):
        if limit is not None and count >= limit:
            return
        try:
            midi = music21_to_midi(path, min_parts=min_parts, programs=programs)
        except MidiError:
            continue
        count += 1
        yield path.stem, midi
