"""The JSB chorale protocols for a voice-insertion pipeline: framewise negative log-likelihood.

- ``windowed`` (stemforge's): windows of ``length`` 16th-note steps of every test chorale (the first
  window, or all non-overlapping ones); each window scored alone by the exact chain rule over one
  uniformly random order of its 4 x ``length`` tokens; nats summed over the voices and divided by
  the number of frames; the figure is the mean over windows. Nothing outside a window is seen, so
  it bounds from above the NLL of whole chorales under the same model.
- ``coconet`` (Huang et al. 2017, section 7): whole chorales (cut to a multiple of the network's
  downsampling), frames visited in a random order and the 4 voices of each frame in a random
  order, every token scored given all tokens before it in that order; nats per frame of a piece
  averaged over ``orderings`` random orders (5 in the paper); the figure is the mean over pieces
  (and, beside it, the total over all pieces divided by their total frames).

Chorale ``i`` draws its orders from seed + i alone, so sharding does not change a number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stemforge.evaluate.runner import EvaluationError, ItemStore, Shard, run_items

PROTOCOLS = ("windowed", "coconet")


@dataclass(frozen=True)
class MidiSettings:
    split: str = "test"
    protocols: tuple[str, ...] = ("windowed",)
    length: int = 32
    windows: str = "first"
    orderings: int = 5
    max_pieces: int = 0
    max_frames: int = 0
    """coconet: score only the first N frames of each chorale (0: whole chorales, the protocol)."""
    seed: int = 0
    checkpoint: str = ""
    stems: tuple[str, ...] = field(default_factory=tuple)

    def check(self) -> None:
        unknown = [p for p in self.protocols if p not in PROTOCOLS]
        if unknown or not self.protocols:
            raise EvaluationError(
                f"--protocols {','.join(self.protocols)}: choose among {', '.join(PROTOCOLS)}"
            )
        if self.length < 1 or self.orderings < 1:
            raise EvaluationError("--length and --orderings must be at least 1")
        if self.windows not in ("first", "all"):
            raise EvaluationError(f"--windows {self.windows}: choose first or all")

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data["protocols"], data["stems"] = list(self.protocols), list(self.stems)
        return data


def coconet_ranks(voices: int, frames: int, orderings: int, generator: torch.Generator) -> Tensor:
    """(orderings, voices, frames) ranks: frames in a random order, the voices of a frame in a random
    order, frame by frame (all voices of the k-th frame visited before any of the (k+1)-th)."""
    out = torch.empty(orderings, voices, frames, dtype=torch.long)
    for k in range(orderings):
        frame_position = torch.randperm(
            frames, generator=generator
        ).argsort()  # frame t is visited frame_position[t]-th
        voice_position = torch.rand(frames, voices, generator=generator).argsort(1).argsort(1)  # (T, S)
        out[k] = (frame_position[None, :] * voices + voice_position.T).long()
    return out


def evaluate_chorale(pipe: Any, chorale: Tensor, index: int, settings: MidiSettings) -> dict[str, Any]:
    result: dict[str, Any] = {"piece": index, "frames": int(chorale.shape[-1])}
    if "windowed" in settings.protocols:
        length = settings.length
        starts = [0] if settings.windows == "first" else range(0, chorale.shape[-1] - length + 1, length)
        windows = [chorale[:, s : s + length] for s in starts if chorale.shape[-1] >= s + length]
        if windows:
            gen = torch.Generator().manual_seed(settings.seed + index)
            result["windowed"] = pipe.nll(torch.stack(windows), generator=gen).tolist()
        else:
            result["windowed"] = []
    if "coconet" in settings.protocols:
        length = min(chorale.shape[-1], settings.max_frames) if settings.max_frames else chorale.shape[-1]
        frames = length // pipe.multiple * pipe.multiple
        gen = torch.Generator().manual_seed(settings.seed + index)
        if frames:
            ranks = coconet_ranks(chorale.shape[0], frames, settings.orderings, gen)
            x = chorale[None, :, :frames].expand(settings.orderings, -1, -1).contiguous()
            per_ordering = pipe.nll(x, ranks=ranks)
            result["coconet"] = {"frames": frames, "per_ordering": per_ordering.tolist()}
        else:
            result["coconet"] = {"frames": 0, "per_ordering": []}
    return result


def summarize(items: Sequence[dict[str, Any]], settings: MidiSettings) -> dict[str, Any]:
    table: dict[str, Any] = {}
    if "windowed" in settings.protocols:
        values = [v for item in items for v in item["windowed"]]
        mean = sum(values) / len(values) if values else None
        stderr = (
            math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))
            if mean is not None and len(values) > 1
            else None
        )
        table["windowed"] = {"framewise_nll": mean, "stderr": stderr, "count": len(values), "unit": "windows"}
    if "coconet" in settings.protocols:
        pieces = [item["coconet"] for item in items if item["coconet"]["frames"]]
        per_piece = [sum(p["per_ordering"]) / len(p["per_ordering"]) for p in pieces]
        total_frames = sum(p["frames"] for p in pieces)
        table["coconet"] = {
            "framewise_nll": sum(per_piece) / len(per_piece) if per_piece else None,
            "frame_weighted_nll": (
                sum(v * p["frames"] for v, p in zip(per_piece, pieces)) / total_frames
                if total_frames
                else None
            ),
            "count": len(per_piece),
            "unit": "pieces",
            "orderings": settings.orderings,
        }
    return table


def markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    span = f"the first {s['max_frames']} frames of each chorale" if s["max_frames"] else "whole chorales"
    lines = [
        "# JSB chorales: framewise NLL",
        "",
        f"Checkpoint `{s['checkpoint']}`, split {s['split']}, {results['pieces']} chorales, seed {s['seed']}.",
        "",
        "| protocol | framewise NLL (nats) | over | count |",
        "|---|---|---|---|",
    ]
    for name, row in results["table"].items():
        value = row["framewise_nll"]
        extra = f" +- {row['stderr']:.3f}" if row.get("stderr") else ""
        shown = "-" if value is None else f"{value:.3f}{extra}"
        lines.append(f"| {name} | {shown} | {row['unit']} | {row['count']} |")
    lines += [
        "",
        f"windowed: windows of {s['length']} steps ({s['windows']}), one random order of the tokens per window. "
        f"coconet: {span}, frames and then voices in random order, {s['orderings']} orderings per chorale.",
    ]
    return "\n".join(lines) + "\n"


def run_midi(
    pipe: Any,
    out: Path,
    settings: MidiSettings,
    shard: Shard,
    *,
    overwrite: bool = False,
    progress: Any = None,
) -> dict[str, Any] | None:
    from stemforge.midi import load_jsb

    settings = MidiSettings(**{**asdict(settings), "stems": tuple(pipe.stems)})
    settings.check()
    if "windowed" in settings.protocols and settings.length % pipe.multiple:
        raise EvaluationError(
            f"--length {settings.length}: must be a multiple of {pipe.multiple} for this network"
        )
    if len(pipe.stems) != 4:
        raise EvaluationError(
            f"--checkpoint: the JSB protocols need a 4-voice model; this one has {len(pipe.stems)}"
        )
    chorales = load_jsb(settings.split)  # type: ignore[arg-type]
    if settings.max_pieces:
        chorales = chorales[: settings.max_pieces]
    store = ItemStore(out, settings.record(), overwrite=overwrite)
    keys = [f"midi/{settings.split}-{i:03d}" for i in range(len(chorales))]
    run_items(shard, store, keys, lambda i: evaluate_chorale(pipe, chorales[i], i, settings), progress)
    shard.wait()
    if not shard.is_main:
        return None
    items = [store.load(key) for key in keys]
    results = {
        "protocol": "midi",
        "settings": settings.record(),
        "pieces": len(items),
        "table": summarize(items, settings),
    }
    from stemforge.evaluate.report import write_results

    write_results(out, results, markdown(results))
    return results
