"""torch Datasets of fixed-length training items: multi-stem audio segments, the same with a style
reference taken from another segment of the track, Subtractive-Training items with instructions, and
JSB chorale crops.

Every audio item is an (S, N) float32 tensor whose stems follow ``stem_names``; the datasets keep no
random state, so an item depends on its index only (a sampler does the shuffling and rank sharding,
and a resumed run sees the items of an uninterrupted one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from stemforge.data.audio import read_audio
from stemforge.data.slakh_dataset import SlakhDataset
from stemforge.data.triplets import SubtractiveTripletDataset


class SegmentSource(Protocol):
    """A dataset of (S, N) segments that knows where each one comes from."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Tensor: ...

    def segment_start(self, index: int) -> tuple[int, int]: ...


class StemSegmentDataset(Dataset):
    """(S, N) float32 segments cut from track folders holding one ``<stem>.<extension>`` per stem name.

    Args:
        track_dirs: folders, one per track, each holding stem files named after ``stem_names``.
        stem_names: the stem order of every item.
        sample_rate: the rate of the items; files at another rate are resampled on read.
        segment_samples: N, the length of every item.
        hop: samples between the starts of consecutive segments (default ``segment_samples``).
        extension: the stem files' extension.

    A stem file missing from a track is silence (allowed, as a Slakh track without that instrument).
    Segments start every ``hop`` samples; the tail shorter than a segment is dropped. The tracks are
    read once, into memory.
    """

    def __init__(
        self,
        track_dirs: Sequence[str | Path],
        stem_names: Sequence[str],
        sample_rate: int,
        segment_samples: int,
        hop: int | None = None,
        extension: str = "flac",
    ) -> None:
        if not track_dirs:
            raise ValueError("StemSegmentDataset: no track folders given; pass folders of <stem> audio files")
        if segment_samples <= 0 or (hop is not None and hop <= 0):
            raise ValueError(
                f"StemSegmentDataset: segment_samples ({segment_samples}) and hop ({hop}) must be positive"
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
                raise ValueError(f"{track}: not a folder; give folders holding <stem>.{extension} files")
            waves: dict[str, Tensor] = {}
            for name in self.stem_names:
                path = track / f"{name}.{extension}"
                if path.is_file():
                    waves[name], _ = read_audio(path, sample_rate=sample_rate, mono=True)
            if not waves:
                raise ValueError(
                    f"{track}: none of the stems {list(self.stem_names)} is present as <stem>.{extension}; "
                    "check the stem names against the file names"
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
                "use shorter segments or longer tracks"
            )

    def __len__(self) -> int:
        return len(self.index)

    def segment_start(self, index: int) -> tuple[int, int]:
        """(track index, start sample) of item ``index``."""
        return self.index[index]

    def __getitem__(self, index: int) -> Tensor:
        track, start = self.index[index]
        return self.tracks[track][:, start : start + self.segment_samples].clone()


class SlakhStems(Dataset):
    """A :class:`SlakhDataset`'s ``"stems"`` as plain (S, N) tensors, with its ``segment_start``.

    Build the inner dataset with ``train=False`` (evaluation order, no random shift) when a sampler
    outside does the shuffling and rank sharding, as a training loop does.
    """

    def __init__(self, inner: SlakhDataset) -> None:
        self.inner = inner
        self.stem_names = inner.stem_names
        self.sample_rate = inner.sample_rate
        self.segment_samples = inner.segment_samples

    def __len__(self) -> int:
        return len(self.inner)

    def segment_start(self, index: int) -> tuple[int, int]:
        """(track index, start sample) of item ``index``."""
        return self.inner.segment_start(index)

    def __getitem__(self, index: int) -> Tensor:
        return self.inner[index]["stems"]  # type: ignore[return-value]


class StyleReferenceSegments(Dataset):
    """``{"waves": (S, N), "reference": (N,)}``: a segment and, as the style reference, stem ``target``
    of another segment of the same track.

    Args:
        segments: (S, N) segments with ``segment_start(i) -> (track, start)``
            (:class:`StemSegmentDataset`, :class:`SlakhStems`).
        target: the index of the reference stem.
        segment_samples: N; partners at least this far apart share no sample.
        seed: seeds the choice of partners.

    The reference is the target stem's own audio elsewhere in the track (same instrument and timbre,
    other notes), so a model trained to use it learns timbre rather than copying content. The partner
    segment is drawn once per item from a generator seeded by (``seed``, item), so the pairing does
    not depend on the data order, the rank or a resumption. Segments that do not overlap the item are
    preferred; a track with a single segment is its own reference. ``partner[i]`` is item ``i``'s.
    """

    def __init__(self, segments: SegmentSource, target: int, segment_samples: int, seed: int = 0) -> None:
        if not callable(getattr(segments, "segment_start", None)):
            raise TypeError(
                f"StyleReferenceSegments: {type(segments).__name__} has no segment_start(i); use "
                "StemSegmentDataset or SlakhStems"
            )
        self.segments = segments
        self.target = int(target)
        keys = [segments.segment_start(i) for i in range(len(segments))]
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

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        waves = self.segments[index]
        reference = self.segments[self.partner[index]][self.target]
        return {"waves": waves, "reference": reference.clone()}


class SubtractiveItems(Dataset):
    """Subtractive-Training examples (Villa-Renteria et al. 2024) from a
    :class:`SubtractiveTripletDataset`: ``{"mix_minus": (N,), "stem": (N,), "stem_index": () int64,
    "instruction": str}``, one per (segment, stem present in it), restricted to the stem indices
    ``insert_stems`` (all stems when None).

    The instruction is the triplets' seeded ``InstructionWriter`` applied to the stem's descriptors,
    keyed by (track, stem, start): the same item always gets the same sentence, so a resumed run sees
    the text of the uninterrupted one. ``index[i]`` is the triplet item behind item ``i``.
    """

    def __init__(
        self, triplets: SubtractiveTripletDataset, insert_stems: Sequence[int] | None = None
    ) -> None:
        self.triplets = triplets
        allowed = None if insert_stems is None else {int(s) for s in insert_stems}
        self.index = [k for k, (_, s) in enumerate(triplets.items) if allowed is None or s in allowed]
        if not self.index:
            chosen = (
                "any stem" if allowed is None else f"stems {sorted(allowed)} of {list(triplets.stem_names)}"
            )
            raise ValueError(
                f"SubtractiveItems: {chosen} has no note in any segment; check the stem names, the chosen "
                "stems and the Slakh root"
            )

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = self.triplets[self.index[index]]
        return {
            "mix_minus": item["mix_minus"],
            "stem": item["stem"],
            "stem_index": torch.tensor(int(item["stem_index"])),
            "instruction": item["instruction"],
        }


class ChoraleCropDataset(Dataset):
    """(4, T) int64 SATB voice tokens: crops of ``length`` 16th-note steps from the JSB chorales of
    ``split`` (stemforge-midi's ``load_jsb``: "train", "valid" or "test").

    Crops start every ``hop`` steps; ``hop=None`` gives one crop per chorale (its start), which is
    Coconet's evaluation protocol for fixed-length windows. Chorales shorter than ``length`` are left
    out.
    """

    def __init__(self, split: str, length: int, hop: int | None = None) -> None:
        from stemforge.midi import load_jsb

        if length <= 0 or (hop is not None and hop <= 0):
            raise ValueError(f"ChoraleCropDataset: length ({length}) and hop ({hop}) must be positive")
        self.chorales = [c for c in load_jsb(split) if c.shape[-1] >= length]  # type: ignore[arg-type]
        if not self.chorales:
            raise ValueError(f"no JSB {split} chorale is {length} steps long; use a shorter crop length")
        self.length = length
        self.index = [
            (c, start)
            for c, chorale in enumerate(self.chorales)
            for start in range(0, chorale.shape[-1] - length + 1, hop or chorale.shape[-1])
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> Tensor:
        c, start = self.index[index]
        return self.chorales[c][:, start : start + self.length].clone()
