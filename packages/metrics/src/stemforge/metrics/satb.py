"""Voice-leading checks for four-part (SATB) chorales: voice-range violations and parallel fifths /
octaves, the two rules of common-practice part writing most used to judge generated chorales
(e.g. Huang et al., "Counterpoint by convolution" (Coconet), 2017; Hadjeres et al., DeepBach, 2017).

Voices are (4, T) integer tensors of MIDI pitches on a grid, -1 or 128 for a rest, ordered soprano,
alto, tenor, bass. Ranges default to the usual textbook ranges: soprano C4-G5, alto G3-D5, tenor
C3-G4, bass E2-C4 (MIDI 60-79, 55-74, 48-67, 40-60).

Parallels: the grid is reduced to the sequence of chords at which any voice changes; between two
consecutive chords, a pair of sounding voices forms a parallel fifth (octave) when both voices
move in the same direction and the interval between them is a perfect fifth (an octave or unison)
modulo 12 in both chords.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["SATB_RANGES", "parallel_fifths_octaves", "voice_range_violations"]

SATB_RANGES: tuple[tuple[int, int], ...] = ((60, 79), (55, 74), (48, 67), (40, 60))
SATB_NAMES = ("soprano", "alto", "tenor", "bass")


def _check_voices(voices: Tensor) -> Tensor:
    if voices.dim() != 2 or voices.shape[0] != 4:
        raise ValueError(
            f"expected (4, T) SATB pitches (soprano, alto, tenor, bass), got {tuple(voices.shape)}"
        )
    return voices.long()


def _is_rest(voices: Tensor) -> Tensor:
    return (voices < 0) | (voices > 127)


def voice_range_violations(voices: Tensor, ranges: Sequence[tuple[int, int]] = SATB_RANGES) -> dict[str, int]:
    """Steps (not notes) at which each voice sounds outside its range, and the total."""
    voices = _check_voices(voices)
    counts = {}
    for name, row, (low, high) in zip(SATB_NAMES, voices, ranges):
        sounding = ~_is_rest(row)
        counts[name] = int((sounding & ((row < low) | (row > high))).sum())
    counts["total"] = sum(counts.values())
    return counts


def parallel_fifths_octaves(voices: Tensor) -> dict[str, int]:
    """Counts of parallel fifths and parallel octaves (including unisons) between consecutive chords."""
    voices = _check_voices(voices)
    change = torch.ones(voices.shape[1], dtype=torch.bool)
    change[1:] = (voices[:, 1:] != voices[:, :-1]).any(dim=0)
    chords = voices[:, change].T.tolist()  # list of [s, a, t, b]
    fifths = octaves = 0
    for before, after in itertools.pairwise(chords):
        for i in range(4):
            for j in range(i + 1, 4):
                pitches = (before[i], before[j], after[i], after[j])
                if any(p < 0 or p > 127 for p in pitches):
                    continue
                move_i, move_j = after[i] - before[i], after[j] - before[j]
                if move_i == 0 or move_j == 0 or (move_i > 0) != (move_j > 0):
                    continue
                interval_before = abs(before[i] - before[j]) % 12
                interval_after = abs(after[i] - after[j]) % 12
                if interval_before == interval_after == 7:
                    fifths += 1
                elif interval_before == interval_after == 0:
                    octaves += 1
    return {"parallel_fifths": fifths, "parallel_octaves": octaves}
