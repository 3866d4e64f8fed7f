"""A piano-roll picture of voice tokens: given voices in grey, inserted voices in colour."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from stemforge.midi import REST

#: Colours of inserted voices (matplotlib's tab10, colour-blind friendly order).
HIGHLIGHT = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")


def note_spans(row: Sequence[int]) -> list[tuple[int, int, int]]:
    """(start, end, pitch) spans of equal consecutive non-rest tokens."""
    spans, begin = [], 0
    for step in range(1, len(row) + 1):
        if step == len(row) or row[step] != row[begin]:
            if row[begin] != REST:
                spans.append((begin, step, int(row[begin])))
            begin = step
    return spans


def save_pianoroll_png(
    path: Path,
    tokens: torch.Tensor,
    stems: Sequence[str],
    inserted: Sequence[int],
    *,
    title: str = "",
    steps_per_quarter: int = 4,
) -> Path:
    """Draw (S, T) voice tokens to ``path`` (PNG); stems in ``inserted`` are highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    rows = tokens.tolist()
    pitches = [p for row in rows for p in row if p != REST]
    low, high = (min(pitches) - 2, max(pitches) + 2) if pitches else (48, 84)
    steps = tokens.shape[1]
    fig, ax = plt.subplots(figsize=(min(24, max(8, steps / 16)), 5), dpi=100)
    legend = []
    for s, row in enumerate(rows):
        highlighted = s in inserted
        colour = HIGHLIGHT[list(inserted).index(s) % len(HIGHLIGHT)] if highlighted else "#9a9a9a"
        for start, end, pitch in note_spans(row):
            ax.add_patch(
                Rectangle(
                    (start / steps_per_quarter, pitch - 0.4),
                    (end - start) / steps_per_quarter,
                    0.8,
                    facecolor=colour,
                    edgecolor="black" if highlighted else "none",
                    linewidth=0.4,
                    alpha=1.0 if highlighted else 0.7,
                )
            )
        legend.append(Patch(facecolor=colour, label=f"{stems[s]} (inserted)" if highlighted else stems[s]))
    ax.set_xlim(0, steps / steps_per_quarter)
    ax.set_ylim(low, high)
    ax.set_xlabel("quarter notes")
    ax.set_ylabel("MIDI pitch")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=legend, loc="upper right", fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return Path(path)
