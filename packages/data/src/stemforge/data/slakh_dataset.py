"""A torch Dataset of fixed-length multi-stem segments from a Slakh2100-format folder.

Stems are grouped by ``inst_class`` (lower case, e.g. "piano", "strings (continued)") or by the
``stem_name`` field that stemforge's renderer writes; stems of one class are summed, a class absent
from a track is silence, and stems with ``audio_rendered: false`` are skipped. The mixture is the sum
of the returned stems (as in MSDM and MSG-LD), not Slakh's mix.flac, which holds every class.

Tracks are dropped with MSDM's rules (Mariani et al. 2024, the Slakh2100 pre-processing of their
code): stems of unequal lengths, or a track shorter than one segment; also a track where none of the
asked stems is present. Evaluation (``train=False``) reads consecutive segments with no shift;
training shifts every segment by a random offset of up to half a segment, drawn from
(seed, epoch, index), so an epoch is reproducible. The order is a permutation from (seed, epoch)
(identity for evaluation), split across ``world_size`` ranks by striding, padded by wrapping so every
rank gets the same number of items (as torch's DistributedSampler).

``variant="redux"`` leaves out the tracks that Slakh2100-redux moved to ``omitted/`` (and any name
in ``exclude``); ``"orig"`` reads every track of the split folder.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch

from stemforge.data.audio import AudioError, audio_info
from stemforge.data.resample import resample
from stemforge.data.slakh_format import OMITTED, SLAKH_SPLITS, SlakhFormatError, list_tracks, read_metadata
from stemforge.midi import DEFAULT_STEMS

GroupBy = Literal["inst_class", "stem_name"]
Variant = Literal["orig", "redux"]


@dataclass(frozen=True)
class TrackEntry:
    name: str
    path: Path
    files: tuple[tuple[Path, ...], ...]  # per asked stem, the files summed into it
    num_frames: int  # at the files' native rate
    native_rate: int


@dataclass(frozen=True)
class DroppedTrack:
    name: str
    reason: str


def scan_tracks(
    root: str | os.PathLike[str],
    split: str,
    stems: Sequence[str],
    *,
    group_by: GroupBy = "inst_class",
    variant: Variant = "redux",
    exclude: Iterable[str] = (),
    min_frames: int = 0,
) -> tuple[list[TrackEntry], list[DroppedTrack]]:
    """The usable tracks of a split and the dropped ones with their reason (MSDM's drop rules)."""
    if split not in (*SLAKH_SPLITS, OMITTED):
        raise SlakhFormatError(f"split={split!r}; use one of {SLAKH_SPLITS}")
    if variant not in ("orig", "redux"):
        raise ValueError(f"variant={variant!r}; use 'orig' or 'redux'")
    excluded = set(exclude)
    if variant == "redux" and (Path(root) / OMITTED).is_dir():
        excluded |= {p.name for p in (Path(root) / OMITTED).iterdir()}
    keep, dropped = [], []
    for track_dir in list_tracks(root, split):
        if track_dir.name in excluded:
            continue
        info = read_metadata(track_dir)
        files: list[list[Path]] = [[] for _ in stems]
        for stem in info.stems:
            if not stem.audio_rendered:
                continue
            label = stem.inst_class.lower() if group_by == "inst_class" else (stem.stem_name or "")
            if label in stems:
                if not stem.path.is_file():
                    raise SlakhFormatError(
                        f"{stem.path}: metadata says audio_rendered but the file is missing; "
                        "restore the track or set audio_rendered: false"
                    )
                files[stems.index(label)].append(stem.path)
        present = [p for group in files for p in group]
        if not present:
            dropped.append(DroppedTrack(track_dir.name, f"none of the stems {tuple(stems)}"))
            continue
        headers = [audio_info(p) for p in present]
        lengths = {h[0] for h in headers}
        rates = {h[1] for h in headers}
        if len(lengths) > 1 or len(rates) > 1:
            dropped.append(DroppedTrack(track_dir.name, f"stems of unequal lengths {sorted(lengths)}"))
            continue
        frames, rate = lengths.pop(), rates.pop()
        if frames < min_frames:
            dropped.append(
                DroppedTrack(track_dir.name, f"shorter than a segment ({frames} < {min_frames} frames)")
            )
            continue
        keep.append(TrackEntry(track_dir.name, track_dir, tuple(tuple(g) for g in files), frames, rate))
    return keep, dropped


class SlakhDataset(torch.utils.data.Dataset):
    """Fixed-length segments of named stems from a Slakh2100-format root.

    Items are dicts: ``stems`` (S, L) float32, ``mix`` (L,) float32 = sum of stems, ``track`` (name),
    ``start`` (first sample, at ``sample_rate``). ``stem_names`` and ``sample_rate`` travel with it.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        stems: Sequence[str] = DEFAULT_STEMS,
        group_by: GroupBy = "inst_class",
        variant: Variant = "redux",
        exclude: Iterable[str] = (),
        sample_rate: int = 16000,
        segment_samples: int = 163840,
        train: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if segment_samples < 1:
            raise ValueError(f"segment_samples={segment_samples}; give a positive length")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank} with world_size={world_size}; need 0 <= rank < world_size")
        self.root = Path(root)
        self.split = split
        self.stem_names = tuple(stems)
        self.sample_rate = int(sample_rate)
        self.segment_samples = int(segment_samples)
        self.train = train
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self._order_cache: tuple[int, np.ndarray] | None = None  # (epoch, this rank's order)
        # Drop rule on length is applied at the native rate (MSDM reads at the file rate).
        tracks, self.dropped = scan_tracks(
            root, split, self.stem_names, group_by=group_by, variant=variant, exclude=exclude
        )
        self.tracks: list[TrackEntry] = []
        for track in tracks:
            native_segment = math.ceil(segment_samples * track.native_rate / self.sample_rate)
            if track.num_frames < native_segment:
                self.dropped.append(
                    DroppedTrack(
                        track.name, f"shorter than a segment ({track.num_frames} < {native_segment} frames)"
                    )
                )
            else:
                self.tracks.append(track)
        if not self.tracks:
            reasons = sorted({d.reason.split(" (")[0] for d in self.dropped}) or [
                "the split folder has no tracks"
            ]
            raise SlakhFormatError(
                f"{self.root / split}: no usable track for stems {self.stem_names} "
                f"({len(self.dropped)} dropped: {'; '.join(reasons)}); check stems, group_by and segment_samples"
            )
        if any(t.native_rate != self.sample_rate for t in self.tracks):
            rates = sorted({t.native_rate for t in self.tracks})
            warnings.warn(
                f"{self.root}: audio at {rates} Hz is resampled to {self.sample_rate} Hz on every read",
                stacklevel=2,
            )
        self.segments: list[tuple[int, int]] = []  # (track index, segment index)
        for i, track in enumerate(self.tracks):
            n = math.floor(track.num_frames * self.sample_rate / track.native_rate) // self.segment_samples
            self.segments.extend((i, k) for k in range(n))

    def set_epoch(self, epoch: int) -> None:
        """Change the shuffled order and the random shifts (call once per epoch on every rank)."""
        self.epoch = int(epoch)

    def _order(self) -> np.ndarray:
        if self._order_cache is not None and self._order_cache[0] == self.epoch:
            return self._order_cache[1]
        order = self._compute_order()
        self._order_cache = (self.epoch, order)
        return order

    def _compute_order(self) -> np.ndarray:
        n = len(self.segments)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.train else np.arange(n)
        per_rank = math.ceil(n / self.world_size) if n else 0
        if per_rank * self.world_size > n and n:
            order = np.concatenate([order, order[: per_rank * self.world_size - n]])
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(self.segments)
        return math.ceil(n / self.world_size) if n else 0

    def segment_start(self, index: int) -> tuple[int, int]:
        """(track index, start sample at ``sample_rate``) of item ``index`` on this rank and epoch."""
        global_index = int(self._order()[index])
        t, k = self.segments[global_index]
        length = self.segment_samples
        total = math.floor(self.tracks[t].num_frames * self.sample_rate / self.tracks[t].native_rate)
        start = k * length
        if self.train:
            rng = np.random.default_rng([self.seed, self.epoch, global_index, 1])
            start += int(rng.integers(-(length // 2), length // 2 + 1))
            start = min(max(start, 0), total - length)
        return t, start

    def _read(self, path: Path, track: TrackEntry, start: int) -> np.ndarray:
        length = self.segment_samples
        if track.native_rate == self.sample_rate:
            a, b = start, start + length
        else:
            a = math.floor(start * track.native_rate / self.sample_rate)
            b = min(track.num_frames, math.ceil((start + length) * track.native_rate / self.sample_rate) + 1)
        try:
            data, _ = sf.read(str(path), start=a, stop=b, dtype="float32", always_2d=True)
        except Exception as err:
            raise AudioError(f"{path}: cannot read audio ({err}); the file is damaged") from err
        wave = data.mean(1)
        if not np.isfinite(wave).all():
            raise AudioError(f"{path}: NaN or infinite samples in the segment at {a}")
        if track.native_rate != self.sample_rate:
            wave = resample(torch.from_numpy(wave), track.native_rate, self.sample_rate).numpy()
        out = np.zeros(length, dtype=np.float32)
        out[: min(length, wave.shape[0])] = wave[:length]
        return out

    def __getitem__(self, index: int) -> dict[str, object]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        t, start = self.segment_start(index)
        track = self.tracks[t]
        stems = np.zeros((len(self.stem_names), self.segment_samples), dtype=np.float32)
        for s, files in enumerate(track.files):
            for path in files:
                stems[s] += self._read(path, track, start)
        # Sums in numpy: torch's intra-op threads cost more than they save on a few stems.
        mix = stems.sum(0)
        return {
            "stems": torch.from_numpy(stems),
            "mix": torch.from_numpy(mix),
            "track": track.name,
            "start": start,
        }
