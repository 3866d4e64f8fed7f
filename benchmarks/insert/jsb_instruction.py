"""Does the embedded JSB model follow its instruction? Rhythm and register words against no instruction.

Each of soprano, alto, tenor and bass is removed in turn from the first ``--limit`` test chorales and
inserted by the model (stemforge-pipelines' ``VoiceInsertionPipeline.insert_tokens``, without parallel fifths/octaves) with no instruction and with each
instruction below (one sentence for the whole chorale, in the training template
``"<voice>: <rhythm>, <register>, <contour>"``). Reported per condition, averaged over the
insertions: onsets per quarter note of the inserted voice (the rhythm descriptor of
``stemforge.train.tasks.midi_instructions``), its mean pitch minus Bach's mean pitch for that voice
(semitones), and note F1 against Bach (as eval_jsb_insertion.py).

    python benchmarks/insert/jsb_instruction.py --limit 10 --steps 8 --out benchmarks/insert/jsb_instruction.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from stemforge.insert.embedded import jsb_checkpoint
from stemforge.metrics.midi_notes import note_scores
from stemforge.midi import JSB_STEMS, REST, load_jsb
from stemforge.pipelines import VoiceInsertionPipeline

CONDITIONS = {
    "none": None,
    "eighth-note motion": "{voice}: eighth-note motion, middle register, level line",
    "long held notes": "{voice}: long held notes, middle register, level line",
    "high register": "{voice}: mostly quarter notes, high register, level line",
    "low register": "{voice}: mostly quarter notes, low register, level line",
}


def notes(row: torch.Tensor) -> torch.Tensor:
    out, begin = [], 0
    values = row.tolist()
    for step in range(1, len(values) + 1):
        if step == len(values) or values[step] != values[begin]:
            if values[begin] != REST:
                out.append((begin, step, values[begin]))
            begin = step
    return torch.tensor(out, dtype=torch.float64).reshape(-1, 3)


def onsets_per_quarter(row: torch.Tensor) -> float:
    return notes(row).shape[0] / (row.numel() / 4)


def mean_pitch(row: torch.Tensor) -> float:
    pitched = row[row != REST]
    return float(pitched.float().mean()) if pitched.numel() else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--steps", type=int, default=8, help="model calls per window")
    parser.add_argument("--order", default="confidence", choices=("random", "confidence"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = VoiceInsertionPipeline.from_pretrained(args.checkpoint or jsb_checkpoint())
    if not model.text_dim:
        raise SystemExit(f"{model.path}: this model has no instruction input")
    chorales = load_jsb("test")[: args.limit]
    stats = {c: {"density": [], "pitch_offset": [], "f1": []} for c in CONDITIONS}
    start = time.perf_counter()
    for index, chorale in enumerate(chorales):
        for voice, name in enumerate(JSB_STEMS):
            given = torch.ones(1, 4, dtype=torch.bool)
            given[0, voice] = False
            for condition, template in CONDITIONS.items():
                cond = None if template is None else model.instruction_cond(template.format(voice=name), 1)
                filled = model.insert_tokens(
                    chorale[None].clone(),
                    given,
                    seed=args.seed + index,
                    steps=args.steps,
                    order=args.order,
                    cond=cond,
                    no_parallels=True,
                )[0, voice]
                stats[condition]["density"].append(onsets_per_quarter(filled))
                stats[condition]["pitch_offset"].append(mean_pitch(filled) - mean_pitch(chorale[voice]))
                score = note_scores(notes(filled), notes(chorale[voice]), onset_tolerance=0.5)
                stats[condition]["f1"].append(score.f1)
        print(f"chorale {index + 1}/{len(chorales)} done ({time.perf_counter() - start:.0f} s)", flush=True)
    bach_density = sum(onsets_per_quarter(c[v]) for c in chorales for v in range(4)) / (4 * len(chorales))
    table = {c: {k: sum(v) / len(v) for k, v in s.items()} for c, s in stats.items()}
    print("| instruction | onsets per quarter | mean pitch - Bach's (semitones) | note F1 |")
    print("|---|---|---|---|")
    for condition, row in table.items():
        print(f"| {condition} | {row['density']:.2f} | {row['pitch_offset']:+.2f} | {row['f1']:.3f} |")
    print(f"| (Bach) | {bach_density:.2f} | 0 | 1 |")
    result = {
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()},
        "torch": torch.__version__,
        "model": str(model.path),
        "model_step": model.step,
        "num_chorales": len(chorales),
        "steps_per_window": args.steps,
        "order": args.order,
        "seed": args.seed,
        "instructions": CONDITIONS,
        "bach_onsets_per_quarter": bach_density,
        "seconds": time.perf_counter() - start,
        "table": table,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
