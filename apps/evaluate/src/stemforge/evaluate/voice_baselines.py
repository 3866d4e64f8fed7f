"""Reference points for inserting a missing voice of a four-part chorale, and the scores of an
inserted voice.

The two baselines follow the rules stemforge-insert documents for its own (``stemforge.insert.
baselines``; an app never imports another, so the evaluation app states them again here), so the
figures of both apps compare:

- ``most frequent pitch``: the voice holds, throughout, the pitch it sounds most often in the
  training chorales;
- ``voice leading``: a rule-based part writer. Where the given voices change, the missing voice
  takes, among the pitches of its range (1st-99th percentile in the training chorales) between its
  neighbouring given voices, the one of least cost: 0 for a pitch class sounding in the given
  voices, else 4 (0.5 while fewer than three pitch classes sound: completing the triad); 0.3 per
  semitone moved from its previous pitch (from its most frequent pitch at the start); 0.15 per
  semitone from its most frequent pitch; 6 for a parallel fifth or octave with a given voice; 1 for
  a unison with a neighbour. Between changes it holds; where every given voice rests, it rests.

Scores of an inserted voice (stemforge-metrics):

- note F1 against Bach's voice: a note is a run of equal pitch tokens on the 16th-note grid; an
  inserted note matches a note of Bach's when pitch and onset step agree (onset tolerance half a
  step, offsets ignored; ``note_scores``, maximum bipartite matching);
- parallel fifths and octaves that involve the inserted voice: the count of ``parallel_fifths_
  octaves`` on the completed chorale minus the count with that voice silenced (the given voices'
  own parallels cancel).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from stemforge.midi import REST

METHODS = ("model", "most frequent pitch", "voice leading", "Bach")


def voice_statistics(chorales: Sequence[Tensor]) -> tuple[list[int], list[tuple[int, int]]]:
    """Per voice of (S, T) token chorales: the most frequent pitch and the 1st-99th percentile range."""
    tokens = torch.cat([c.long() for c in chorales], dim=1)
    modes: list[int] = []
    ranges: list[tuple[int, int]] = []
    for voice in tokens:
        pitches = voice[voice != REST]
        modes.append(int(torch.bincount(pitches, minlength=128).argmax()))
        low, high = torch.quantile(pitches.double(), torch.tensor([0.01, 0.99], dtype=torch.float64))
        ranges.append((int(low.round()), int(high.round())))
    return modes, ranges


def most_frequent_pitch(tokens: Tensor, voice: int, modes: Sequence[int]) -> Tensor:
    filled = tokens.clone()
    filled[voice] = modes[voice]
    return filled


def _moves_in_parallel(a0: int, b0: int, a1: int, b1: int) -> bool:
    if REST in (a0, b0, a1, b1):
        return False
    da, db = a1 - a0, b1 - b0
    if da == 0 or db == 0 or (da > 0) != (db > 0):
        return False
    return abs(a0 - b0) % 12 == abs(a1 - b1) % 12 and abs(a1 - b1) % 12 in (0, 7)


def voice_leading(tokens: Tensor, voice: int, ranges: Sequence[tuple[int, int]], centre: int) -> Tensor:
    """``tokens`` (S, T), voices high to low, with ``voice`` written by the rules of the module."""
    filled = tokens.clone().long()
    num_voices, length = filled.shape
    others = [v for v in range(num_voices) if v != voice]
    low, high = ranges[voice]
    current, last_given = REST, None
    for t in range(length):
        given = filled[:, t].tolist()
        if last_given is not None and all(given[v] == last_given[v] for v in others):
            filled[voice, t] = current
            continue
        sounding = [given[v] for v in others if given[v] != REST]
        choice = REST
        if sounding:
            upper = [given[v] for v in range(voice) if given[v] != REST]
            lower = [given[v] for v in range(voice + 1, num_voices) if given[v] != REST]
            neighbours = upper[-1:] + lower[:1]
            top = min([high, *upper[-1:]])
            bottom = max([low, *lower[:1]])
            candidates = list(range(bottom, top + 1)) or list(range(low, high + 1))
            classes = {p % 12 for p in sounding}
            start = centre if current == REST else current
            best_cost = float("inf")
            for pitch in candidates:
                in_chord = pitch % 12 in classes
                cost = 0.0 if in_chord else (0.5 if len(classes) < 3 else 4.0)
                cost += 0.3 * abs(pitch - start) + 0.15 * abs(pitch - centre)
                if last_given is not None:
                    cost += 6.0 * sum(
                        _moves_in_parallel(current, last_given[v], pitch, given[v]) for v in others
                    )
                cost += 1.0 if pitch in neighbours else 0.0
                if cost < best_cost:
                    choice, best_cost = pitch, cost
        filled[voice, t] = choice
        current, last_given = choice, given
    return filled


def token_notes(row: Tensor) -> Tensor:
    """(K, 3) float64 (onset step, offset step, pitch) of the runs of equal non-rest tokens of a voice."""
    values = row.tolist()
    notes, begin = [], 0
    for step in range(1, len(values) + 1):
        if step == len(values) or values[step] != values[begin]:
            if values[begin] != REST:
                notes.append((begin, step, values[begin]))
            begin = step
    return torch.tensor(notes, dtype=torch.float64).reshape(-1, 3)


def note_f1(inserted: Tensor, bach: Tensor) -> float:
    from stemforge.metrics import note_scores

    return note_scores(token_notes(inserted).numpy(), token_notes(bach).numpy(), onset_tolerance=0.5).f1


def parallels_with(voices: Tensor, voice: int) -> int:
    """Parallel fifths + octaves that involve ``voice`` in the (4, T) chorale ``voices``."""
    from stemforge.metrics import parallel_fifths_octaves

    silent = voices.clone()
    silent[voice] = REST
    return sum(parallel_fifths_octaves(voices).values()) - sum(parallel_fifths_octaves(silent).values())
