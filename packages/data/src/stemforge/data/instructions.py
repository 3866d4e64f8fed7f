"""An offline instruction writer: stem descriptors -> a varied sentence, deterministic for a seed.

Subtractive Training (Villa-Renteria et al. 2024) writes its instructions with an LLM from stem
metadata. stemforge ships a template writer instead so that everything runs offline: it picks a
verb, an order of clauses and a wording for each descriptor from a seeded generator, so one stem
gets many phrasings across seeds and always the same one for a given (seed, key). A user may pass
any ``Callable[[StemDescriptors], str]`` instead (for example a client of their own LLM).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from stemforge.data.descriptors import StemDescriptors

InstructionFn = Callable[[StemDescriptors], str]

_VERBS = ("Add", "Insert", "Bring in", "Layer in", "Write", "Put in", "Introduce")
_REGISTER = {
    "low": ("in a low register", "down low", "in the low range"),
    "middle": ("in the middle register", "in a mid range", "around the middle of the range"),
    "high": ("in a high register", "up high", "in the upper range"),
}
_DENSITY = {
    "sparse": ("sparse", "spacious", "minimal"),
    "moderate": ("steady", "moderately busy", "measured"),
    "busy": ("busy", "dense", "active"),
}
_RHYTHM = {
    "sustained": ("with long held notes", "holding sustained notes", "in long tones"),
    "syncopated": ("with a syncopated rhythm", "playing off the beat", "with syncopated sixteenths"),
    "on the beat": ("locked to the beat", "hitting on the beats", "with the rhythm on the beat"),
    "flowing": ("with a flowing rhythm", "in flowing lines", "moving freely between beats"),
    "silent": ("resting", "leaving space", "mostly silent"),
}
#: Drum parts have no lines or held notes: their rhythm is a groove.
_DRUM_RHYTHM = {
    "sustained": ("with sparse, ringing hits", "with long gaps between hits", "with open, ringing hits"),
    "syncopated": ("with a syncopated groove", "with off-beat accents", "with a syncopated sixteenth groove"),
    "on the beat": (
        "with a straight groove on the beat",
        "keeping time on the beats",
        "with a steady backbeat",
    ),
    "flowing": ("with a flowing groove", "with a loose, rolling groove", "with fills between the beats"),
    "silent": ("resting", "leaving space", "mostly silent"),
}
_DYNAMICS = {
    "soft": ("softly", "quietly", "gently"),
    "medium": ("at a moderate level", "at medium volume", "evenly"),
    "loud": ("loudly", "strongly", "with force"),
}


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


class InstructionWriter:
    """Turns :class:`StemDescriptors` into a sentence; ``writer(desc, key="Track00001/bass/3")``."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)

    def __call__(self, desc: StemDescriptors, *, key: str = "") -> str:
        rng = np.random.default_rng([self.seed, zlib.crc32(f"{key}|{desc.stem}".encode())])

        def pick(options: tuple[str, ...]) -> str:
            return options[int(rng.integers(len(options)))]

        verb = pick(_VERBS)
        density = pick(_DENSITY[desc.density])
        rhythm = _DRUM_RHYTHM if desc.is_drum else _RHYTHM
        clauses = [pick(rhythm[desc.rhythm]), pick(_DYNAMICS[desc.dynamics])]
        if desc.register is not None:
            clauses.append(pick(_REGISTER[desc.register]))
        order = rng.permutation(len(clauses))
        body = ", ".join(clauses[i] for i in order)
        part = "part" if desc.is_drum else pick(("part", "line"))
        tempo = round(desc.tempo_bpm)
        tempo_phrase = pick((f" at {tempo} BPM", f", tempo {tempo} BPM", f" to fit the {tempo} BPM groove"))
        return f"{verb} {_article(density)} {density} {desc.instrument} {part} {body}{tempo_phrase}."
