"""Voice insertion on held-out JSB chorales: the MIDI model against two baselines.

Each of soprano, alto, tenor and bass is removed in turn from every chorale of a split and written
back by (1) the MIDI insertion model (stemforge-insert's window-by-window unmasking sampler), (2)
the most-frequent-pitch baseline and (3) the voice-leading baseline (stemforge.insert.baselines;
their statistics come from the training split). Scores, per removed voice:

- note F1 against Bach's voice (stemforge.metrics.midi_notes.note_scores; notes are runs of equal
  16th-note tokens, a match needs the same pitch and the same onset step, offsets ignored);
- parallel fifths + octaves that involve the inserted voice (stemforge.metrics.satb: the count on
  the completed chorale minus the count with the inserted voice silent; the given voices' own
  parallels cancel), per chorale; Bach's own voices give the reference row.

    python benchmarks/insert/eval_jsb_insertion.py --split test --out benchmarks/insert/jsb_insertion.json

Prints a Markdown table and writes JSON (machine, versions, settings, per-voice figures).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from stemforge.insert.baselines import most_frequent_pitch, voice_leading, voice_statistics
from stemforge.insert.embedded import jsb_checkpoint
from stemforge.metrics.midi_notes import note_scores
from stemforge.metrics.satb import parallel_fifths_octaves
from stemforge.midi import JSB_STEMS, REST, load_jsb
from stemforge.pipelines import VoiceInsertionPipeline

METHODS = ("model", "most frequent pitch", "voice leading", "Bach")


def notes(row: torch.Tensor) -> torch.Tensor:
    """(K, 3) (onset, offset, pitch) of runs of equal non-rest tokens."""
    out, begin = [], 0
    values = row.tolist()
    for step in range(1, len(values) + 1):
        if step == len(values) or values[step] != values[begin]:
            if values[begin] != REST:
                out.append((begin, step, values[begin]))
            begin = step
    return torch.tensor(out, dtype=torch.float64).reshape(-1, 3)


def parallels_with(voices: torch.Tensor, voice: int) -> int:
    silent = voices.clone()
    silent[voice] = REST
    full, without = parallel_fifths_octaves(voices), parallel_fifths_octaves(silent)
    return sum(full.values()) - sum(without.values())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="MIDI model (default: the embedded one)"
    )
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--limit", type=int, default=0, help="first N chorales only (0: all)")
    parser.add_argument(
        "--steps", type=int, default=None, help="model calls per window (default: one per token)"
    )
    parser.add_argument(
        "--order",
        default="random",
        choices=("random", "confidence"),
        help="reveal order: random (ancestral sampling) or confidence (MaskGIT, most probable first)",
    )
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument(
        "--no-parallels", action="store_true", help="forbid parallel fifths/octaves while decoding"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = VoiceInsertionPipeline.from_pretrained(args.checkpoint or jsb_checkpoint())
    chorales = load_jsb(args.split)
    if args.limit:
        chorales = chorales[: args.limit]
    modes, ranges = voice_statistics(load_jsb("train"))
    f1 = {m: [[] for _ in range(4)] for m in METHODS}
    par = {m: [[] for _ in range(4)] for m in METHODS}
    start = time.perf_counter()
    for index, chorale in enumerate(chorales):
        # The four removals of one chorale run as one batch of the model.
        given = ~torch.eye(4, dtype=torch.bool)
        filled = model.insert_tokens(
            chorale[None].expand(4, -1, -1).clone(),
            given,
            seed=args.seed + index,
            steps=args.steps,
            order=args.order,
            temperature=args.temperature,
            no_parallels=args.no_parallels,
        )
        for voice in range(4):
            completed = {
                "model": filled[voice],
                "most frequent pitch": most_frequent_pitch(chorale, voice, modes),
                "voice leading": voice_leading(chorale, voice, ranges, modes[voice]),
                "Bach": chorale,
            }
            reference = notes(chorale[voice])
            for method, voices in completed.items():
                f1[method][voice].append(note_scores(notes(voices[voice]), reference, onset_tolerance=0.5).f1)
                par[method][voice].append(parallels_with(voices, voice))
        print(f"chorale {index + 1}/{len(chorales)} done ({time.perf_counter() - start:.0f} s)", flush=True)
    seconds = time.perf_counter() - start

    def mean(values: list[float]) -> float:
        return float(sum(values) / len(values))

    table = {
        m: {
            "note_f1": {JSB_STEMS[v]: mean(f1[m][v]) for v in range(4)},
            "note_f1_mean": mean([x for v in range(4) for x in f1[m][v]]),
            "parallels_per_chorale": {JSB_STEMS[v]: mean(par[m][v]) for v in range(4)},
            "parallels_per_chorale_mean": mean([x for v in range(4) for x in par[m][v]]),
        }
        for m in METHODS
    }
    header = (
        "| method | "
        + " | ".join(f"F1 {s}" for s in JSB_STEMS)
        + " | F1 mean | parallel 5ths/8ves per chorale (mean over S, A, T, B) |"
    )
    print(header)
    print("|" + "---|" * (len(JSB_STEMS) + 3))
    for m in METHODS:
        row = table[m]
        f1_cells = " | ".join(f"{row['note_f1'][s]:.3f}" for s in JSB_STEMS)
        f1_mean = "(reference)" if m == "Bach" else f"{row['note_f1_mean']:.3f}"
        print(f"| {m} | {f1_cells} | {f1_mean} | {row['parallels_per_chorale_mean']:.2f} |")
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "threads": torch.get_num_threads(),
        },
        "versions": {
            "torch": torch.__version__,
            **(
                json.loads((model.path / "pipeline.json").read_text()).get("packages", {})
                if (model.path / "pipeline.json").is_file()
                else {}
            ),
        },
        "model": str(model.path),
        "model_step": model.step,
        "split": args.split,
        "num_chorales": len(chorales),
        "steps_per_window": args.steps,
        "order": args.order,
        "temperature": args.temperature,
        "no_parallels": args.no_parallels,
        "window": model.window,
        "seed": args.seed,
        "seconds": seconds,
        "table": table,
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
