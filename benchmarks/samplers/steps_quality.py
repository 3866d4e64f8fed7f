"""Separation quality against the number of sampler steps: DDIM (eta 1, the default) and
DPM-Solver++ at a few step counts, next to DDIM with 200 steps, on a shipped pipeline; CFG by default,
MSDM Dirac or Gaussian with `--method`.

Each setting is one `stemforge-evaluate separation` run (MSDM's SI-SDRi over 4 s windows, MSG-LD's
Mel-MSE) on the same held-out tracks and seed; this script drives them, then writes one JSON, a
Markdown table and a PNG of SI-SDRi and Mel-MSE against steps. Runs already written are reused (the
evaluation app resumes per item), so an interrupted benchmark continues where it stopped.

    OMP_NUM_THREADS=1 hatch run python benchmarks/samplers/steps_quality.py \\
        --checkpoint apps/insert/src/stemforge/insert/checkpoints/demo-audio \\
        --slakh-root runs/audio-demo/corpus --max-tracks 2 --seconds 8 --out runs/steps-quality \\
        --json benchmarks/samplers/steps_quality_demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def _run(args: argparse.Namespace, sampler: str, steps: int, eta: float, out: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "stemforge.evaluate.cli",
        "separation",
        "--checkpoint",
        str(args.checkpoint),
        "--slakh-root",
        str(args.slakh_root),
        "--max-tracks",
        str(args.max_tracks),
        "--seconds",
        str(args.seconds),
        "--steps",
        str(steps),
        "--sampler",
        sampler,
        "--eta",
        str(eta),
        "--methods",
        args.method,
        "--guidance",
        str(args.guidance),
        "--no-audio",
        "--quiet",
        "--out",
        str(out),
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    results = json.loads((out / "results.json").read_text())
    row = results["table"][_label(args)]
    return {
        "sampler": sampler,
        "eta": eta,
        "steps": steps,
        "si_sdri": row["si_sdri_mean"],
        "mel_mse": row["mel_mse_mean"],
        "windows": row["windows"],
        "wall_s": round(wall, 1),
        "command": " ".join(command[1:]),
    }


def _label(args: argparse.Namespace) -> str:
    """The row of stemforge-evaluate's table for the method (only CFG carries a weight)."""
    return f"cfg w={args.guidance:g}" if args.method == "cfg" else args.method


LABELS = {"ddim": "DDIM (eta 1)", "dpm": "DPM-Solver++(2M)", "dpm3": "DPM-Solver++(3M)"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--slakh-root", type=Path, required=True)
    parser.add_argument("--max-tracks", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--method",
        choices=("cfg", "dirac", "gaussian"),
        default="cfg",
        help="separation method (default cfg)",
    )
    parser.add_argument("--guidance", type=float, default=2.0, help="CFG weight (cfg only)")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--reference-steps", type=int, default=200)
    parser.add_argument(
        "--samplers", default="ddim,dpm", help="comma-separated, of ddim, dpm, dpm3 (default ddim,dpm)"
    )
    parser.add_argument("--out", type=Path, required=True, help="folder of the evaluation runs")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    settings = [("ddim", args.reference_steps, 1.0)]
    samplers = tuple(args.samplers.split(","))
    unknown = sorted(set(samplers) - set(LABELS))
    if unknown:
        parser.error(f"--samplers: unknown {', '.join(unknown)}; choose among {', '.join(LABELS)}")
    settings += [(s, n, 1.0 if s == "ddim" else 0.0) for n in args.steps for s in samplers]
    rows = []
    for sampler, steps, eta in settings:
        out = args.out / f"{sampler}-{steps}"
        print(f"{sampler} {steps} steps ...", file=sys.stderr, flush=True)
        rows.append(_run(args, sampler, steps, eta, out))
        print(f"  SI-SDRi {rows[-1]['si_sdri']:+.2f} dB, Mel-MSE {rows[-1]['mel_mse']:.3f}", file=sys.stderr)
    reference = rows[0]
    for row in rows:
        row["si_sdri_vs_reference_db"] = row["si_sdri"] - reference["si_sdri"]
        row["mel_mse_vs_reference"] = row["mel_mse"] / reference["mel_mse"] - 1.0
    result = {
        "checkpoint": str(args.checkpoint),
        "test_set": f"{args.slakh_root} (test), {args.max_tracks} tracks x {args.seconds:g} s",
        "method": _label(args),
        "reference": f"ddim {args.reference_steps} steps, eta 1",
        "rows": rows,
        "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version()},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_average_at_end": os.getloadavg(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        f"| sampler | steps | SI-SDRi (dB) | vs DDIM-{args.reference_steps} | Mel-MSE | vs DDIM-{args.reference_steps} | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['sampler']} | {row['steps']} | {row['si_sdri']:+.2f} | {row['si_sdri_vs_reference_db']:+.2f} | "
            f"{row['mel_mse']:.3f} | {100 * row['mel_mse_vs_reference']:+.1f} % | {row['wall_s']} |"
        )
    args.json.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no PNG", file=sys.stderr)
        return
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for sampler in samplers:
        points = [r for r in rows[1:] if r["sampler"] == sampler]
        label = LABELS[sampler]
        axes[0].plot([r["steps"] for r in points], [r["si_sdri"] for r in points], "o-", label=label)
        axes[1].plot([r["steps"] for r in points], [r["mel_mse"] for r in points], "o-", label=label)
    for ax, key, name in ((axes[0], "si_sdri", "SI-SDRi (dB)"), (axes[1], "mel_mse", "Mel-MSE")):
        ax.axhline(reference[key], color="grey", linestyle="--", label=f"DDIM {args.reference_steps}")
        ax.set_xscale("log")
        ax.set_xlabel("sampler steps")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['method']} separation, {result['test_set']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.json.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
