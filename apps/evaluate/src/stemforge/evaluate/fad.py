"""FAD for the audio protocols: the embedder, per-item embeddings and the set-level statistics.

Every item stores the embeddings of each audio it produced (one per window of the embedder:
musicnn ``max_pool`` by default, 3 s windows at 16 kHz, with the MSD_musicnn weights
stemforge-metrics ships; or VGGish, Hershey et al. 2017, the embedder of the original FAD paper,
0.975 s examples at 16 kHz, from a local weights file the user gives), so the statistics gather all
processes' items and a resumed run never embeds a finished item again. Set-level figures
(stemforge-metrics, float64):

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
  item (6 s with musicnn, 1.95 s with VGGish).
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from torch import Tensor

from stemforge.evaluate.runner import EvaluationError
from stemforge.evaluate.testset import Track

FAD_MODES = ("plain", "infinity", "per-song")
MUSICNN_EMBEDDERS = ("musicnn-max_pool", "musicnn-mean_pool", "musicnn-penultimate")
EMBEDDERS = (*MUSICNN_EMBEDDERS, "vggish")


def window_seconds(embedder: str) -> float:
    """Seconds of audio one embedding needs: a musicnn patch (187 frames of 16 ms: 2.98 s, asked
    for as 3 s) or a VGGish example (96 frames every 10 ms, each 25 ms long: 0.975 s)."""
    return 0.975 if embedder == "vggish" else 3.0


def _family(embedder: str) -> str:
    return "VGGish" if embedder == "vggish" else "musicnn"


@dataclass(frozen=True)
class GeneratedAudioSettings:
    """What every FAD protocol over generated audio records: the sampler, the excerpts, the
    embedder and the test set (generation, arrangement, insertion and accompaniment extend it)."""

    steps: int | tuple[int, ...] = 50
    """Sampler steps; a tuple (generation, arrangement): each step count is a setting of its own."""
    sampler: str = "ddim"
    eta: float = 1.0
    seed: int = 0
    seconds: float | None = 4.0
    offset: float = 0.0
    embedder: str = "musicnn-max_pool"
    vggish_weights: str = ""
    """``embedder="vggish"``: the local weights file (an absolute path)."""
    save_audio: bool = True
    checkpoint: str = ""
    test_set: str = ""
    stems: tuple[str, ...] = ()

    #: Fields added in 0.3.0, left out of the record while empty, so items written by 0.2.0 resume.
    _added: ClassVar[tuple[str, ...]] = ("vggish_weights", "subsets")

    def step_counts(self) -> tuple[int, ...]:
        return self.steps if isinstance(self.steps, tuple) else (self.steps,)

    def at_steps(self, steps: int) -> Self:
        """The same settings with one step count (a setting of a ``--steps`` sweep)."""
        return replace(self, steps=steps)

    def check_sampling(self) -> None:
        counts = self.step_counts()
        text = ",".join(str(k) for k in counts)
        if not counts or min(counts) < 1:
            raise EvaluationError(f"--steps {text}: give at least 1")
        if len(set(counts)) != len(counts):
            raise EvaluationError(f"--steps {text}: give each step count once")
        if self.embedder not in EMBEDDERS:
            raise EvaluationError(f"--embedder {self.embedder}: choose among {', '.join(EMBEDDERS)}")
        if (self.embedder == "vggish") != bool(self.vggish_weights):
            raise EvaluationError("--vggish-weights: give it with --embedder vggish, and only then")
        least = window_seconds(self.embedder)
        if self.seconds is not None and self.seconds < least:
            raise EvaluationError(
                f"--seconds {self.seconds}: FAD's {_family(self.embedder)} windows are {least:g} s long; "
                f"give at least {least:g} s per track"
            )

    def record(self) -> dict[str, Any]:
        """The settings as JSON values (tuples as lists)."""
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {k: v for k, v in data.items() if v or k not in self._added}


@dataclass(frozen=True)
class FadOptions:
    """Which FAD figures a table holds; none of them changes an item, so they are not item settings."""

    modes: tuple[str, ...] = ("plain",)
    infinity_steps: int = 15
    infinity_min: int = 0
    """Smallest subset of FAD-infinity (0: half the evaluated windows, at least 2)."""
    seed: int = 0

    def check(self, windows_per_item: int | None = None, embedder: str = "musicnn-max_pool") -> None:
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
                f"covariance needs at least 2: give --seconds {2 * window_seconds(embedder):g} or more "
                f"({_family(embedder)} windows are {window_seconds(embedder):g} s)"
            )

    def check_pool(self, windows: int) -> None:
        """A covariance needs 2 windows, and FAD-infinity fits a line through at least two subset
        sizes; refuse a set too small for them."""
        if windows < 2:
            raise EvaluationError(
                f"FAD: the evaluated set has {windows} embedder window(s); a covariance needs at least 2 "
                "(more tracks, or a longer --seconds)"
            )
        if "infinity" in self.modes and windows < 4:
            raise EvaluationError(
                f"--fad infinity: the evaluated set has {windows} embedder windows; the fit needs at least 4 "
                "(more tracks, or a longer --seconds)"
            )

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data["modes"] = list(self.modes)
        return data


def make_embedder(name: str, weights: str | None = None) -> Any:
    """The FAD embedder: ``musicnn-<layer>`` (stemforge-metrics, with the MSD_musicnn weights its
    wheel ships) or ``vggish`` (stemforge-metrics' VGGish with the local ``weights`` file); every
    failure is one line that names the flag."""
    if name == "vggish":
        return _vggish(weights)
    if weights:
        raise EvaluationError(
            f"--vggish-weights {weights}: only --embedder vggish reads it; add --embedder vggish or leave it out"
        )
    from stemforge.metrics import MusicnnEmbedder

    if name not in MUSICNN_EMBEDDERS:
        raise EvaluationError(f"--embedder {name}: choose among {', '.join(EMBEDDERS)}")
    try:
        return MusicnnEmbedder(name.removeprefix("musicnn-"))  # type: ignore[arg-type]
    except (ImportError, FileNotFoundError, OSError) as err:
        raise EvaluationError(
            f"--embedder {name}: stemforge-metrics' MSD_musicnn weights do not load ({err}); reinstall "
            "stemforge-metrics"
        ) from err
    except ValueError as err:
        raise EvaluationError(f"--embedder {name}: {err}") from err


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _vggish(weights: str | None) -> Any:
    """VGGish with the user's weights, the file's names and shapes checked against the network
    before its 72 M parameters are read."""
    import torch
    from safetensors import SafetensorError, safe_open

    from stemforge.metrics import VGGishEmbedder, VGGishNet

    if not weights:
        raise EvaluationError(
            "--embedder vggish: give the weights with --vggish-weights FILE (torchvggish's state dict "
            "as .safetensors; stemforge ships and downloads none)"
        )
    flag = f"--vggish-weights {weights}"
    path = Path(weights)
    if not path.is_file():
        raise EvaluationError(f"{flag}: no such file")
    if path.suffix != ".safetensors":
        raise EvaluationError(f"{flag}: give a .safetensors file (pickled checkpoints are not read)")
    try:
        with safe_open(str(path), "pt") as fh:
            shapes = {key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()}  # noqa: SIM118
    except (OSError, SafetensorError) as err:
        raise EvaluationError(f"{flag}: not a readable safetensors file ({_one_line(err)})") from err
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in VGGishNet().state_dict().items() if not k.startswith("pca")}
    expected_pca = {"pproc._pca_matrix": (128, 128), "pproc._pca_means": (128,)}
    missing = [k for k in expected if k not in shapes]
    if missing:
        raise EvaluationError(
            f"{flag}: not a VGGish state dict (torchvggish's names): {len(missing)} tensors missing, "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
        )
    for key, shape in {**expected, **expected_pca}.items():
        found = shapes.get(key, shape)
        if key in expected_pca and len(found) == 2 and found[-1] == 1:
            found = found[:1]  # torchvggish stores the PCA means as a column
        if found != shape:
            raise EvaluationError(f"{flag}: {key} has shape {list(found)}; VGGish's is {list(shape)}")
    try:
        return VGGishEmbedder(path)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise EvaluationError(f"{flag}: {_one_line(err)}") from err


def embedder_record(settings: GeneratedAudioSettings, embedder: Any) -> dict[str, Any]:
    """What results.json says of the embedder: its name, and for VGGish the weights file and digest."""
    record: dict[str, Any] = {"embedder": embedder.name}
    if settings.vggish_weights:
        digest = hashlib.sha256()
        with open(settings.vggish_weights, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        record["embedder_weights"] = {"file": settings.vggish_weights, "sha256": digest.hexdigest()}
    return record


def windows_per_track(seconds: float, embedder: str = "musicnn-max_pool") -> int:
    """Embedder windows of a clip of ``seconds`` at 16 kHz: musicnn's 187-frame patches of 256 samples
    (centred frames, no overlap), VGGish's 96-frame examples of 160 samples (25 ms frames, not centred)."""
    samples = int(seconds * 16000)
    if embedder == "vggish":
        return max(0, (samples - 400) // 160 + 1) // 96
    return (samples // 256 + 1) // 187


def read_excerpt(track: Track, rate: int, settings: GeneratedAudioSettings) -> Tensor:
    """(S, N) stems of the track's excerpt (``settings.seconds`` from ``settings.offset``) at
    ``rate``; refused when shorter than one embedder window."""
    stems = track.read(rate, settings.offset, settings.seconds)
    n = stems.shape[-1]
    least = window_seconds(settings.embedder)
    if n < least * rate:
        raise EvaluationError(
            f"track {track.name}: {n / rate:.2f} s; FAD needs at least {least:g} s per track"
        )
    return stems


def embed(embedder: Any, wave: Tensor, rate: int) -> Tensor:
    """(W, D) window embeddings of a mono wave (N,) at ``rate``."""
    if rate != embedder.sample_rate:
        from stemforge.data import resample

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
