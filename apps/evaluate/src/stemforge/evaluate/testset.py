"""Test sets: tracks of separated stems, read at a model's sample rate.

Two layouts are read:

- Slakh2100-format folders (``ROOT/SPLIT/TrackXXXXX/metadata.yaml`` + ``stems/Sxx.flac``), the
  format of Slakh itself and of stemforge-data's rendered chorale corpus; stems are grouped by
  ``stem_name`` (the rendered chorales: soprano, alto, tenor, bass) or by ``inst_class`` (Slakh:
  bass, drums, guitar, piano), several files of one group summed, as MSDM does;
- stem folders in the style of MUSDB18 (``ROOT/TRACK/<stem>.wav|flac|ogg``, or ROOT itself one
  such track): one file per stem, named after it.

The mixture is always the sum of the stems (the protocol of MSDM and MSG-LD), never a separate
mixture file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


class TestSetError(ValueError):
    """A test set that cannot be read as asked; the message names the folder and the fix."""


@dataclass(frozen=True)
class Track:
    """One track: per stem, the files summed into it (empty: the stem is silent in this track)."""

    name: str
    files: tuple[tuple[Path, ...], ...]

    def read(self, sample_rate: int, offset: float = 0.0, seconds: float | None = None) -> torch.Tensor:
        """(S, N) stems at ``sample_rate``, ``seconds`` from ``offset`` (all of it when None)."""
        from stemforge.data import read_audio

        waves: list[torch.Tensor | None] = []
        for group in self.files:
            total: torch.Tensor | None = None
            for path in group:
                wave, _ = read_audio(path, sample_rate=sample_rate)
                total = wave if total is None else _add(total, wave)
            waves.append(total)
        length = max((w.shape[-1] for w in waves if w is not None), default=0)
        stems = torch.zeros(len(waves), length)
        for s, found in enumerate(waves):
            if found is not None:
                stems[s, : found.shape[-1]] = found
        start = round(offset * sample_rate)
        stop = length if seconds is None else start + round(seconds * sample_rate)
        return stems[:, start:stop]


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    n = max(a.shape[-1], b.shape[-1])
    out = torch.zeros(n)
    out[: a.shape[-1]] += a
    out[: b.shape[-1]] += b
    return out


def slakh_tracks(
    root: Path,
    split: str,
    stems: Sequence[str],
    group_by: Literal["stem_name", "inst_class"] = "stem_name",
) -> list[Track]:
    """The tracks of a Slakh-format folder's split that have at least one of ``stems``."""
    from stemforge.data import SlakhFormatError, scan_tracks

    if not (root / split).is_dir():
        raise TestSetError(
            f"--slakh-root {root}: no {split}/ folder; give the folder that holds train/ validation/ test/ "
            "(e.g. the output of `stemforge-train data render --split test`), or choose --split"
        )
    try:
        entries, _ = scan_tracks(root, split, list(stems), group_by=group_by)
    except SlakhFormatError as err:
        raise TestSetError(f"--slakh-root {root}: {err}") from err
    if not entries:
        raise TestSetError(
            f"--slakh-root {root}/{split}: no track has any of the stems {', '.join(stems)} (grouped by "
            f"{group_by}); check --group-by (inst_class for Slakh2100, stem_name for rendered chorales)"
        )
    return [Track(e.name, e.files) for e in entries]


def stem_folder_tracks(root: Path, stems: Sequence[str]) -> list[Track]:
    """MUSDB-style track folders under ``root`` (or ``root`` itself when it holds the stem files)."""
    if not root.is_dir():
        raise TestSetError(f"--stems-root {root}: no such folder")

    def files_of(folder: Path) -> tuple[tuple[Path, ...], ...] | None:
        found = []
        for stem in stems:
            match = [
                folder / f"{stem}{suffix}"
                for suffix in AUDIO_SUFFIXES
                if (folder / f"{stem}{suffix}").is_file()
            ]
            found.append(tuple(match[:1]))
        return tuple(found) if any(found) else None

    own = files_of(root)
    if own is not None:
        return [Track(root.name, own)]
    tracks = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = files_of(folder)
        if files is not None:
            tracks.append(Track(folder.name, files))
    if not tracks:
        raise TestSetError(
            f"--stems-root {root}: no track folder holds any of {', '.join(f'{s}.wav' for s in stems)} "
            "(or .flac / .ogg); name each stem file after the model's stem"
        )
    return tracks
