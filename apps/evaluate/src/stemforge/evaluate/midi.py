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

- ``insertion``: each voice of a chorale removed in turn and written back by the model
  (``VoiceInsertionPipeline.insert_tokens``: window by window, ``insert_steps`` model calls per
  window or one token per call, ``order``, parallel fifths / octaves forbidden or allowed), by the
  two baselines of :mod:`stemforge.evaluate.voice_baselines` (statistics from the training split)
  and by Bach; scored by note F1 against Bach's voice and by the parallel fifths / octaves that
  involve the inserted voice, per chorale; the figures are means over chorales, per voice and over
  the four voices. ``max_frames`` crops the chorales here too.

Chorale ``i`` draws its orders and its insertions from seed + i alone, so sharding does not change
a number.
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

PROTOCOLS = ("windowed", "coconet", "insertion")


@dataclass(frozen=True)
class MidiSettings:
    split: str = "test"
    protocols: tuple[str, ...] = ("windowed",)
    length: int = 32
    windows: str = "first"
    orderings: int = 5
    max_pieces: int = 0
    max_frames: int = 0
    """coconet / insertion: only the first N frames of each chorale (0: whole chorales, the protocol)."""
    insert_steps: int = 0
    """insertion: model calls per window (0: one token per call)."""
    order: str = "confidence"
    parallels: str = "forbidden"
    temperature: float = 1.0
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
        if self.order not in ("random", "confidence"):
            raise EvaluationError(f"--order {self.order}: choose random or confidence")
        if self.parallels not in ("forbidden", "allowed"):
            raise EvaluationError(f"--parallels {self.parallels}: choose forbidden or allowed")
        if self.insert_steps < 0 or not self.temperature > 0:
            raise EvaluationError("--insert-steps must be >= 0 (0: one token per call) and --temperature > 0")

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


def evaluate_insertion(
    pipe: Any, chorale: Tensor, index: int, settings: MidiSettings, statistics: Any
) -> dict[str, Any]:
    """Each voice removed in turn: per method, note F1 and parallels of the inserted voice."""
    from stemforge.evaluate.voice_baselines import (
        METHODS,
        most_frequent_pitch,
        note_f1,
        parallels_with,
        voice_leading,
    )

    if settings.max_frames:
        chorale = chorale[:, : settings.max_frames]
    modes, ranges = statistics
    voices = chorale.shape[0]
    filled = pipe.insert_tokens(
        chorale[None].expand(voices, -1, -1).clone(),
        ~torch.eye(voices, dtype=torch.bool),  # row v: every voice given but v
        seed=settings.seed + index,
        steps=settings.insert_steps or None,
        order=settings.order,  # type: ignore[arg-type]
        temperature=settings.temperature,
        no_parallels=settings.parallels == "forbidden",
    )
    scores: dict[str, Any] = {m: {"note_f1": [], "parallels": []} for m in METHODS}
    for v in range(voices):
        completed = {
            "model": filled[v],
            "most frequent pitch": most_frequent_pitch(chorale, v, modes),
            "voice leading": voice_leading(chorale, v, ranges, modes[v]),
            "Bach": chorale,
        }
        for method, tokens in completed.items():
            scores[method]["note_f1"].append(note_f1(tokens[v], chorale[v]))
            scores[method]["parallels"].append(parallels_with(tokens, v))
    return {"frames": int(chorale.shape[-1]), "methods": scores}


def evaluate_chorale(
    pipe: Any, chorale: Tensor, index: int, settings: MidiSettings, statistics: Any = None
) -> dict[str, Any]:
    result: dict[str, Any] = {"piece": index, "frames": int(chorale.shape[-1])}
    if "insertion" in settings.protocols:
        result["insertion"] = evaluate_insertion(pipe, chorale, index, settings, statistics)
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


def summarize_insertion(items: Sequence[dict[str, Any]], stems: Sequence[str]) -> dict[str, Any]:
    """Per method: mean over chorales of note F1 and of parallels, per voice and over all voices."""
    methods = list(items[0]["insertion"]["methods"]) if items else []
    out: dict[str, Any] = {}
    for method in methods:
        per = [item["insertion"]["methods"][method] for item in items]
        row: dict[str, Any] = {}
        for key in ("note_f1", "parallels"):
            by_voice = {stem: sum(p[key][v] for p in per) / len(per) for v, stem in enumerate(stems)}
            row[key] = by_voice
            row[f"{key}_mean"] = sum(by_voice.values()) / len(by_voice)
        out[method] = row
    return out


def markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    span = f"the first {s['max_frames']} frames of each chorale" if s["max_frames"] else "whole chorales"
    lines = [
        "# JSB chorales",
        "",
        f"Checkpoint `{s['checkpoint']}`, split {s['split']}, {results['pieces']} chorales, seed {s['seed']}.",
    ]
    nll = {name: row for name, row in results["table"].items() if name != "insertion"}
    if nll:
        lines += [
            "",
            "## Framewise NLL",
            "",
            "| protocol | framewise NLL (nats) | over | count |",
            "|---|---|---|---|",
        ]
        for name, row in nll.items():
            value = row["framewise_nll"]
            extra = f" +- {row['stderr']:.3f}" if row.get("stderr") else ""
            shown = "-" if value is None else f"{value:.3f}{extra}"
            lines.append(f"| {name} | {shown} | {row['unit']} | {row['count']} |")
        lines += [
            "",
            f"windowed: windows of {s['length']} steps ({s['windows']}), one random order of the tokens per "
            f"window. coconet: {span}, frames and then voices in random order, {s['orderings']} orderings "
            "per chorale.",
        ]
    if "insertion" in results["table"]:
        stems = s["stems"]
        calls = (
            f"{s['insert_steps']} model calls per window" if s["insert_steps"] else "one token per model call"
        )
        lines += [
            "",
            "## Voice insertion",
            "",
            f"Each voice of {results['pieces']} chorales ({span}) removed in turn and written back. Model: "
            f"{calls}, {s['order']} order, temperature {s['temperature']:g}, parallel fifths / octaves "
            f"{s['parallels']}. Baselines: statistics of the training split.",
            "",
            "| method | "
            + " | ".join(f"F1 {v}" for v in stems)
            + " | F1 mean | parallel 5ths/8ves per chorale (mean over voices) |",
            "|---|" + "---|" * (len(stems) + 2),
        ]
        for method, row in results["table"]["insertion"].items():
            cells = " | ".join(f"{row['note_f1'][v]:.3f}" for v in stems)
            mean = "(reference)" if method == "Bach" else f"{row['note_f1_mean']:.3f}"
            lines.append(f"| {method} | {cells} | {mean} | {row['parallels_mean']:.2f} |")
        lines += [
            "",
            "Note F1: a note is a run of one pitch on the 16th-note grid; matched on pitch and onset step, "
            "offsets ignored. Parallels: those that involve the inserted voice.",
        ]
        table = results["table"]["insertion"]
        beaten = [
            m
            for m in ("most frequent pitch", "voice leading")
            if table[m]["note_f1_mean"] >= table["model"]["note_f1_mean"]
        ]
        if beaten:
            lines += ["", f"The model does not beat on note F1: {', '.join(beaten)}."]
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
    statistics = None
    if "insertion" in settings.protocols:
        from stemforge.evaluate.voice_baselines import voice_statistics

        statistics = voice_statistics(load_jsb("train"))
    run_items(
        shard, store, keys, lambda i: evaluate_chorale(pipe, chorales[i], i, settings, statistics), progress
    )
    shard.wait()
    if not shard.is_main:
        return None
    items = [store.load(key) for key in keys]
    table: dict[str, Any] = summarize(items, settings)
    if "insertion" in settings.protocols:
        table["insertion"] = summarize_insertion(items, settings.stems)
    results = {"protocol": "midi", "settings": settings.record(), "pieces": len(items), "table": table}
    from stemforge.evaluate.report import write_results

    write_results(out, results, markdown(results))
    return results
