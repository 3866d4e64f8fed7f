"""The generation protocols of MSG-LD (after MSDM): FAD of total generation and of arrangement.

- ``generation``: per test track, one mixture generated from nothing (all stems, w = 0), of the
  track's length; FAD of the generated mixtures against the test mixtures.
- ``arrangement``: per test track and per non-empty proper subset G of the stems (14 of 4 stems:
  4 singles, 6 pairs, 4 triples; stemforge-metrics ``arrangement_subsets``), the stems of G are
  generated given the track's other stems (inpainting), mixed with those original stems, and FAD
  compares these sub-mixtures with the test mixtures: one row per subset (MSG-LD's Table I).

FAD (:mod:`stemforge.evaluate.fad`): stemforge-metrics' Frechet distance in float64 over embeddings
of every window (musicnn ``max_pool`` by default, 3 s windows at 16 kHz; audio is resampled to the
embedder's rate), and optionally FAD-infinity and per-song FAD. Each item stores its embeddings
(``items/*.safetensors``), so the statistics are gathered from all processes' items, and a resumed
run never embeds a finished item again. FAD of a few tracks is a noisy figure: the table states the
number of embeddings on each side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stemforge.evaluate.fad import (
    FadOptions,
    GeneratedAudioSettings,
    embed,
    fad_row,
    make_embedder,
    windows_per_track,
)
from stemforge.evaluate.runner import EvaluationError, ItemStore, Shard, run_items, track_keys
from stemforge.evaluate.testset import Track


@dataclass(frozen=True)
class GenerationSettings(GeneratedAudioSettings):
    protocol: str = "arrangement"

    def check(self) -> None:
        if self.protocol not in ("arrangement", "generation"):
            raise EvaluationError(f"protocol {self.protocol!r}: arrangement or generation")
        self.check_sampling()


def subset_name(stems: Sequence[str]) -> str:
    return "+".join(stems)


def evaluate_item(
    pipe: Any, track: Track, index: int, settings: GenerationSettings, out: Path, embedder: Any
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """One track: its metrics-free record and the embeddings of the real mix and of each generated
    (sub-)mixture."""
    from stemforge.data import write_audio
    from stemforge.metrics import arrangement_subsets

    rate = pipe.sample_rate
    originals = track.read(rate, settings.offset, settings.seconds)
    n = originals.shape[-1]
    if n < 3 * rate:
        raise EvaluationError(f"track {track.name}: {n / rate:.2f} s; FAD needs at least 3 s per track")
    common = {
        "steps": settings.steps,
        "sampler": settings.sampler,
        "eta": settings.eta,
        "allow_degenerate": True,
    }
    embeddings = {"real": embed(embedder, originals.sum(0), rate)}
    mixes: dict[str, Tensor] = {}
    if settings.protocol == "generation":
        stems = pipe.generate(n / rate, sample_rate=rate, seed=settings.seed + index, **common)
        mixes["generation"] = torch.stack([stems[s][:n] for s in pipe.stems]).sum(0)
    else:
        for k, subset in enumerate(arrangement_subsets(pipe.stems)):
            given = {s: originals[i] for i, s in enumerate(pipe.stems) if s not in subset}
            generated = pipe.arrange(given, rate, seed=(settings.seed + index) * 100 + k, **common)
            parts = [(generated[s] if s in subset else originals[i]) for i, s in enumerate(pipe.stems)]
            mix = parts[0]
            for part in parts[1:]:
                mix = mix + part
            mixes[subset_name(subset)] = mix
    for name, mix in mixes.items():
        embeddings[name] = embed(embedder, mix, rate)
        if settings.save_audio:
            write_audio(
                out / "audio" / settings.protocol / track.name / f"{name}.wav", mix.clamp(-1, 1), rate
            )
    return {"track": track.name, "index": index, "seconds": n / rate, "rows": list(mixes)}, embeddings


def fad_table(
    embeddings: Sequence[dict[str, Tensor]], rows: Sequence[str], options: FadOptions | None = None
) -> dict[str, Any]:
    """One FAD row per generated row, each against the ``real`` mixtures of all items."""
    options = options or FadOptions()
    real = [e["real"] for e in embeddings]
    return {row: fad_row(real, [e[row] for e in embeddings], options, k) for k, row in enumerate(rows)}


def run_generation(
    pipe: Any,
    tracks: Sequence[Track],
    out: Path,
    settings: GenerationSettings,
    shard: Shard,
    *,
    overwrite: bool = False,
    progress: Any = None,
    fad: FadOptions | None = None,
) -> dict[str, Any] | None:
    """Generation or arrangement FAD (``settings.protocol``); results on the main process."""
    from safetensors.torch import load_file, save_file

    from stemforge.metrics import arrangement_subsets

    settings.check()
    fad = fad or FadOptions(seed=settings.seed)
    fad.check(None if settings.seconds is None else windows_per_track(settings.seconds))
    if settings.seconds is not None:
        fad.check_pool(windows_per_track(settings.seconds) * len(tracks))
    embedder = make_embedder(settings.embedder)
    store = ItemStore(out, settings.record(), overwrite=overwrite)
    keys = track_keys(settings.protocol, [t.name for t in tracks])

    def evaluate(i: int) -> dict[str, Any]:
        record, embeddings = evaluate_item(pipe, tracks[i], i, settings, out, embedder)
        path = store.path(keys[i]).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({k: v.contiguous() for k, v in embeddings.items()}, tmp)
        tmp.replace(path)  # the embeddings land before the item's JSON marks it done
        return record

    run_items(shard, store, keys, evaluate, progress)
    shard.wait()
    if not shard.is_main:
        return None
    items = [store.load(key) for key in keys]
    embeddings = [load_file(store.path(key).with_suffix(".safetensors")) for key in keys]
    rows = (
        ["generation"]
        if settings.protocol == "generation"
        else [subset_name(s) for s in arrangement_subsets(pipe.stems)]
    )
    results = {
        "protocol": settings.protocol,
        "settings": settings.record(),
        "tracks": [item["track"] for item in items],
        "seconds": sum(item["seconds"] for item in items),
        "embedder": embedder.name,
        "fad_options": fad.record(),
        "table": fad_table(embeddings, rows, fad),
    }
    from stemforge.evaluate.report import fad_markdown, fad_png, plot_safely, write_results

    write_results(out, results, fad_markdown(results, fad))
    plot_safely(out / f"{settings.protocol}.png", lambda path: fad_png(path, results))
    return results
