"""The training app's datasets from a task config's ``data`` section.

The dataset classes live in stemforge-data (``stemforge.data.segments``) and are re-exported here
for the tasks; this module only turns the typed ``AudioData`` / ``LDMData`` options into their
arguments: a Slakh-format root or lists of track folders, the split, the stem order, the sample rate
and the segment length.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stemforge.data import (
    ChoraleCropDataset,
    SlakhDataset,
    SlakhStems,
    StemSegmentDataset,
    StyleReferenceSegments,
    SubtractiveItems,
    SubtractiveTripletDataset,
)
from stemforge.train.options import AudioData, LDMData

#: The name this module used before the class moved to stemforge-data.
_SlakhStems = SlakhStems

__all__ = [
    "ChoraleCropDataset",
    "StemSegmentDataset",
    "StyleReferenceSegments",
    "SubtractiveItems",
    "audio_segments",
    "has_split",
    "style_reference_segments",
    "subtractive_segments",
]


def _slakh_split(split: str) -> str:
    return {"val": "validation"}.get(split, split)


def audio_segments(
    data: AudioData, split: str, stem_names: Sequence[str], sample_rate: int, segment_samples: int
) -> StemSegmentDataset | SlakhStems:
    """(S, N) multi-stem segments of one split: ``data.slakh_root`` (a Slakh2100-format folder, real or
    rendered, read by stemforge-data's ``SlakhDataset`` in evaluation order; the loop's sampler
    shuffles and shards) or ``data.<split>_tracks`` (folders of ``<stem>.flac`` files, cut every
    ``data.hop_fraction`` of a segment)."""
    if data.slakh_root:
        return SlakhStems(
            SlakhDataset(
                data.slakh_root,
                _slakh_split(split),
                stems=tuple(stem_names),
                group_by=data.group_by,
                sample_rate=sample_rate,
                segment_samples=segment_samples,
                train=False,
            )
        )
    tracks = data.tracks(split)
    if not tracks:
        raise ValueError(
            f"data.{split}_tracks is missing; list folders of <stem>.flac files, or set data.slakh_root"
        )
    hop = int(segment_samples * data.hop_fraction) or None
    return StemSegmentDataset([Path(p) for p in tracks], stem_names, sample_rate, segment_samples, hop=hop)


def has_split(data: AudioData, split: str) -> bool:
    return data.has_split(split)


def style_reference_segments(
    data: AudioData,
    split: str,
    stem_names: Sequence[str],
    sample_rate: int,
    segment_samples: int,
    target: str,
    seed: int = 0,
) -> StyleReferenceSegments:
    """:func:`audio_segments` of one split, each with a style reference of stem ``target``."""
    segments = audio_segments(data, split, stem_names, sample_rate, segment_samples)
    return StyleReferenceSegments(segments, list(stem_names).index(target), segment_samples, seed)


def subtractive_segments(
    data: LDMData,
    split: str,
    stem_names: Sequence[str],
    sample_rate: int,
    segment_samples: int,
    *,
    insert_stems: Sequence[str] | None = None,
) -> SubtractiveItems:
    """Subtractive-Training items of one split of ``data.slakh_root`` (a Slakh-format folder with the
    MIDI of every stem, which the instruction writer describes); ``data.instruction_seed`` (default 0)
    seeds the instruction writer."""
    if not data.slakh_root:
        raise ValueError(
            "model.mode = subtractive needs data.slakh_root: a Slakh-format folder with MIDI/ per track "
            "(e.g. `stemforge-train data render --source jsb --split train --out DIR`), whose stems the "
            "instruction writer describes"
        )
    triplets = SubtractiveTripletDataset(
        data.slakh_root,
        _slakh_split(split),
        stems=tuple(stem_names),
        group_by=data.group_by,
        sample_rate=sample_rate,
        segment_samples=segment_samples,
        train=False,
        seed=data.instruction_seed,
    )
    chosen = None if insert_stems is None else [list(stem_names).index(s) for s in insert_stems]
    try:
        return SubtractiveItems(triplets, chosen)
    except ValueError as err:
        raise ValueError(
            f"{data.slakh_root}: no subtractive-training item: none of the chosen stems has a note in any "
            f"{split} segment; check data.stems, model.insert_stems and data.slakh_root"
        ) from err
