"""Datasets the training app feeds to the loop: fixed-length multi-stem audio segments, the same with a
style reference from another segment of the track, Subtractive-Training items with instructions, and
JSB chorale crops. Audio is read with stemforge-data's ``read_audio`` (resampled to the model's
rate); chorales come from stemforge-midi's ``load_jsb``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


class StemSegmentDataset(Dataset):
    """(S, N) float32 segments cut from track folders holding one ``<stem>.flac`` per stem name.

    A stem file missing from a track is silence (allowed, as a Slakh track without that
    instrument). Segments start every ``hop`` samples; the tail shorter than a segment is dropped.
    """

    def __init__(
        self,
        track_dirs: Sequence[Path],
        stem_names: Sequence[str],
        sample_rate: int,
        segment_samples: int,
        hop: int | None = None,
        extension: str = "flac",
    ) -> None:
        from stemforge.data import read_audio

        if not track_dirs:
            raise ValueError(
                "StemSegmentDataset: no track folders given; set data.tracks to folders of stem files"
            )
        self.stem_names = tuple(stem_names)
        self.sample_rate = sample_rate
        self.segment_samples = segment_samples
        hop = hop or segment_samples
        self.tracks: list[Tensor] = []
        self.index: list[tuple[int, int]] = []
        for track in track_dirs:
            track = Path(track)
            if not track.is_dir():
                raise ValueError(
                    f"{track}: not a folder; data.tracks lists folders holding <stem>.{extension} files"
                )
            waves: dict[str, Tensor] = {}
            for name in self.stem_names:
                path = track / f"{name}.{extension}"
                if path.is_file():
                    waves[name], _ = read_audio(path, sample_rate=sample_rate, mono=True)
            if not waves:
                raise ValueError(
                    f"{track}: none of the stems {list(self.stem_names)} is present as <stem>.{extension}; "
                    "check data.stems against the file names"
                )
            length = max(w.shape[-1] for w in waves.values())
            stack = torch.zeros(len(self.stem_names), length)
            for s, name in enumerate(self.stem_names):
                if name in waves:
                    stack[s, : waves[name].shape[-1]] = waves[name]
            self.tracks.append(stack)
            for start in range(0, length - segment_samples + 1, hop):
                self.index.append((len(self.tracks) - 1, start))
        if not self.index:
            raise ValueError(
                f"StemSegmentDataset: every track is shorter than one segment ({segment_samples} samples); "
                "use shorter data.segment_seconds or longer tracks"
            )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Tensor:
        track, start = self.index[i]
        return self.tracks[track][:, start : start + self.segment_samples].clone()


class ChoraleCropDataset(Dataset):
    """(4, T) int64 SATB voice tokens: crops of ``length`` 16th-note steps from JSB chorales.

    Crops start every ``hop`` steps; ``hop=None`` gives one crop per chorale (its start), which is
    Coconet's evaluation protocol for fixed-length windows.
    """

    def __init__(self, split: str, length: int, hop: int | None = None) -> None:
        from stemforge.midi import load_jsb

        self.chorales = [c for c in load_jsb(split) if c.shape[-1] >= length]  # type: ignore[arg-type]
        if not self.chorales:
            raise ValueError(f"no JSB {split} chorale is {length} steps long; use a shorter data.length")
        self.length = length
        self.index = [
            (c, start)
            for c, chorale in enumerate(self.chorales)
            for start in range(0, chorale.shape[-1] - length + 1, hop or chorale.shape[-1])
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Tensor:
        c, start = self.index[i]
        return self.chorales[c][:, start : start + self.length].clone()


class _SlakhStems(Dataset):
    """stemforge-data's ``SlakhDataset`` (evaluation order, no random shift) as (S, N) tensors; the
    training loop's sampler does the shuffling and rank sharding."""

    def __init__(self, inner: Dataset) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Tensor:
        return self.inner[i]["stems"]


def audio_segments(
    data: dict, split: str, stem_names: Sequence[str], sample_rate: int, segment_samples: int
) -> Dataset:
    """(S, N) multi-stem segments of one split: ``data.slakh_root`` (a Slakh2100-format folder, real or
    rendered, read by stemforge-data's ``SlakhDataset``) or ``data.<split>_tracks`` (folders of
    ``<stem>.flac`` files)."""
    if data.get("slakh_root"):
        from stemforge.data.slakh_dataset import SlakhDataset

        slakh_split = {"val": "validation"}.get(split, split)
        return _SlakhStems(
            SlakhDataset(
                data["slakh_root"],
                slakh_split,
                stems=tuple(stem_names),
                group_by=data.get("group_by", "inst_class"),
                sample_rate=sample_rate,
                segment_samples=segment_samples,
                train=False,
            )
        )
    key = f"{split}_tracks"
    if key not in data:
        raise ValueError(f"data.{key} is missing; list folders of <stem>.flac files, or set data.slakh_root")
    hop = int(segment_samples * float(data.get("hop_fraction", 1.0))) or None
    return StemSegmentDataset([Path(p) for p in data[key]], stem_names, sample_rate, segment_samples, hop=hop)


def has_split(data: dict, split: str) -> bool:
    return bool(data.get("slakh_root")) or bool(data.get(f"{split}_tracks"))


def _segment_keys(dataset: Dataset) -> list[tuple[int, int]]:
    """(track index, start sample) of every item of a segment dataset, in item order."""
    if isinstance(dataset, StemSegmentDataset):
        return list(dataset.index)
    if isinstance(dataset, _SlakhStems):
        inner: Any = dataset.inner
        return [inner.segment_start(i) for i in range(len(inner))]
    raise TypeError(f"no segment positions for {type(dataset).__name__}")


class StyleReferenceSegments(Dataset):
    """``{"waves": (S, N), "reference": (N,)}``: a segment and, as the style reference, the ``target``
    stem of another segment of the same track.

    The reference is the target stem's own audio elsewhere in the track (same instrument and
    timbre, other notes), so a model trained to use it learns timbre rather than copying content.
    The partner segment is drawn once per item from a generator seeded by (``seed``, item), so the
    pairing does not depend on the data order, the rank or a resumption. Segments that do not
    overlap the item are preferred; a track with a single segment is its own reference.
    """

    def __init__(self, segments: Dataset, target: int, segment_samples: int, seed: int = 0) -> None:
        self.segments = segments
        self.target = int(target)
        keys = _segment_keys(segments)
        by_track: dict[int, list[int]] = {}
        for i, (track, _) in enumerate(keys):
            by_track.setdefault(track, []).append(i)
        self.partner: list[int] = []
        for i, (track, start) in enumerate(keys):
            same = [j for j in by_track[track] if j != i]
            apart = [j for j in same if abs(keys[j][1] - start) >= segment_samples]
            choices = apart or same or [i]
            rng = np.random.default_rng([int(seed), i])
            self.partner.append(choices[int(rng.integers(len(choices)))])

    def __len__(self) -> int:
        return len(self.partner)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        waves = self.segments[i]
        reference = self.segments[self.partner[i]][self.target]
        return {"waves": waves, "reference": reference.clone()}


def style_reference_segments(
    data: dict,
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


class SubtractiveItems(Dataset):
    """Subtractive-Training examples (Villa-Renteria et al. 2024) from stemforge-data's
    ``SubtractiveTripletDataset``: ``{"mix_minus": (N,), "stem": (N,), "stem_index": () int64,
    "instruction": str}``, one per (segment, stem present in it), restricted to ``insert_stems``.

    The instruction is stemforge-data's seeded ``InstructionWriter`` applied to the stem's
    descriptors, keyed by (track, stem, start): the same item always gets the same sentence, so a
    resumed run sees the text of the uninterrupted one.
    """

    def __init__(self, triplets: Any, insert_stems: Sequence[int] | None = None) -> None:
        self.triplets = triplets
        if insert_stems is not None:
            allowed = set(insert_stems)
            triplets.items = [item for item in triplets.items if item[1] in allowed]
        if not triplets.items:
            raise ValueError(
                "no subtractive-training item: none of the chosen stems has a note in any segment; "
                "check data.stems, model.insert_stems and data.slakh_root"
            )

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.triplets[i]
        return {
            "mix_minus": item["mix_minus"],
            "stem": item["stem"],
            "stem_index": torch.tensor(int(item["stem_index"])),
            "instruction": item["instruction"],
        }


def subtractive_segments(
    data: dict,
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
    from stemforge.data import SubtractiveTripletDataset

    if not data.get("slakh_root"):
        raise ValueError(
            "model.mode = subtractive needs data.slakh_root: a Slakh-format folder with MIDI/ per track "
            "(e.g. `stemforge-train data render --source jsb --split train --out DIR`), whose stems the "
            "instruction writer describes"
        )
    triplets = SubtractiveTripletDataset(
        data["slakh_root"],
        {"val": "validation"}.get(split, split),
        stems=tuple(stem_names),
        group_by=data.get("group_by", "inst_class"),
        sample_rate=sample_rate,
        segment_samples=segment_samples,
        train=False,
        seed=int(data.get("instruction_seed", 0)),
    )
    chosen = None if insert_stems is None else [list(stem_names).index(s) for s in insert_stems]
    return SubtractiveItems(triplets, chosen)
