"""FAD for the audio protocols: the embedder, per-item embeddings and the set-level statistics.

Every item stores the embeddings of each audio it produced (one per window of the embedder:
musicnn ``max_pool`` by default, 3 s windows at 16 kHz), so the statistics gather all processes'
items and a resumed run never embeds a finished item again. Set-level figures (stemforge-metrics,
float64):

- ``plain`` (always): the Frechet distance between Gaussians fitted to all windows of the
  reference audio and of the evaluated audio (Kilgour et al. 2019);
- ``infinity``: FAD-infinity (Chong & Forsyth 2020; Gui et al. 2024): FAD of ``steps`` random
  subsets of the evaluated windows, of sizes from ``min_n`` to all of them, drawn without
  replacement (Chong & Forsyth's procedure), extrapolated to infinitely many samples by the
  intercept of the least-squares line against 1 / n; R^2 of the fit and the sizes are stated.
  ``min_n`` defaults to half the evaluated windows (at least 2): FAD-infinity is meant for
  thousands of windows, and on a handful it is a rough figure;
- ``per-song``: each evaluated item's own windows against the whole reference set (fadtk's
  per-song FAD); the table gives the mean and median over items. It needs at least 2 windows per
  item (6 s with musicnn).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from stemforge.evaluate.runner import EvaluationError

FAD_MODES = ("plain", "infinity", "per-song")


@dataclass(frozen=True)
class GeneratedAudioSettings:
    """What every FAD protocol over generated audio records: the sampler, the excerpts, the
    embedder and the test set (generation, arrangement, insertion and accompaniment extend it)."""

    steps: int = 50
    sampler: str = "ddim"
    eta: float = 1.0
    seed: int = 0
    seconds: float | None = 4.0
    offset: float = 0.0
    embedder: str = "musicnn-max_pool"
    save_audio: bool = True
    checkpoint: str = ""
    test_set: str = ""
    stems: tuple[str, ...] = ()

    def check_sampling(self) -> None:
        if self.steps < 1:
            raise EvaluationError(f"--steps {self.steps}: give at least 1")
        if self.seconds is not None and self.seconds < 3:
            raise EvaluationError(
                f"--seconds {self.seconds}: FAD's musicnn windows are 3 s long; give at least 3 s per track"
            )

    def record(self) -> dict[str, Any]:
        """The settings as JSON values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class FadOptions:
    """Which FAD figures a table holds; none of them changes an item, so they are not item settings."""

    modes: tuple[str, ...] = ("plain",)
    infinity_steps: int = 15
    infinity_min: int = 0
    """Smallest subset of FAD-infinity (0: half the evaluated windows, at least 2)."""
    seed: int = 0

    def check(self, windows_per_item: int | None = None) -> None:
        unknown = [m for m in self.modes if m not in FAD_MODES]
        if unknown or not self.modes:
            raise EvaluationError(f"--fad {','.join(self.modes)}: choose among {', '.join(FAD_MODES)}")
        if self.infinity_steps < 2:
            raise EvaluationError(f"--fad-infinity-steps {self.infinity_steps}: give at least 2")
        if self.infinity_min and self.infinity_min < 2:
            raise EvaluationError(
                f"--fad-infinity-min {self.infinity_min}: give at least 2 (or 0: automatic)"
            )
        if "per-song" in self.modes and windows_per_item is not None and windows_per_item < 2:
            raise EvaluationError(
                f"--fad per-song: each track gives {windows_per_item} embedder window(s); a per-song "
                "covariance needs at least 2: give --seconds 6 or more (musicnn windows are 3 s)"
            )

    def check_pool(self, windows: int) -> None:
        """FAD-infinity fits a line through at least two subset sizes; refuse a set too small for it."""
        if "infinity" in self.modes and windows < 4:
            raise EvaluationError(
                f"--fad infinity: the evaluated set has {windows} embedder windows; the fit needs at least 4 "
                "(more tracks, or a longer --seconds)"
            )

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data["modes"] = list(self.modes)
        return data


def make_embedder(name: str) -> Any:
    """The FAD embedder named ``musicnn-<layer>`` (stemforge-metrics, with the MSD_musicnn weights its
    wheel ships)."""
    from stemforge.metrics import MusicnnEmbedder

    if not name.startswith("musicnn-"):
        raise EvaluationError(
            f"--embedder {name}: use musicnn-max_pool, musicnn-mean_pool or musicnn-penultimate"
        )
    try:
        return MusicnnEmbedder(name.removeprefix("musicnn-"))  # type: ignore[arg-type]
    except (ImportError, FileNotFoundError, OSError) as err:
        raise EvaluationError(
            f"--embedder {name}: stemforge-metrics' MSD_musicnn weights do not load ({err}); reinstall "
            "stemforge-metrics"
        ) from err
    except ValueError as err:
        raise EvaluationError(f"--embedder {name}: {err}") from err


def windows_per_track(seconds: float, embedder_rate: int = 16000, hop_samples: int = 47872) -> int:
    """Embedder windows of a clip of ``seconds`` (musicnn: 187-frame patches of 256 samples, no overlap)."""
    frames = int(seconds * embedder_rate) // 256 + 1
    return frames // (hop_samples // 256)


def embed(embedder: Any, wave: Tensor, rate: int) -> Tensor:
    """(W, D) window embeddings of a mono wave (N,) at ``rate``."""
    from stemforge.codec import resample

    if rate != embedder.sample_rate:
        wave = resample(wave, rate, embedder.sample_rate)
    return embedder.embed_frames(wave[None].float()).float()


def fad_row(
    real: Sequence[Tensor], evaluated: Sequence[Tensor], options: FadOptions, row_index: int = 0
) -> dict[str, Any]:
    """The FAD figures of one row: per-item (W_i, D) embeddings of the reference and evaluated audio."""
    from stemforge.metrics import fad_infinity, fad_per_file
    from stemforge.metrics.frechet import frechet_distance, gaussian_stats

    ref = gaussian_stats(torch.cat(list(real)).double())
    pool = torch.cat(list(evaluated)).double()
    fake = gaussian_stats(pool)
    out: dict[str, Any] = {
        "fad": frechet_distance(ref.mean, ref.cov, fake.mean, fake.cov),
        "real_embeddings": ref.count,
        "generated_embeddings": fake.count,
    }
    if "infinity" in options.modes:
        min_n = options.infinity_min or max(2, pool.shape[0] // 2)
        if min_n >= pool.shape[0]:
            raise EvaluationError(
                f"--fad-infinity-min {min_n}: only {pool.shape[0]} evaluated windows; give a smaller value"
            )
        gen = torch.Generator().manual_seed(options.seed * 1000 + row_index)
        result = fad_infinity(
            ref, pool, steps=options.infinity_steps, min_n=min_n, generator=gen, replace=False
        )
        out["fad_infinity"] = {
            "value": result.value,
            "slope": result.slope,
            "r2": result.r2,
            "sizes": [result.points[0][0], result.points[-1][0]],
            "steps": len(result.points),
        }
    if "per-song" in options.modes:
        try:
            scores = [s.value for s in fad_per_file(ref, [e.double() for e in evaluated])]
        except ValueError as err:
            raise EvaluationError(f"--fad per-song: {err}") from err
        out["fad_per_song"] = {
            "mean": sum(scores) / len(scores),
            "median": statistics.median(scores),
            "songs": len(scores),
        }
    return out


def fad_columns(options: FadOptions) -> tuple[str, str]:
    """Markdown header cells and separators for the optional FAD columns."""
    head, sep = "", ""
    if "infinity" in options.modes:
        head += " FAD-inf (R^2, n) |"
        sep += "---|"
    if "per-song" in options.modes:
        head += " per-song FAD mean / median |"
        sep += "---|"
    return head, sep


def fad_cells(row: dict[str, Any], options: FadOptions) -> str:
    cells = ""
    if "infinity" in options.modes:
        inf = row.get("fad_infinity")
        cells += (
            f" {inf['value']:.3f} ({inf['r2']:.2f}, {inf['sizes'][0]}-{inf['sizes'][1]}) |" if inf else " - |"
        )
    if "per-song" in options.modes:
        per = row.get("fad_per_song")
        cells += f" {per['mean']:.3f} / {per['median']:.3f} |" if per else " - |"
    return cells


def fad_note(options: FadOptions) -> str:
    """The sentence under a table that says how the optional columns were computed."""
    parts = []
    if "infinity" in options.modes:
        parts.append(
            f"FAD-inf: Chong & Forsyth's extrapolation to infinitely many windows ({options.infinity_steps} "
            "subset sizes n from the smallest to all evaluated windows, drawn without replacement, "
            "intercept of the fit against 1/n); on a few windows a rough figure"
        )
    if "per-song" in options.modes:
        parts.append("per-song FAD: each track's own windows against the whole reference set")
    return ("; ".join(parts) + ".") if parts else ""
