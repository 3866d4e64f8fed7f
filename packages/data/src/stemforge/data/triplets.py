"""Subtractive-training triplets (Villa-Renteria et al. 2024, "Subtractive Training for Music Stem
Insertion using Latent Diffusion Models").

For every segment of every track and every stem present in it, one example:
(mix, mix minus that stem, the stem, an instruction describing the stem). The mixture is the sum of
the named stems (``SlakhDataset``), so ``mix - stem == mix_minus`` exactly. The instruction comes
from the stem's MIDI (``MIDI/Sxx.mid`` of the Slakh folder) and audio through
:func:`describe_stem` and an :class:`InstructionWriter` (or the user's own callable).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pretty_midi
import torch

from stemforge.data.descriptors import StemDescriptors, describe_stem, plain_instrument_name
from stemforge.data.instructions import InstructionWriter
from stemforge.data.slakh_dataset import GroupBy, SlakhDataset, Variant
from stemforge.data.slakh_format import read_metadata
from stemforge.midi import DEFAULT_STEMS, load_midi

InstructionCallable = Callable[[StemDescriptors], str]


def subtractive_triplet(stems: torch.Tensor, index: int) -> dict[str, torch.Tensor]:
    """(mix, mix minus stem ``index``, that stem) from stems (S, N); mix is their sum."""
    if stems.dim() < 2 or not 0 <= index < stems.shape[-2]:
        raise ValueError(f"subtractive_triplet: stems {tuple(stems.shape)} has no stem {index}")
    mix = stems.sum(-2)
    stem = stems[..., index, :]
    others = torch.cat([stems[..., :index, :], stems[..., index + 1 :, :]], dim=-2).sum(-2)
    return {"mix": mix, "mix_minus": others, "stem": stem}


@functools.lru_cache(maxsize=256)
def _track_midi(
    track_dir: str,
) -> tuple[pretty_midi.PrettyMIDI, dict[str, pretty_midi.PrettyMIDI], dict[str, str]]:
    info = read_metadata(track_dir)
    midi_dir = Path(track_dir) / str(info.metadata.get("midi_dir", "MIDI"))
    full = load_midi(Path(track_dir) / "all_src.mid", require_notes=False)
    per_stem, names = {}, {}
    for stem in info.stems:
        path = midi_dir / f"{stem.key}.mid"
        if path.is_file():
            per_stem[stem.key] = load_midi(path, require_notes=False)
        names[stem.key] = plain_instrument_name(
            str(info.metadata["stems"][stem.key].get("midi_program_name", ""))
        )
    return full, per_stem, names


class SubtractiveTripletDataset(torch.utils.data.Dataset):
    """Triplets with instructions over a Slakh-format root; one item per (segment, present stem).

    Items: ``mix``, ``mix_minus``, ``stem`` (L,) float32, ``stem_index`` (int), ``stem_name``,
    ``instruction`` (str), ``descriptors`` (dict), ``track``, ``start``. A stem is "present" in a
    segment when its MIDI has a note sounding in the segment's nominal window.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        split: str = "train",
        *,
        stems: Sequence[str] = DEFAULT_STEMS,
        group_by: GroupBy = "inst_class",
        variant: Variant = "redux",
        sample_rate: int = 16000,
        segment_samples: int = 163840,
        train: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        instruction_fn: InstructionCallable | None = None,
    ) -> None:
        self.segments = SlakhDataset(
            root,
            split,
            stems=stems,
            group_by=group_by,
            variant=variant,
            sample_rate=sample_rate,
            segment_samples=segment_samples,
            train=train,
            seed=seed,
            rank=rank,
            world_size=world_size,
        )
        self.stem_names = self.segments.stem_names
        self.sample_rate = self.segments.sample_rate
        self.writer = InstructionWriter(seed)
        self.instruction_fn = instruction_fn
        self.items: list[tuple[int, int]] = []  # (segment item, stem index)
        self._index()

    def _index(self) -> None:
        seconds = self.segments.segment_samples / self.sample_rate
        self.items = []
        for i in range(len(self.segments)):
            t, start = self.segments.segment_start(i)
            window = (start / self.sample_rate, start / self.sample_rate + seconds)
            for s in range(len(self.stem_names)):
                if self._notes_in(t, s, *window):
                    self.items.append((i, s))

    def set_epoch(self, epoch: int) -> None:
        """New order and shifts for training; the stems present are found again for the new windows."""
        self.segments.set_epoch(epoch)
        self._index()

    def _stem_tracks(
        self, t: int, s: int
    ) -> tuple[pretty_midi.PrettyMIDI, list[pretty_midi.Instrument], str]:
        track = self.segments.tracks[t]
        full, per_stem, names = _track_midi(str(track.path))
        keys = [p.stem for p in track.files[s]]
        instruments = [inst for k in keys if k in per_stem for inst in per_stem[k].instruments]
        name = names.get(keys[0], "") if keys else ""
        return full, instruments, name

    def _notes_in(self, t: int, s: int, start: float, end: float) -> bool:
        if not self.segments.tracks[t].files[s]:
            return False
        _, instruments, _ = self._stem_tracks(t, s)
        return any(n.start < end and n.end > start for inst in instruments for n in inst.notes)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, object]:
        seg_index, s = self.items[index]
        item = self.segments[seg_index]
        t, start = self.segments.segment_start(seg_index)
        stems = item["stems"].numpy()  # type: ignore[attr-defined]
        mix = item["mix"].numpy()  # type: ignore[attr-defined]
        stem = stems[s].copy()
        # mix minus stem = the sum of the other stems (not mix - stem, which rounds differently).
        triplet = {
            "mix": torch.from_numpy(mix),
            "mix_minus": torch.from_numpy(np.delete(stems, s, axis=0).sum(0)),
            "stem": torch.from_numpy(stem),
        }
        full, instruments, program_name = self._stem_tracks(t, s)
        begin = start / self.sample_rate
        stem_name = self.stem_names[s]
        is_drum = bool(instruments) and all(i.is_drum for i in instruments)
        desc = describe_stem(
            stem_name,
            instruments,
            full,
            start=begin,
            end=begin + self.segments.segment_samples / self.sample_rate,
            instrument_name="drums" if is_drum else (program_name or None),
            audio=stem,
            mix=mix,
        )
        key = f"{item['track']}/{stem_name}/{start}"
        if self.instruction_fn is not None:
            instruction = self.instruction_fn(desc)
            if not isinstance(instruction, str) or not instruction.strip():
                raise ValueError(
                    f"instruction_fn returned {instruction!r} for {key}; it must return a non-empty str"
                )
        else:
            instruction = self.writer(desc, key=key)
        return {
            **triplet,
            "stem_index": s,
            "stem_name": stem_name,
            "instruction": instruction,
            "descriptors": desc.to_dict(),
            "track": item["track"],
            "start": start,
        }
