"""The separation protocols of MSDM and MSG-LD on a pipeline and a test set.

Per track (``--seconds`` from ``--offset``, at the model's rate; the mixture is the sum of the
stems) every row of the table separates the mixture and is scored against the stems:

- SI-SDRi, MSDM's protocol (stemforge-metrics ``si_sdri_windows``): 4 s windows every 2 s, windows
  with at most one non-silent stem skipped, a stem's score the mean over all kept windows of all
  tracks (so the set-level mean is taken over windows, not tracks);
- Mel-MSE, MSG-LD's: the mean squared difference of natural-log mels (MSG-LD's front end at
  16 kHz: 64 bands, hop 160) of the separated and the true stem, averaged over tracks.

Rows: the model with each ``--method`` (``cfg`` at each ``--guidance`` w, ``dirac``,
``gaussian``), and two references every table needs: ``mixture / S`` (each stem estimated as the
mixture divided by the number of stems; SI-SDRi 0 dB by construction, as SI-SDR is
scale-invariant) and ``codec oracle`` (each true stem through the model's codec and back, the
ceiling of any latent model with this codec: MSG-LD's reconstruction row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stemforge.evaluate.runner import EvaluationError, ItemStore, Shard, run_items, track_keys
from stemforge.evaluate.testset import Track
from stemforge.pipelines.sampling import SEPARATION_METHODS

MIXTURE_ROW = "mixture / S"
ORACLE_ROW = "codec oracle"


@dataclass(frozen=True)
class SeparationSettings:
    """Everything a separation figure depends on (recorded with every item and in results.json)."""

    methods: tuple[str, ...] = ("cfg", "dirac")
    guidances: tuple[float, ...] = (1.0, 2.0)
    steps: int = 50
    sampler: str = "ddim"
    eta: float = 1.0
    seed: int = 0
    seconds: float | None = 4.0
    offset: float = 0.0
    window_seconds: float = 4.0
    hop_seconds: float = 2.0
    save_audio: bool = True
    checkpoint: str = ""
    test_set: str = ""
    stems: tuple[str, ...] = field(default_factory=tuple)

    def rows(self) -> list[tuple[str, str, float]]:
        """(row name, method, guidance) of the model rows."""
        out = []
        for method in self.methods:
            if method == "cfg":
                out += [(f"cfg w={w:g}", "cfg", float(w)) for w in self.guidances]
            else:
                out.append((method, method, 0.0))
        return out

    def check(self) -> None:
        unknown = [m for m in self.methods if m not in SEPARATION_METHODS]
        if unknown:
            raise EvaluationError(
                f"--methods {','.join(unknown)}: choose among {', '.join(SEPARATION_METHODS)}"
            )
        if self.steps < 1:
            raise EvaluationError(f"--steps {self.steps}: give at least 1")
        if "cfg" in self.methods and any(w < 1 for w in self.guidances):
            raise EvaluationError(f"--guidance {self.guidances}: separation uses w >= 1 (MSG-LD: 1 and 2)")
        if self.seconds is not None and self.seconds <= 0:
            raise EvaluationError(f"--seconds {self.seconds}: must be > 0 (or leave it out: whole tracks)")

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data["methods"], data["guidances"], data["stems"] = (
            list(self.methods),
            list(self.guidances),
            list(self.stems),
        )
        return data


def _mel_16k(sample_rate: int) -> Any:
    """MSG-LD's log-mel (stemforge-codec's ``msgld`` front end) of audio at ``sample_rate``."""
    from stemforge.codec import MelConfig, MelFrontEnd
    from stemforge.data import resample

    front = MelFrontEnd(MelConfig.from_name("msgld"))
    rate = front.config.sample_rate

    def mel(wave: Tensor) -> Tensor:
        if sample_rate != rate:
            wave = resample(wave, sample_rate, rate)
        return front(wave.float())

    return mel


def codec_round_trip(pipe: Any, stems: Tensor) -> Tensor:
    """(S, N) true stems through the pipeline's codec and back, cut to N samples."""
    with torch.no_grad():
        latent = pipe.codec.encode(stems[None].to(next(pipe.unet.parameters()).device))
        return pipe.codec.decode(latent)[0, :, : stems.shape[-1]].cpu()


def score(
    estimates: Tensor, references: Tensor, sample_rate: int, settings: SeparationSettings, mel: Any
) -> dict:
    """Per-stem SI-SDRi windows and Mel-MSE of one track's estimates (S, N) against references."""
    from stemforge.metrics import mel_mse, si_sdri_windows

    windows = si_sdri_windows(
        estimates,
        references,
        sample_rate,
        window_seconds=settings.window_seconds,
        overlap_seconds=settings.window_seconds - settings.hop_seconds,
    )
    mse = mel_mse(estimates[None], references[None], mel)[0]
    return {
        "si_sdri_windows": windows.values.T.tolist(),  # per stem, one value per kept window
        "num_windows": int(windows.values.shape[0]),
        "total_windows": int(windows.num_windows_total),
        "mel_mse": mse.tolist(),
    }


def evaluate_track(
    pipe: Any, track: Track, index: int, settings: SeparationSettings, out: Path, mel: Any
) -> dict[str, Any]:
    """Every row of the table on one track."""
    rate = pipe.sample_rate
    references = track.read(rate, settings.offset, settings.seconds)
    if references.shape[-1] < rate // 2:
        raise EvaluationError(
            f"track {track.name}: {references.shape[-1] / rate:.2f} s from --offset {settings.offset}; "
            "give a smaller --offset or longer tracks"
        )
    mix = references.sum(0)
    rows: dict[str, dict[str, Any]] = {}
    rows[MIXTURE_ROW] = score(
        mix.expand_as(references) / references.shape[0], references, rate, settings, mel
    )
    rows[ORACLE_ROW] = score(codec_round_trip(pipe, references), references, rate, settings, mel)
    for name, method, guidance in settings.rows():
        stems = pipe.separate(
            mix,
            rate,
            method=method,
            guidance=guidance if method == "cfg" else 2.0,
            steps=settings.steps,
            sampler=settings.sampler,
            eta=settings.eta,
            seed=settings.seed + index,
            allow_degenerate=True,
        )
        estimates = torch.stack([stems[s] for s in pipe.stems])
        rows[name] = score(estimates, references, rate, settings, mel)
        if settings.save_audio:
            from stemforge.data import write_audio

            folder = out / "audio" / name.replace(" ", "_").replace("=", "") / track.name
            folder.mkdir(parents=True, exist_ok=True)
            for stem, wave in zip(pipe.stems, estimates):
                write_audio(folder / f"{stem}.wav", wave.clamp(-1, 1), rate)
    return {"track": track.name, "index": index, "seconds": references.shape[-1] / rate, "rows": rows}


def summarize(items: Sequence[dict[str, Any]], stems: Sequence[str], rows: Sequence[str]) -> dict[str, Any]:
    """Set-level figures, one entry per row in ``rows``' order: SI-SDRi per stem as the mean over all
    kept windows of all tracks (MSDM), Mel-MSE per stem as the mean over tracks (MSG-LD), and each
    row's mean over stems."""
    table: dict[str, Any] = {}
    for row in rows:
        windows: list[list[float]] = [[] for _ in stems]
        mse: list[list[float]] = [[] for _ in stems]
        for item in items:
            result = item["rows"][row]
            for s in range(len(stems)):
                windows[s] += result["si_sdri_windows"][s] if result["num_windows"] else []
                mse[s].append(result["mel_mse"][s])
        sdr = {stem: (sum(v) / len(v) if v else None) for stem, v in zip(stems, windows)}
        mel = {stem: sum(v) / len(v) for stem, v in zip(stems, mse)}
        known = [v for v in sdr.values() if v is not None]
        table[row] = {
            "si_sdri": sdr,
            "si_sdri_mean": sum(known) / len(known) if known else None,
            "mel_mse": mel,
            "mel_mse_mean": sum(mel.values()) / len(mel),
            "windows": len(windows[0]),
        }
    return table


def run_separation(
    pipe: Any,
    tracks: Sequence[Track],
    out: Path,
    settings: SeparationSettings,
    shard: Shard,
    *,
    overwrite: bool = False,
    progress: Any = None,
) -> dict[str, Any] | None:
    """Evaluate this process's tracks, then (main process) write results.json / results.md / PNG.
    Returns the results on the main process, None on the others."""
    settings.check()
    store = ItemStore(out, settings.record(), overwrite=overwrite)
    keys = track_keys("separation", [t.name for t in tracks])
    mel = _mel_16k(pipe.sample_rate)
    run_items(shard, store, keys, lambda i: evaluate_track(pipe, tracks[i], i, settings, out, mel), progress)
    shard.wait()
    if not shard.is_main:
        return None
    items = [store.load(key) for key in keys]
    results = {
        "protocol": "separation",
        "settings": settings.record(),
        "tracks": [item["track"] for item in items],
        "seconds": sum(item["seconds"] for item in items),
        "table": summarize(items, pipe.stems, [MIXTURE_ROW, ORACLE_ROW, *(r[0] for r in settings.rows())]),
    }
    from stemforge.evaluate.report import plot_safely, separation_markdown, separation_png, write_results

    write_results(out, results, separation_markdown(results, pipe.stems))
    # The plot comes after the figures and never costs them.
    plot_safely(out / "separation.png", lambda path: separation_png(path, results, pipe.stems))
    return results
