"""``curves.png`` beside a run's ``metrics.csv``: the training loss (each logged mean and a running
mean), the validation loss and the learning rate against the step.

An optional output: it is redrawn at every checkpoint from the CSV alone, and a failure (matplotlib
missing, a full disk) is one warning, never a reason to stop training.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

PNG_NAME = "curves.png"


def read_curves(csv_path: Path) -> dict[str, list[tuple[int, float]]]:
    """``{"train": [(step, loss)], "val": [...], "lr": [...]}`` from a run's ``metrics.csv``."""
    curves: dict[str, list[tuple[int, float]]] = {"train": [], "val": [], "lr": []}
    with Path(csv_path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            step = int(row["step"])
            curves.setdefault(row["split"], []).append((step, float(row["loss"])))
            if row["split"] == "train":
                curves["lr"].append((step, float(row["lr"])))
    return curves


def write_curves(csv_path: Path, png_path: Path | None = None) -> Path:
    """Draw ``png_path`` (default: ``curves.png`` beside the CSV) and return it; written through a
    temporary file, so a reader never sees half a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    csv_path = Path(csv_path)
    png_path = Path(png_path) if png_path is not None else csv_path.with_name(PNG_NAME)
    curves = read_curves(csv_path)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    try:
        train = curves["train"]
        if train:
            steps, losses = zip(*train, strict=True)
            ax.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="train (logged means)")
            window = max(1, len(losses) // 20)
            running = [
                sum(losses[max(0, i - window + 1) : i + 1]) / (i - max(0, i - window + 1) + 1)
                for i in range(len(losses))
            ]
            ax.plot(steps, running, color="tab:blue", label=f"train (running mean of {window})")
        if curves["val"]:
            steps, losses = zip(*curves["val"], strict=True)
            ax.plot(steps, losses, "o-", color="tab:orange", label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if all(v > 0 for _, v in train + curves["val"]) and (train or curves["val"]):
            ax.set_yscale("log")
        if curves["lr"]:
            other = ax.twinx()
            steps, rates = zip(*curves["lr"], strict=True)
            other.plot(steps, rates, color="grey", linestyle="--", linewidth=0.8, label="learning rate")
            other.set_ylabel("learning rate")
            other.legend(loc="upper center", fontsize=8)
        ax.legend(loc="upper right", fontsize=8)
        ax.set_title(csv_path.parent.name)
        fig.tight_layout()
        tmp = png_path.with_name(f".{png_path.name}.{os.getpid()}.tmp.png")
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, png_path)
    finally:
        plt.close(fig)
    return png_path


class CurvesWriter:
    """Redraws ``curves.png`` when asked; after the first failure it warns once and stops trying."""

    def __init__(self, csv_path: Path) -> None:
        self.csv_path = Path(csv_path)
        self.failed = False

    def update(self) -> None:
        if self.failed:
            return
        try:
            write_curves(self.csv_path)
        except Exception as err:  # an optional output: training goes on
            self.failed = True
            print(
                f"warning: {self.csv_path.with_name(PNG_NAME)} not written ({err}); "
                f"{self.csv_path.name} holds the same figures",
                file=sys.stderr,
            )
