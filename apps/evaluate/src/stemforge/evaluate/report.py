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


def _embedder_text(results: dict[str, Any]) -> str:
    """The embedder's name, and for VGGish the weights file it was given."""
    weights = results.get("embedder_weights")
    if not weights:
        return str(results["embedder"])
    return f"{results['embedder']} (weights `{weights['file']}`, sha256 {weights['sha256'][:12]})"


def _model_and_baseline_rows(
    results: dict[str, Any],
) -> dict[str, list[tuple[str, int | None, dict[str, Any]]]]:
    """Per generated row (a subset, or ``generation``): (label, steps, FAD row) of the model at each
    step count, then of each baseline (no steps)."""
    sweep = isinstance(results["settings"]["steps"], list)
    groups: dict[str, list[tuple[str, int | None, dict[str, Any]]]] = {}
    for name, r in results["table"].items():
        generated = r["generated"] if sweep else name
        groups.setdefault(generated, []).append(("model", r["steps"] if sweep else None, r))
    for generated, rows in results.get("baselines", {}).items():
        groups.setdefault(generated, []).extend((label, None, r) for label, r in rows.items())
    return groups


def not_beating(results: dict[str, Any]) -> list[str]:
    """The model rows (``bass``, ``bass, steps=10``) whose FAD is not below their reference baseline's
    (``given only`` for arrangement, ``shuffled stems`` for generation); those without it are left out."""
    from stemforge.evaluate.arrangement import REFERENCE_BASELINE

    reference = REFERENCE_BASELINE[results["protocol"]]
    sweep = isinstance(results["settings"]["steps"], list)
    losing = []
    for name, r in results["table"].items():
        baseline = results.get("baselines", {}).get(r["generated"] if sweep else name, {}).get(reference)
        if baseline is not None and r["fad"] >= baseline["fad"]:
            losing.append(name)
    return losing


def _beating_line(results: dict[str, Any]) -> str:
    """The sentence that names where the model does not beat its reference baseline."""
    from stemforge.evaluate.arrangement import REFERENCE_BASELINE

    reference = REFERENCE_BASELINE[results["protocol"]]
    if not any(reference in rows for rows in results["baselines"].values()):
        return f"No `{reference}` row: it needs at least 2 tracks."
    table = results["table"]
    sweep = isinstance(results["settings"]["steps"], list)
    lost: dict[str, list[str]] = {}  # generated row -> the step counts at which it loses
    for name in not_beating(results):
        r = table[name]
        lost.setdefault(r["generated"] if sweep else name, []).append(str(r["steps"]) if sweep else "")
    runs = len(results["settings"]["steps"]) if sweep else 1

    def where(steps: list[str]) -> str:
        return f" at {', '.join(steps)} steps" if len(steps) < runs else ""

    if results["protocol"] == "generation":
        if not lost:
            return f"The generated mixtures beat `{reference}` on FAD."
        return f"The generated mixtures do not beat `{reference}` on FAD{where(lost['generation'])}."
    if not lost:
        return f"The model beats `{reference}` on FAD in every subset."
    named = [f"{row} ({where(steps).strip()})" if where(steps) else row for row, steps in lost.items()]
    return f"Subsets where the model does not beat `{reference}` on FAD: {', '.join(named)}."


def fad_markdown(results: dict[str, Any], fad: Any = None) -> str:
    from stemforge.evaluate.fad import FadOptions, fad_cells, fad_columns, fad_note

    fad = fad or FadOptions()
    head, sep = fad_columns(fad)
    s = results["settings"]
    sweep = isinstance(s["steps"], list)
    arrangement = results["protocol"] == "arrangement"
    span = "whole tracks" if s["seconds"] is None else f"{s['seconds']:g} s each"
    what = (
        "generated mixtures (all stems from nothing, w = 0)"
        if not arrangement
        else "sub-mixtures: the stems of each subset generated given the track's other stems, mixed with those originals"
    )
    steps = (
        f"{', '.join(str(k) for k in s['steps'])} steps (each a setting of its own, the same noise; "
        "plot: fad_steps.png)"
        if sweep
        else f"{s['steps']} steps"
    )
    baselines = "; ".join(f"`{name}`: {text}" for name, text in results.get("baseline_rows", {}).items())
    columns = (["subset"] if arrangement else []) + ["row"] + (["steps"] if sweep else [])
    columns += ["FAD", "embeddings (test / evaluated)"]
    lines = [
        f"# {results['protocol'].capitalize()}",
        "",
        f"Checkpoint `{s['checkpoint']}`, test set `{s['test_set']}`: {len(results['tracks'])} tracks "
        f"({span} from {s['offset']:g} s). Sampler {s['sampler']}, {steps}, eta {s['eta']:g}, seed {s['seed']}.",
        "",
        f"FAD (lower is better, embedder {_embedder_text(results)}, float64 statistics) of the {what}, "
        "against the test mixtures.",
    ]
    if baselines:
        lines += [
            "",
            f"Baselines from the same excerpts, embedded alike (they sample nothing: the same at every "
            f"step count and seed): {baselines}.",
        ]
    lines += ["", "| " + " | ".join(columns) + " |" + head, "|" + "---|" * len(columns) + sep]
    for generated, rows in _model_and_baseline_rows(results).items():
        for label, k, r in rows:
            cells = ([generated] if arrangement else []) + [label]
            cells += [str(k) if k is not None else "-"] if sweep else []
            cells += [f"{r['fad']:.3f}", f"{r['real_embeddings']} / {r['generated_embeddings']}"]
            lines.append("| " + " | ".join(cells) + " |" + fad_cells(r, fad))
    if "baselines" in results:
        lines += ["", _beating_line(results)]
    note = fad_note(fad)
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def fad_png(path: Path, results: dict[str, Any]) -> None:
    """FAD bars, one group per generated row (a subset, or the generation): the model at each step
    count, then the baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _model_and_baseline_rows(results)
    labels = list(
        dict.fromkeys(
            f"steps={k}" if k is not None else label for rows in groups.values() for label, k, _ in rows
        )
    )
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(3.0, (0.3 + 0.25 * len(labels)) * len(groups) + 1.5), 3.4))
    for j, label in enumerate(labels):
        xs, values = [], []
        for g, rows in enumerate(groups.values()):
            for row_label, k, r in rows:
                if (f"steps={k}" if k is not None else row_label) == label:
                    xs.append(g + j * width)
                    values.append(r["fad"])
        ax.bar(xs, values, width, label=label)
    ax.set_xticks(
        [g + 0.4 - width / 2 for g in range(len(groups))], list(groups), rotation=60, ha="right", fontsize=7
    )
    ax.set_ylabel(f"FAD ({results['embedder']})")
    ax.set_title(f"{results['protocol'].capitalize()}, {len(results['tracks'])} tracks")
    ax.legend(fontsize=6)
    _save(fig, path)


def fad_steps_png(path: Path, results: dict[str, Any]) -> None:
    """FAD against sampler steps (a ``--steps`` sweep), one line per generated row, its baselines as
    horizontal lines of its colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    styles: list[Any] = [":", "--"]  # one per kind of baseline
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    kinds: list[str] = []
    for name, rows in _model_and_baseline_rows(results).items():
        points = sorted((k, r["fad"]) for label, k, r in rows if label == "model" and k is not None)
        line = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        for label, _, r in rows:
            if label != "model":
                kinds += [] if label in kinds else [label]
                style = styles[kinds.index(label) % len(styles)]
                ax.axhline(r["fad"], color=line[0].get_color(), linestyle=style, linewidth=0.8)
    ax.set_xscale("log")
    steps = sorted({r["steps"] for r in results["table"].values()})
    ax.set_xticks(steps, [str(k) for k in steps])
    ax.minorticks_off()
    ax.set_xlabel(f"sampler steps ({results['settings']['sampler']})")
    ax.set_ylabel(f"FAD ({results['embedder']})")
    ax.ticklabel_format(axis="y", useOffset=False)
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="grey", linestyle=styles[i % len(styles)], label=kind)
        for i, kind in enumerate(kinds)
    ]
    ax.legend(handles=handles, fontsize=6, ncol=2)
    ax.set_title(
        f"{results['protocol'].capitalize()}: FAD against sampler steps, {len(results['tracks'])} tracks",
        fontsize=9,
    )
    _save(fig, path)


def _fad_cell(row: dict[str, Any] | None) -> str:
    return "-" if row is None else f"{row['fad']:.3f}"


def subtractive_markdown(results: dict[str, Any], fad: Any = None) -> str:
    """Insertion / accompaniment: the FAD rows per inserted stem, the CFG curve and the style curve."""
    from stemforge.evaluate.fad import FadOptions, fad_cells, fad_columns, fad_note

    fad = fad or FadOptions()
    s = results["settings"]
    span = "whole tracks" if s["seconds"] is None else f"{s['seconds']:g} s each"
    protocol = results["protocol"]
    if protocol == "insertion" and results["mode"] == "msgld":
        model = "`insert` by MSDM's Dirac posterior (a joint model: no CFG weight, no instruction)"
    elif protocol == "insertion":
        model = f"`insert`, CFG w = {s['guidance']:g}" + (
            f", instruction `{s['instruction']}`"
            if s["instruction"]
            else ", no instruction (the learned null one)"
        )
    else:
        reference = f"stem {s['style_stem']}" if s["style_stem"] else "the same stem"
        model = (
            f"`accompany`, CFG w = {s['guidance']:g}, rescale phi = {s['rescale']:g}, style grounding "
            f"lambda = {s['style_strength']:g} toward {reference} of the next test track"
        )
        if results["mode"] != "accompaniment":
            model += " (a joint model: the mixture is a constraint; w and phi are not used)"
    any_row = next(iter(next(iter(results["table"].values())).values()))["mix"]
    head, sep = fad_columns(fad)
    lines = [
        f"# {protocol.capitalize()}",
        "",
        f"Checkpoint `{s['checkpoint']}` ({results['mode']}), test set `{s['test_set']}`: "
        f"{len(results['tracks'])} tracks ({span} from {s['offset']:g} s), mixture = sum of "
        f"{', '.join(s['test_stems'])}. Model: {model}. Sampler {s['sampler']}, {s['steps']} steps, "
        f"eta {s['eta']:g}, seed {s['seed']}.",
        "",
        f"FAD (lower is better; embedder {_embedder_text(results)}, float64 statistics, {any_row['real_embeddings']} "
        "windows per reference set) of the inserted stem against the test set's real stems of that name, "
        "and of the resulting mixture against the test mixtures. `codec oracle`: the true stem through "
        "the codec; `no stem`: the mixture without the stem.",
        "",
        "| stem | row | FAD stem | FAD mix | windows |" + head,
        "|---|---|---|---|---|" + sep,
    ]
    for stem, rows in results["table"].items():
        for name, r in rows.items():
            extra = fad_cells(r["mix"], fad) if r["mix"] else ""
            lines.append(
                f"| {stem} | {name} | {_fad_cell(r['stem'])} | {_fad_cell(r['mix'])} | "
                f"{r['mix']['generated_embeddings']} |" + extra
            )
    losing = [
        stem
        for stem, rows in results["table"].items()
        if rows["model"]["mix"]["fad"] >= rows["no stem"]["mix"]["fad"]
    ]
    if losing:
        lines += [
            "",
            f"Stems whose model mixture does not beat the mixture without the stem on FAD: {', '.join(losing)}.",
        ]
    note = fad_note(fad)
    if note:
        lines += ["", f"Optional columns are of the mixture FAD. {note}"]
    if results["cfg"]:
        lines += [
            "",
            "## FAD against the CFG weight (Pasini et al., Fig. 2)",
            "",
            f"Style grounding lambda = {s['style_strength']:g} throughout; rescale off (phi = 0) and on "
            f"(phi = {s['rescale']:g}). Plot: cfg.png.",
            "",
            "| stem | w | phi | FAD stem | FAD mix |",
            "|---|---|---|---|---|",
        ]
        for stem, points in results["cfg"].items():
            for p in points:
                lines.append(
                    f"| {stem} | {p['guidance']:g} | {p['rescale']:g} | {_fad_cell(p['stem'])} | {_fad_cell(p['mix'])} |"
                )
    elif protocol == "accompaniment" and s["cfg_sweep"]:
        lines += ["", "No CFG curve: a joint model takes the mixture as a constraint, without CFG."]
    if any(v["by_strength"] for v in results["style"].values()):
        lines += [
            "",
            "## Style grounding strength against timbre distance",
            "",
            f"Timbre distance: {results['timbre_distance']}; lower is closer. CFG w = {s['guidance']:g}, "
            f"phi = {s['rescale']:g}; mean over tracks. Plot: style.png.",
            "",
            "| stem | lambda | to the reference | to the true stem | tracks |",
            "|---|---|---|---|---|",
        ]
        for stem, v in results["style"].items():
            for p in v["by_strength"]:
                lines.append(
                    f"| {stem} | {p['strength']:g} | {_fmt(p['to_reference'])} | {_fmt(p['to_true'])} | {p['tracks']} |"
                )
            lines.append(f"| {stem} | (true stem) | {_fmt(v['true_to_reference'])} | 0 | |")
    return "\n".join(lines) + "\n"


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def subtractive_png(path: Path, results: dict[str, Any]) -> None:
    """Grouped bars: per inserted stem, the stem FAD and the mixture FAD of each row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stems = list(results["table"])
    rows = list(next(iter(results["table"].values())))
    fig, axes = plt.subplots(1, 2, figsize=(2.5 + 2.2 * len(stems), 3.4))
    width = 0.8 / len(rows)
    for ax, what in zip(axes, ("stem", "mix")):
        for k, row in enumerate(rows):
            values = [(results["table"][s][row][what] or {}).get("fad", 0.0) for s in stems]
            ax.bar([i + k * width for i in range(len(stems))], values, width, label=row)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(stems))], stems)
        ax.set_ylabel(f"FAD of the {what} ({results['embedder']})", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{results['protocol'].capitalize()}, {len(results['tracks'])} tracks", fontsize=9)
    _save(fig, path)


def cfg_png(path: Path, results: dict[str, Any]) -> None:
    """FAD against the CFG weight, one line with and one without rescale per stem (Pasini's Fig. 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.4))
    for ax, what in zip(axes, ("stem", "mix")):
        for stem, points in results["cfg"].items():
            for phi in sorted({p["rescale"] for p in points}):
                line = [p for p in points if p["rescale"] == phi]
                ax.plot(
                    [p["guidance"] for p in line],
                    [p[what]["fad"] for p in line],
                    marker="o",
                    linestyle="-" if phi else "--",
                    label=f"{stem}, " + (f"rescale {phi:g}" if phi else "no rescale"),
                )
        ax.set_xlabel("CFG weight w")
        ax.set_ylabel(f"FAD of the {what} ({results['embedder']})", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Accompaniment: FAD against CFG weight, {len(results['tracks'])} tracks", fontsize=9)
    _save(fig, path)


def style_png(path: Path, results: dict[str, Any]) -> None:
    """Timbre distance to the reference against the style grounding strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for stem, v in results["style"].items():
        points = [p for p in v["by_strength"] if p["to_reference"] is not None]
        line = ax.plot(
            [p["strength"] for p in points], [p["to_reference"] for p in points], marker="o", label=stem
        )
        if v["true_to_reference"] is not None:
            ax.axhline(
                v["true_to_reference"], color=line[0].get_color(), linestyle=":", label=f"{stem}: true stem"
            )
    ax.set_xlabel("style grounding strength lambda")
    ax.set_ylabel("timbre distance to the reference (MFCC)", fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(f"Accompaniment, {len(results['tracks'])} tracks", fontsize=9)
    _save(fig, path)
