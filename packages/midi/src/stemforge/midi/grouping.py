"""Grouping the instruments of a multi-track MIDI file into named stems by General MIDI program.

The default map follows Slakh2100's ``inst_class`` values (the General MIDI program families of
pretty_midi's ``program_to_instrument_class``): piano = programs 0-7, guitar = 24-31,
bass = 32-39, and drums = every track with the drum flag, whatever its program.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pretty_midi

DEFAULT_STEMS: tuple[str, ...] = ("bass", "drums", "guitar", "piano")

#: The 16 General MIDI families as Slakh2100 writes them in ``inst_class`` (8 programs each).
#: Slakh used the pretty_midi names of 2019, where programs 48-55 are "Strings (continued)"
#: (pretty_midi >= 0.2.10 calls them "Ensemble"), so the list is spelled out here.
GM_FAMILIES: tuple[str, ...] = (
    "Piano",
    "Chromatic Percussion",
    "Organ",
    "Guitar",
    "Bass",
    "Strings",
    "Strings (continued)",
    "Brass",
    "Reed",
    "Pipe",
    "Synth Lead",
    "Synth Pad",
    "Synth Effects",
    "Ethnic",
    "Percussive",
    "Sound Effects",
)
DRUMS_CLASS = "Drums"


def instrument_class(program: int, is_drum: bool) -> str:
    """Slakh2100's ``inst_class`` of a MIDI track: its GM family name, or "Drums"."""
    if is_drum:
        return DRUMS_CLASS
    if not 0 <= program <= 127:
        raise ValueError(f"program={program} is not a General MIDI program; use 0-127")
    return GM_FAMILIES[program // 8]


def family_programs(program: int) -> range:
    """The eight programs of the General MIDI family that holds ``program``."""
    if not 0 <= program <= 127:
        raise ValueError(f"program={program} is not a General MIDI program; use 0-127")
    start = 8 * (program // 8)
    return range(start, start + 8)


@dataclass(frozen=True)
class StemMap:
    """Named stems, each a set of General MIDI programs; ``drums`` names the stem of drum tracks.

    ``StemMap.slakh()`` is the default (piano 0-7, guitar 24-31, bass 32-39, drums).
    Tracks matched by no stem are left out (or returned under ``other`` by ``group_instruments``).
    """

    programs: Mapping[str, frozenset[int]]
    drums: str | None = "drums"
    names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        names = self.names or tuple(sorted({*self.programs, *([self.drums] if self.drums else [])}))
        object.__setattr__(self, "names", names)
        owner: dict[int, str] = {}
        for stem, progs in self.programs.items():
            if stem not in names:
                raise ValueError(f"StemMap: stem {stem!r} is not in names={names}")
            for p in progs:
                if not 0 <= p <= 127:
                    raise ValueError(f"StemMap: stem {stem!r} lists program {p}; use 0-127")
                if p in owner:
                    raise ValueError(f"StemMap: program {p} is in both {owner[p]!r} and {stem!r}")
                owner[p] = stem

    @classmethod
    def slakh(cls, stems: Sequence[str] = DEFAULT_STEMS) -> StemMap:
        """Slakh2100 classes by lower-case name: any of the GM family names or "drums"."""
        by_name = {fam.lower(): frozenset(range(8 * i, 8 * i + 8)) for i, fam in enumerate(GM_FAMILIES)}
        unknown = [s for s in stems if s != "drums" and s not in by_name]
        if unknown:
            raise ValueError(
                f"StemMap.slakh: unknown stems {unknown}; use 'drums' or GM family names {sorted(by_name)}"
            )
        programs = {s: by_name[s] for s in stems if s != "drums"}
        return cls(programs=programs, drums="drums" if "drums" in stems else None, names=tuple(stems))

    def stem_of(self, program: int, is_drum: bool) -> str | None:
        if is_drum:
            return self.drums
        for stem, progs in self.programs.items():
            if program in progs:
                return stem
        return None


def group_instruments(
    midi: pretty_midi.PrettyMIDI, stem_map: StemMap | None = None, *, other: str | None = None
) -> dict[str, list[pretty_midi.Instrument]]:
    """Group the tracks of ``midi`` into stems; every stem of the map appears (maybe empty).

    Tracks that no stem takes go to the stem named ``other`` when given, else they are dropped.
    """
    stem_map = stem_map or StemMap.slakh()
    groups: dict[str, list[pretty_midi.Instrument]] = {name: [] for name in stem_map.names}
    if other is not None:
        groups.setdefault(other, [])
    for inst in midi.instruments:
        stem = stem_map.stem_of(inst.program, inst.is_drum) or other
        if stem is not None:
            groups[stem].append(inst)
    return groups
