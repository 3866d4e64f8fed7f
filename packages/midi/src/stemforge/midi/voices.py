"""Categorical voices: monophonic stems as (S, T) pitch-or-rest tokens with 129 classes.

Token ``p`` in 0..127 is MIDI pitch ``p`` sounding during that grid step; token ``REST`` = 128 is
silence. This is the representation of Coconet (Huang et al. 2017) for SATB chorales and of
bass-line models. A token sequence does not distinguish a held note from a repeated one; by default
``voices_to_midi`` joins equal consecutive tokens into one note (the JSB convention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pretty_midi
import torch

from stemforge.midi.io import MidiError

REST = 128
NUM_CLASSES = 129


def check_voices(tokens: torch.Tensor, name: str = "tokens") -> None:
    if tokens.dim() != 2 or tokens.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(
            f"{name}: expected an integer tensor (S, T), got {tuple(tokens.shape)} {tokens.dtype}"
        )
    if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) > REST):
        raise ValueError(f"{name}: tokens must lie in 0..{REST} (pitch 0-127 or REST={REST})")


def voices_to_midi(
    tokens: torch.Tensor,
    stems: Sequence[str],
    programs: Mapping[str, int] | Sequence[int],
    *,
    steps_per_quarter: int = 4,
    bpm: float = 100.0,
    velocity: int = 80,
    merge_repeats: bool = True,
) -> pretty_midi.PrettyMIDI:
    """Write (S, T) voice tokens as a multi-track MIDI file, one named track per stem.

    Each grid step lasts ``60 / bpm / steps_per_quarter`` seconds. With ``merge_repeats`` equal
    consecutive tokens form one note, otherwise every step starts a new note.
    """
    check_voices(tokens)
    if len(stems) != tokens.shape[0]:
        raise ValueError(
            f"voices_to_midi: {tokens.shape[0]} voices but {len(stems)} stem names {tuple(stems)}"
        )
    progs = [programs[s] for s in stems] if isinstance(programs, Mapping) else list(programs)
    if len(progs) != len(stems):
        raise ValueError(f"voices_to_midi: {len(progs)} programs for {len(stems)} stems")
    if not 1 <= velocity <= 127:
        raise ValueError(f"voices_to_midi: velocity={velocity}; use 1-127")
    step = 60.0 / bpm / steps_per_quarter
    midi = pretty_midi.PrettyMIDI(initial_tempo=bpm, resolution=max(220, 24 * steps_per_quarter))
    rows = tokens.tolist()
    for stem, prog, row in zip(stems, progs, rows):
        inst = pretty_midi.Instrument(program=int(prog), name=stem)
        start = 0
        for t in range(1, len(row) + 1):
            boundary = t == len(row) or row[t] != row[start] or not merge_repeats
            if boundary:
                if row[start] != REST:
                    inst.notes.append(pretty_midi.Note(velocity, int(row[start]), start * step, t * step))
                start = t
        midi.instruments.append(inst)
    return midi


def roll_to_voices(sustain: torch.Tensor, *, polyphony: str = "error", name: str = "roll") -> torch.Tensor:
    """(S, T, 128) sustain roll -> (S, T) tokens. ``polyphony``: "error", "highest" (keep the top
    note of a chord) or "lowest" (keep its bottom note, the reduction of a bass part)."""
    if sustain.dim() != 3 or sustain.shape[-1] != 128:
        raise ValueError(f"{name}: expected (S, T, 128), got {tuple(sustain.shape)}")
    active = sustain.bool()
    counts = active.sum(-1)
    if polyphony == "error" and bool((counts > 1).any()):
        s, t = (counts > 1).nonzero()[0].tolist()
        raise MidiError(
            f"{name}: stem {s} plays {int(counts[s, t])} notes at step {t}; categorical voices are "
            "monophonic (pass polyphony='highest' to keep the top note)"
        )
    if polyphony not in ("error", "highest", "lowest"):
        raise ValueError(f"polyphony={polyphony!r}; use 'error', 'highest' or 'lowest'")
    pitches = torch.arange(128)
    if polyphony == "lowest":
        bottom = torch.where(active, pitches, 128).amin(-1)
        return torch.where(bottom < 128, bottom, torch.full_like(bottom, REST))
    top = torch.where(active, pitches, -1).amax(-1)
    return torch.where(top >= 0, top, torch.full_like(top, REST))


def voices_to_roll(tokens: torch.Tensor) -> torch.Tensor:
    """(S, T) tokens -> (S, T, 128) bool sustain roll (REST rows are all False)."""
    check_voices(tokens)
    onehot = torch.nn.functional.one_hot(tokens.long(), NUM_CLASSES)
    return onehot[..., :128].bool()
