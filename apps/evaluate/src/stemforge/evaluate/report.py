"""What a run leaves: ``results.json`` (every number with its settings and versions), ``results.md``
(the tables as in the papers) and PNG plots, written in that order."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from stemforge.evaluate.runner import write_json_atomic

PACKAGES = (
    "stemforge-evaluate",
    "stemforge-pipelines",
    "stemforge-metrics",
    "stemforge-codec",
    "stemforge-samplers",
    "stemforge-unet3d",
    "stemforge-midi",
    "torch",
    "accelerate",
)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_results(out: Path, results: dict[str, Any], markdown: str) -> None:
    """results.json, then results.md, each atomically."""
    import torch

    results = {
        **results,
        "versions": versions(),
        "machine": {"cpu_count": os.cpu_count(), "threads": torch.get_num_threads()},
        "command": " ".join(sys.argv),
    }
    write_json_atomic(out / "results.json", results)
    tmp = out / ".results.md.tmp"
    tmp.write_text(markdown)
    tmp.replace(out / "results.md")


def plot_safely(path: Path, draw: Callable[[Path], None]) -> None:
    """Draw an optional PNG; a failure is a warning, never an error (the figures are written)."""
    try:
        draw(path)
    except Exception as err:
        print(
            f"stemforge-evaluate: warning: {path.name} not drawn ({type(err).__name__}: {err})",
            file=sys.stderr,
        )


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def separation_markdown(results: dict[str, Any], stems: Sequence[str]) -> str:
    s = results["settings"]
    table = results["table"]
    span = "whole tracks" if s["seconds"] is None else f"{s['seconds']:g} s each"
    lines = [
        "# Separation",
        "",
        f"Checkpoint `{s['checkpoint']}`, test set `{s['test_set']}`: {len(results['tracks'])} tracks, "
        f"{results['seconds']:.1f} s in all ({span} from {s['offset']:g} s). Sampler {s['sampler']}, "
        f"{s['steps']} steps, eta {s['eta']:g}, seed {s['seed']}.",
        "",
        f"SI-SDRi (dB, higher is better), MSDM's protocol: {s['window_seconds']:g} s windows every "
        f"{s['hop_seconds']:g} s, windows with at most one active stem skipped, mean over all kept windows.",
        "",
        "| row | " + " | ".join(stems) + " | mean | windows |",
        "|---|" + "---|" * (len(stems) + 2),
    ]
    for row, r in table.items():
        cells = [_fmt(r["si_sdri"][stem]) for stem in stems]
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {_fmt(r['si_sdri_mean'])} | {r['windows']} |")
    lines += [
        "",
        "Mel-MSE (lower is better), MSG-LD's protocol: natural-log mels, 64 bands at 16 kHz, mean over tracks.",
        "",
        "| row | " + " | ".join(stems) + " | mean |",
        "|---|" + "---|" * (len(stems) + 1),
    ]
    for row, r in table.items():
        cells = [_fmt(r["mel_mse"][stem], 3) for stem in stems]
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {_fmt(r['mel_mse_mean'], 3)} |")
    model_rows = [row for row in table if row not in ("mixture / S", "codec oracle")]
    losing = [row for row in model_rows if (table[row]["si_sdri_mean"] or 0.0) <= 0.0]
    if losing:
        lines += ["", f"Rows that do not beat the mixture / S baseline on SI-SDRi: {', '.join(losing)}."]
    return "\n".join(lines) + "\n"


def separation_png(path: Path, results: dict[str, Any], stems: Sequence[str]) -> None:
    """Per-stem SI-SDRi bars, one group per stem, one bar per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = results["table"]
    rows = list(table)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(stems), 3.6))
    width = 0.8 / len(rows)
    for k, row in enumerate(rows):
        values = [table[row]["si_sdri"][stem] or 0.0 for stem in stems]
        ax.bar([i + k * width for i in range(len(stems))], values, width, label=row)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(stems))], stems)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("SI-SDRi (dB)")
    ax.set_title(f"Separation, {len(results['tracks'])} tracks")
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def fad_markdown(results: dict[str, Any]) -> str:
    s = results["settings"]
    span = "whole tracks" if s["seconds"] is None else f"{s['seconds']:g} s each"
    what = (
        "generated mixtures (all stems from nothing, w = 0)"
        if results["protocol"] == "generation"
        else "sub-mixtures: the stems of each subset generated given the track's other stems, mixed with those originals"
    )
    lines = [
        f"# {results['protocol'].capitalize()}",
        "",
        f"Checkpoint `{s['checkpoint']}`, test set `{s['test_set']}`: {len(results['tracks'])} tracks "
        f"({span} from {s['offset']:g} s). Sampler {s['sampler']}, {s['steps']} steps, eta {s['eta']:g}, seed {s['seed']}.",
        "",
        f"FAD (lower is better, embedder {results['embedder']}, float64 statistics) of the {what}, "
        "against the test mixtures.",
        "",
        "| generated | FAD | embeddings (test / generated) |",
        "|---|---|---|",
    ]
    for row, r in results["table"].items():
        lines.append(f"| {row} | {r['fad']:.3f} | {r['real_embeddings']} / {r['generated_embeddings']} |")
    return "\n".join(lines) + "\n"


def fad_png(path: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(results["table"])
    values = [results["table"][r]["fad"] for r in rows]
    fig, ax = plt.subplots(figsize=(max(3.0, 0.55 * len(rows) + 1.5), 3.4))
    ax.bar(range(len(rows)), values, color="tab:blue")
    ax.set_xticks(range(len(rows)), rows, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(f"FAD ({results['embedder']})")
    ax.set_title(f"{results['protocol'].capitalize()}, {len(results['tracks'])} tracks")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
