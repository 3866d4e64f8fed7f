"""The JSB chorales at 16th notes with the standard 229/76/77 split (Boulanger-Lewandowski et al.
2012), in the SATB-separated form of Coconet (Huang et al. 2017).

The project carries its own copy of ``Jsb16thSeparated.json`` (from the JSB-Chorales-dataset
repository by Zhuang & Cooijmans; see ``data/SOURCE-README.md``): each chorale is a list of time
steps at 16th notes holding four MIDI pitches, soprano, alto, tenor, bass, with -1 for silence.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Literal

import pretty_midi
import torch

from stemforge.midi.voices import REST, voices_to_midi

JSB_STEMS: tuple[str, ...] = ("soprano", "alto", "tenor", "bass")
JSB_STEPS_PER_QUARTER = 4
JSB_SPLITS: tuple[str, ...] = ("train", "valid", "test")
Split = Literal["train", "valid", "test"]

#: Default General MIDI programs of the four voices (a woodwind quartet: distinct timbres per stem).
JSB_PROGRAMS: Mapping[str, int] = {"soprano": 73, "alto": 68, "tenor": 71, "bass": 70}


@functools.cache
def _raw() -> dict[str, list[list[list[int]]]]:
    text = resources.files("stemforge.midi").joinpath("data/Jsb16thSeparated.json").read_text()
    return json.loads(text)


def load_jsb(split: Split) -> list[torch.Tensor]:
    """The chorales of one split as (4, T) int64 voice tokens (SATB; rest = ``REST``)."""
    if split not in JSB_SPLITS:
        raise ValueError(f"load_jsb: split={split!r}; use one of {JSB_SPLITS}")
    out = []
    for chorale in _raw()[split]:
        tokens = torch.tensor(chorale, dtype=torch.int64).T.contiguous()
        out.append(torch.where(tokens < 0, torch.full_like(tokens, REST), tokens))
    return out


def load_jsb_splits() -> dict[str, list[torch.Tensor]]:
    """All three splits: ``{"train": [...229], "valid": [...76], "test": [...77]}``."""
    return {split: load_jsb(split) for split in JSB_SPLITS}  # type: ignore[arg-type]


def jsb_midi(
    split: Split,
    index: int,
    *,
    programs: Mapping[str, int] = JSB_PROGRAMS,
    bpm: float = 100.0,
    velocity: int = 80,
) -> pretty_midi.PrettyMIDI:
    """One chorale as a four-track MIDI file (tracks named soprano, alto, tenor, bass)."""
    chorales = load_jsb(split)
    if not 0 <= index < len(chorales):
        raise IndexError(
            f"jsb_midi: index={index} out of range; split {split!r} has {len(chorales)} chorales"
        )
    missing = [s for s in JSB_STEMS if s not in programs]
    if missing:
        raise ValueError(f"jsb_midi: programs has no entry for {missing}; give a GM program for each voice")
    return voices_to_midi(
        chorales[index],
        JSB_STEMS,
        programs,
        steps_per_quarter=JSB_STEPS_PER_QUARTER,
        bpm=bpm,
        velocity=velocity,
    )
