"""Two simple baselines for inserting a missing voice of a four-part chorale, to measure the model
against (the kind used as reference points by Coconet, Huang et al. 2017, and DeepBach, Hadjeres et
al. 2017).

- ``most_frequent_pitch``: the voice holds the pitch it sounds most often in the training chorales.
- ``voice_leading``: a rule-based part writer. At every step where the given voices change, the
  missing voice takes the pitch of least cost among the pitches of its range that lie between its
  neighbouring voices: a chord tone of the given voices (pitch class sounding in them) costs 0 and
  a non-chord tone 4 (0.5 when fewer than three pitch classes sound, to complete the triad); each
  semitone of motion from the previous pitch costs 0.3 and each semitone away from the voice's
  typical pitch 0.15; a parallel fifth
  or octave with a given voice (same direction, same perfect interval before and after, the rule of
  ``stemforge.metrics.satb``) costs 6; a unison with a neighbour costs 1. Between changes it holds
  its pitch; where every given voice rests, it rests.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from stemforge.midi import REST

#: Fallback SATB ranges (MIDI), the textbook ranges of stemforge.metrics.satb.
DEFAULT_RANGES: tuple[tuple[int, int], ...] = ((60, 79), (55, 74), (48, 67), (40, 60))


def voice_statistics(chorales: Sequence[Tensor]) -> tuple[list[int], list[tuple[int, int]]]:
    """Per voice of (S, T) token tensors: the most frequent pitch and the 1st-99th percentile range."""
    stacked = torch.cat([c.long() for c in chorales], dim=1)
    modes, ranges = [], []
    for row in stacked:
        pitches = row[row != REST]
        counts = torch.bincount(pitches, minlength=128)
        modes.append(int(counts.argmax()))
        low = int(torch.quantile(pitches.double(), 0.01).round())
        high = int(torch.quantile(pitches.double(), 0.99).round())
        ranges.append((low, high))
    return modes, ranges


def most_frequent_pitch(tokens: Tensor, voice: int, modes: Sequence[int]) -> Tensor:
    """``tokens`` (S, T) with voice ``voice`` replaced by its most frequent pitch (held throughout)."""
    out = tokens.clone()
    out[voice] = modes[voice]
    return out


def _parallel(prev_a: int, prev_b: int, a: int, b: int) -> bool:
    if REST in (prev_a, prev_b, a, b):
        return False
    move_a, move_b = a - prev_a, b - prev_b
    if move_a == 0 or move_b == 0 or (move_a > 0) != (move_b > 0):
        return False
    before, after = abs(prev_a - prev_b) % 12, abs(a - b) % 12
    return before == after and before in (0, 7)


def voice_leading(
    tokens: Tensor,
    voice: int,
    ranges: Sequence[tuple[int, int]] = DEFAULT_RANGES,
    centre: int | None = None,
    *,
    motion: float = 0.3,
    pull: float = 0.15,
) -> Tensor:
    """``tokens`` (S, T) (voices ordered high to low) with voice ``voice`` written by the rules above.

    ``centre``: the voice's typical pitch (default: the middle of its range).
    """
    out = tokens.clone().long()
    s, t = out.shape
    others = [i for i in range(s) if i != voice]
    low, high = ranges[voice]
    centre = (low + high) // 2 if centre is None else centre
    prev = REST
    prev_given = [REST] * s
    for step in range(t):
        given = [int(out[i, step]) for i in range(s)]
        changed = step == 0 or any(given[i] != prev_given[i] for i in others)
        if not changed:
            out[voice, step] = prev
            continue
        sounding = [given[i] for i in others if given[i] != REST]
        if not sounding:
            choice = REST
        else:
            above = [given[i] for i in range(voice) if given[i] != REST]
            below = [given[i] for i in range(voice + 1, s) if given[i] != REST]
            top = min([high, *(p for p in above[-1:])])
            bottom = max([low, *(p for p in below[:1])])
            candidates = list(range(bottom, top + 1)) or list(range(low, high + 1))
            classes = {p % 12 for p in sounding}
            best, best_cost = candidates[0], float("inf")
            for p in candidates:
                cost = 0.0 if p % 12 in classes else 4.0
                if len(classes) < 3 and p % 12 not in classes:
                    cost -= 3.5  # completing a triad beats doubling
                cost += motion * abs(p - (centre if prev == REST else prev)) + pull * abs(p - centre)
                for i in others:
                    if _parallel(prev, prev_given[i], p, given[i]):
                        cost += 6.0
                if any(p == q for q in (above[-1:] + below[:1])):
                    cost += 1.0
                if cost < best_cost:
                    best, best_cost = p, cost
            choice = best
        out[voice, step] = choice
        prev = choice
        prev_given = given
    return out
