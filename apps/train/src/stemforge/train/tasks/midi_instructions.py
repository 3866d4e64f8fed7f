"""Offline instructions for the MIDI insertion model: a sentence describing one voice of a crop,
derived from its notes (Subtractive Training's instruction writer, Villa-Renteria et al. 2024,
section 3, reduced to symbolic descriptors), e.g. ``"bass: mostly quarter notes, low register,
falling line"``.

Descriptors of a voice's tokens (T,) on the 16th-note grid (notes are runs of one pitch):

- rhythm: onsets per quarter note d: ``d >= 1.5`` "eighth-note motion", ``0.75 <= d < 1.5`` "mostly
  quarter notes", below "long held notes";
- register: mean pitch against the voice's median pitch in the JSB training split: more than 2
  semitones above "high register", more than 2 below "low register", else "middle register";
- contour: last minus first pitch: ``>= 3`` "rising line", ``<= -3`` "falling line", else "level line".

Every combination (3 x 3 x 3 per stem) is encoded once by stemforge-conditioning's MiniLM
``TextEncoder``; training looks the pooled vectors up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from stemforge.midi import REST

RHYTHMS = ("eighth-note motion", "mostly quarter notes", "long held notes")
REGISTERS = ("high register", "middle register", "low register")
CONTOURS = ("rising line", "level line", "falling line")


def voice_descriptors(tokens: Tensor, median_pitch: float) -> tuple[int, int, int]:
    """(rhythm, register, contour) indices into RHYTHMS, REGISTERS, CONTOURS for one voice (T,)."""
    values = tokens.tolist()
    pitches = [v for v in values if v != REST]
    onsets = sum(1 for i, v in enumerate(values) if v != REST and (i == 0 or values[i - 1] != v))
    density = onsets / (len(values) / 4)
    rhythm = 0 if density >= 1.5 else 1 if density >= 0.75 else 2
    if not pitches:
        return rhythm, 1, 1
    offset = sum(pitches) / len(pitches) - median_pitch
    register = 0 if offset > 2 else 2 if offset < -2 else 1
    change = pitches[-1] - pitches[0]
    contour = 0 if change >= 3 else 2 if change <= -3 else 1
    return rhythm, register, contour


def instruction_text(stem: str, rhythm: int, register: int, contour: int) -> str:
    return f"{stem}: {RHYTHMS[rhythm]}, {REGISTERS[register]}, {CONTOURS[contour]}"


def jsb_median_pitches() -> list[float]:
    """Median pitch of each SATB voice over the JSB training split."""
    from stemforge.midi import load_jsb

    chorales = load_jsb("train")  # type: ignore[arg-type]
    out = []
    for voice in range(4):
        values = torch.cat([c[voice] for c in chorales])
        out.append(float(values[values != REST].float().median()))
    return out


def describe_voice(tokens: Tensor, stem: str, median_pitch: float) -> str:
    """The instruction sentence for one voice (T,)."""
    return instruction_text(stem, *voice_descriptors(tokens, median_pitch))


@dataclass
class InstructionTable:
    """Pooled MiniLM vectors (N, D) of every instruction sentence of the given stems."""

    stems: tuple[str, ...]
    medians: list[float]
    sentences: list[str]
    pooled: Tensor

    @classmethod
    def build(cls, stems: Sequence[str], medians: Sequence[float] | None = None) -> InstructionTable:
        from stemforge.conditioning import TextEncoder

        stems = tuple(stems)
        if medians is None:
            if len(stems) != 4:
                raise ValueError(
                    f"instructions need each stem's median pitch; the JSB medians cover 4 voices, got {stems}"
                )
            medians = jsb_median_pitches()
        sentences = [
            instruction_text(stem, r, g, c)
            for stem in stems
            for r in range(len(RHYTHMS))
            for g in range(len(REGISTERS))
            for c in range(len(CONTOURS))
        ]
        pooled = TextEncoder()(sentences).pooled.float()
        return cls(stems, list(medians), sentences, pooled)

    def index(self, stem: int, rhythm: int, register: int, contour: int) -> int:
        per_stem = len(RHYTHMS) * len(REGISTERS) * len(CONTOURS)
        return stem * per_stem + (rhythm * len(REGISTERS) + register) * len(CONTOURS) + contour

    def sentence_for(self, voices: Tensor, stem: int) -> str:
        """The instruction of voice ``stem`` of one crop (S, T)."""
        return self.sentences[self.index(stem, *voice_descriptors(voices[stem], self.medians[stem]))]

    def pooled_for(self, batch: Tensor, target: Tensor) -> Tensor:
        """(B, D) pooled vectors of the instruction of voice ``target[b]`` of every crop (B, S, T)."""
        rows = [
            self.index(int(s), *voice_descriptors(batch[b, int(s)], self.medians[int(s)]))
            for b, s in enumerate(target)
        ]
        return self.pooled[torch.tensor(rows)]
