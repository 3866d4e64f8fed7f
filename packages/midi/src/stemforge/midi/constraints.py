"""Decoding without parallel fifths and octaves: a wrapper around a MIDI insertion model that gives
-inf logits to every pitch that would move in parallel fifths or octaves (unisons included) with
another voice, the classic prohibition of common-practice voice leading (e.g. Fux's *Gradus ad
Parnassum*; the rule stemforge.metrics.satb.parallel_fifths_octaves counts).

For a hidden token of voice v at step t whose neighbour in time (t - 1 or t + 1) is known, and any
other voice j known at both steps of that transition: a candidate pitch p is banned when v and j
both move in the same direction and their interval (mod 12) is a fifth (7) or an octave (0) before
and after. Unmasking reveals every token while its known neighbours are fixed, so with one token
per model call every transition of an inserted voice is checked when its second token is drawn;
a rest is never banned, so a draw always exists. The model's probabilities are renormalised over the
allowed pitches (the samplers' draw takes a softmax of the logits).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from stemforge.midi.voices import NUM_CLASSES, REST

#: Intervals (semitones mod 12) that may not move in parallel: the octave (and unison) and the fifth.
PERFECT = (0, 7)


def parallel_ban(x: Tensor, visible: Tensor, num_classes: int = NUM_CLASSES) -> Tensor:
    """(B, S, T, K) bool: True where pitch k for hidden token (b, s, t) makes parallel 5ths/8ves."""
    b, s, t = x.shape
    ban = torch.zeros(b, s, t, num_classes, dtype=torch.bool, device=x.device)
    if t < 2:
        return ban
    pitch = torch.arange(num_classes, device=x.device)
    is_pitch = pitch < REST
    known = visible & (x < REST)
    for shift in (1, -1):  # 1: the predecessor is known (t-1 -> t); -1: the successor (t -> t+1)
        if shift == 1:
            here, there = slice(1, t), slice(0, t - 1)
        else:
            here, there = slice(0, t - 1), slice(1, t)
        neighbour = x[..., there]  # voice v at the other step of the transition
        target = (~visible[..., here]) & known[..., there]  # (B, S, T-1)
        for j in range(s):
            other_here, other_there = x[:, j, here], x[:, j, there]  # (B, T-1)
            other_known = known[:, j, here] & known[:, j, there]
            # Movement of j and of the candidate, oriented in time (earlier -> later).
            move_j = (other_here - other_there) * shift
            interval_there = (neighbour - other_there[:, None]).abs() % 12  # (B, S, T-1)
            candidate_move = (pitch.view(1, 1, 1, -1) - neighbour[..., None]) * shift
            interval_here = (pitch.view(1, 1, 1, -1) - other_here[:, None, :, None]).abs() % 12
            same_direction = (candidate_move * move_j[:, None, :, None]) > 0
            perfect = (interval_there[..., None] == interval_here) & (
                (interval_there[..., None] == PERFECT[0]) | (interval_there[..., None] == PERFECT[1])
            )
            rule = target[..., None] & other_known[:, None, :, None] & same_direction & perfect & is_pitch
            rule[:, j] = False  # a voice is never parallel with itself
            ban[..., here, :] |= rule
    return ban


class NoParallelsModel(nn.Module):
    """``model(x, visible, cond)`` with the pitches that would make parallel 5ths/8ves at -inf: a
    decoding constraint for any model of the masked-discrete contract (stemforge-samplers)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor, visible: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        logits = self.model(x, visible, cond)
        ban = parallel_ban(x, visible, logits.shape[-1])
        return logits.masked_fill(ban, float("-inf"))
