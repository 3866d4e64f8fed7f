"""The generation protocols of MSG-LD (after MSDM): FAD of total generation and of arrangement.

- ``generation``: per test track, one mixture generated from nothing (all stems, w = 0), of the
  track's length; FAD of the generated mixtures against the test mixtures.
- ``arrangement``: per test track and per non-empty proper subset G of the stems (14 of 4 stems:
  4 singles, 6 pairs, 4 triples; stemforge-metrics ``arrangement_subsets``; ``--subsets`` keeps some
  of them), the stems of G are generated given the track's other stems (inpainting), mixed with
  those original stems, and FAD compares these sub-mixtures with the test mixtures: one row per
  subset (MSG-LD's Table I).

Beside the model, trivial baselines that sample nothing, so a reader can tell whether the model
beats doing nothing (from the same excerpts, embedded alike; stored per track under
``items/<protocol>/baselines/``, once for every step count and seed):

- arrangement, per subset: ``given only`` (the given originals, the subset's stems left silent) and
  ``codec oracle`` (the given originals with the subset's true stems through the model's codec and
  back: the ceiling of any model with this codec);
- generation: ``codec oracle`` (every true stem through the codec, summed) and ``shuffled stems``
  (stem s of track i taken from track i + s, cyclically, in the model's stem order: real stems that
  do not belong together; it needs at least 2 tracks).

A tuple of step counts (``--steps 5,10,20``) makes each step count a setting of its own, with its
own items (``items/<protocol>/steps<k>/``) and audio, and one table row per step count and row
(``fad_steps.png``: FAD against sampler steps). Track i starts from the noise of seed + i at every
step count, so the curve compares step counts, not draws.

FAD (:mod:`stemforge.evaluate.fad`): stemforge-metrics' Frechet distance in float64 over embeddings
of every window (musicnn ``max_pool`` by default, 3 s windows at 16 kHz, or VGGish; audio is
resampled to the embedder's rate), and optionally FAD-infinity and per-song FAD. Each item stores its embeddings
(``items/*.safetensors``), so the statistics are gathered from all processes' items, and a resumed
run never embeds a finished item again. FAD of a few tracks is a noisy figure: the table states the
number of embeddings on each side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stemforge.evaluate.fad import (
    FadOptions,
    GeneratedAudioSettings,
    embed,
    embedder_record,
    fad_row,
    make_embedder,
    read_excerpt,
    windows_per_track,
)
from stemforge.evaluate.runner import EvaluationError, ItemStore, Shard, run_items, track_keys
from stemforge.evaluate.separation import ORACLE_ROW, codec_round_trip
from stemforge.evaluate.testset import Track

GIVEN_ROW = "given only"
SHUFFLED_ROW = "shuffled stems"
#: The baseline rows of each protocol, in the table's order.
BASELINES = {"arrangement": (GIVEN_ROW, ORACLE_ROW), "generation": (ORACLE_ROW, SHUFFLED_ROW)}
#: The baseline each model row must beat: doing nothing (arrangement), real stems that do not
#: belong together (generation).
REFERENCE_BASELINE = {"arrangement": GIVEN_ROW, "generation": SHUFFLED_ROW}
#: Settings the baselines do not depend on (they sample nothing), so one set serves every step count.
SAMPLER_FIELDS = ("steps", "sampler", "eta", "seed")
#: FAD-infinity draws of the baseline rows: 900 + ..., apart from the model rows' (seed x 1000 + 0,
#: 1, ...), and the same at any --steps, --subsets and --seed.
BASELINE_DRAWS = 900


@dataclass(frozen=True)
class GenerationSettings(GeneratedAudioSettings):
    protocol: str = "arrangement"
    subsets: tuple[str, ...] = ()
    """arrangement: the subsets evaluated, named as the table's rows (``bass``, ``soprano+alto``);
    (): all of them."""

    def check(self) -> None:
        if self.protocol not in ("arrangement", "generation"):
            raise EvaluationError(f"protocol {self.protocol!r}: arrangement or generation")
        if self.protocol == "generation" and self.subsets:
            raise EvaluationError("--subsets: an arrangement option; generation has one row")
        self.check_sampling()
        if self.stems and self.subsets:
            chosen = [name for _, name in arrangement_rows(self.stems, self.subsets)]
            if list(self.subsets) != chosen:
                raise EvaluationError(
                    f"--subsets {','.join(self.subsets)}: give them as the table names them: {','.join(chosen)}"
                )


#: What each baseline row is (results.json's ``baseline_rows``, results.md's note).
BASELINE_TEXT = {
    "arrangement": {
        GIVEN_ROW: "the given originals with the subset's stems left silent",
        ORACLE_ROW: "the given originals with the subset's true stems through the model's codec and back",
    },
    "generation": {
        ORACLE_ROW: "every true stem through the model's codec and back, summed",
        SHUFFLED_ROW: "stem s of track i taken from track i + s (cyclically, in the model's stem order), "
        "summed: real stems that do not belong together",
    },
}


def subset_name(stems: Sequence[str]) -> str:
    return "+".join(stems)


def arrangement_rows(stems: Sequence[str], names: Sequence[str] = ()) -> list[tuple[int, str]]:
    """(k, row name) of the arranged subsets, k the subset's place among all of them (its seed), in
    that order; ``names`` ("bass", "alto+soprano", in any stem order) keeps some of them."""
    from stemforge.metrics import arrangement_subsets

    every = [subset_name(subset) for subset in arrangement_subsets(stems)]
    if not names:
        return list(enumerate(every))
    wanted = set()
    for name in names:
        parts = [part.strip() for part in name.split("+")]
        unknown = [part for part in parts if part not in stems]
        if unknown:
            raise EvaluationError(
                f"--subsets {name}: {', '.join(unknown)} is not a stem of the model ({', '.join(stems)}); "
                "join stems with +, e.g. bass,soprano+alto"
            )
        if len(set(parts)) != len(parts) or len(parts) == len(stems):
            raise EvaluationError(
                f"--subsets {name}: a subset names each stem once and leaves at least one stem given"
            )
        wanted.add(subset_name([s for s in stems if s in parts]))
    return [(k, name) for k, name in enumerate(every) if name in wanted]


def evaluate_item(
    pipe: Any,
    track: Track,
    index: int,
    settings: GenerationSettings,
    audio_folder: Path,
    embedder: Any,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """One track: its metrics-free record and the embeddings of the real mix and of each generated
    (sub-)mixture (the audio, if kept, under ``audio_folder``)."""
    from stemforge.data import write_audio
    from stemforge.metrics import arrangement_subsets

    rate = pipe.sample_rate
    originals = read_excerpt(track, rate, settings)
    n = originals.shape[-1]
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
        subsets = arrangement_subsets(pipe.stems)
        for k, _ in arrangement_rows(pipe.stems, settings.subsets):
            subset = subsets[k]
            given = {s: originals[i] for i, s in enumerate(pipe.stems) if s not in subset}
            generated = pipe.arrange(given, rate, seed=(settings.seed + index) * 100 + k, **common)
            mixes[subset_name(subset)] = sub_mixture(originals, pipe.stems, subset, generated)
    for name, mix in mixes.items():
        embeddings[name] = embed(embedder, mix, rate)
        if settings.save_audio:
            write_audio(audio_folder / f"{name}.wav", mix.clamp(-1, 1), rate)
    return {"track": track.name, "index": index, "seconds": n / rate, "rows": list(mixes)}, embeddings


def sub_mixture(
    originals: Tensor, stems: Sequence[str], subset: Sequence[str], replacement: Mapping[str, Tensor]
) -> Tensor:
    """The mixture of the given originals (S, N) with the stems of ``subset`` taken from
    ``replacement`` (stem -> (N,) wave), summed in stem order."""
    mix = None
    for i, stem in enumerate(stems):
        part = replacement[stem] if stem in subset else originals[i]
        mix = part if mix is None else mix + part
    assert mix is not None
    return mix


def shuffle_sources(names: Sequence[str], num_stems: int) -> list[list[str] | None]:
    """Per track i, the tracks its shuffled stems come from: stem s from track i + s, cyclically
    (None for every track of a set of one track, which has no other track to take them from)."""
    if len(names) < 2:
        return [None] * len(names)
    return [[names[(i + s) % len(names)] for s in range(num_stems)] for i in range(len(names))]


def evaluate_baselines(
    pipe: Any,
    tracks: Sequence[Track],
    index: int,
    settings: GenerationSettings,
    audio_folder: Path,
    embedder: Any,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """One track's baseline mixtures (none of them samples, so they serve every step count): the
    embeddings of the real mix and of each ``<row>:<baseline>`` (row: the subset, or ``generation``)."""
    from stemforge.data import write_audio
    from stemforge.metrics import arrangement_subsets

    rate = pipe.sample_rate
    track = tracks[index]
    originals = read_excerpt(track, rate, settings)
    n = originals.shape[-1]
    oracle = codec_round_trip(pipe, originals)
    record: dict[str, Any] = {"track": track.name, "index": index, "seconds": n / rate}
    mixes: dict[str, Tensor] = {}
    if settings.protocol == "generation":
        mixes[f"generation:{ORACLE_ROW}"] = oracle.sum(0)
        sources = shuffle_sources([t.name for t in tracks], len(pipe.stems))[index]
        record["shuffled_from"] = sources
        if sources is not None:
            by_name = {t.name: t for t in tracks}
            read = {
                name: by_name[name].read(rate, settings.offset, settings.seconds) for name in set(sources)
            }
            shuffled = torch.zeros_like(originals)
            for s, name in enumerate(sources):
                wave = read[name][s, :n]  # a shorter track is padded with silence
                shuffled[s, : wave.shape[-1]] = wave
            mixes[f"generation:{SHUFFLED_ROW}"] = shuffled.sum(0)
    else:
        subsets = arrangement_subsets(pipe.stems)
        silent = {stem: torch.zeros(n) for stem in pipe.stems}
        through_codec = dict(zip(pipe.stems, oracle))
        for k, name in arrangement_rows(pipe.stems, settings.subsets):
            mixes[f"{name}:{GIVEN_ROW}"] = sub_mixture(originals, pipe.stems, subsets[k], silent)
            mixes[f"{name}:{ORACLE_ROW}"] = sub_mixture(originals, pipe.stems, subsets[k], through_codec)
    embeddings = {"real": embed(embedder, originals.sum(0), rate)}
    for key, mix in mixes.items():
        embeddings[key] = embed(embedder, mix, rate)
        if settings.save_audio:
            file = key.replace(":", "_").replace(" ", "_")
            write_audio(audio_folder / f"{file}.wav", mix.clamp(-1, 1), rate)
    return {**record, "rows": list(mixes)}, embeddings


class BaselineStore(ItemStore):
    """The baseline items: settings without the sampler's, and an item whose shuffled stems came
    from other tracks (the test set grew or shrank: the cyclic rotation changed) is evaluated again."""

    def __init__(
        self,
        out: Path,
        settings: GenerationSettings,
        sources: Mapping[str, list[str] | None],
        overwrite: bool = False,
    ) -> None:
        record = {k: v for k, v in settings.record().items() if k not in SAMPLER_FIELDS}
        super().__init__(out, record, overwrite=overwrite)
        self.sources = sources

    def done(self, key: str) -> bool:
        return super().done(key) and self.load(key).get("shuffled_from") == self.sources.get(key)


def baseline_table(
    embeddings: Sequence[dict[str, Tensor]],
    protocol: str,
    rows: Sequence[tuple[int, str]],
    options: FadOptions | None = None,
) -> dict[str, dict[str, Any]]:
    """Per generated row (k, name): its baselines' FAD rows against the ``real`` mixtures of all
    items; a baseline that some item lacks (shuffled stems of one track) is left out."""
    options = replace(options or FadOptions(), seed=0)  # no --seed: the same draws in every run
    real = [e["real"] for e in embeddings]
    names = BASELINES[protocol]
    table: dict[str, dict[str, Any]] = {}
    for k, row in rows:
        for j, baseline in enumerate(names):
            key = f"{row}:{baseline}"
            if all(key in e for e in embeddings):
                evaluated = [e[key] for e in embeddings]
                draws = BASELINE_DRAWS + len(names) * k + j
                table.setdefault(row, {})[baseline] = fad_row(real, evaluated, options, draws)
    return table


def fad_table(
    embeddings: Sequence[dict[str, Tensor]],
    rows: Sequence[str],
    options: FadOptions | None = None,
    first_index: int = 0,
) -> dict[str, Any]:
    """One FAD row per generated row, each against the ``real`` mixtures of all items (FAD-infinity
    draws the subsets of row k from seed x 1000 + first_index + k)."""
    options = options or FadOptions()
    real = [e["real"] for e in embeddings]
    return {
        row: fad_row(real, [e[row] for e in embeddings], options, first_index + k)
        for k, row in enumerate(rows)
    }


def steps_row(row: str, steps: int) -> str:
    """The table's name of a row of a ``--steps`` sweep."""
    return f"{row}, steps={steps}"


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
    embedder: Any = None,
) -> dict[str, Any] | None:
    """Generation or arrangement FAD (``settings.protocol``), at each step count of ``settings.steps``;
    results on the main process. ``embedder``: the one ``make_embedder`` built for these settings."""
    settings.check()
    fad = fad or FadOptions(seed=settings.seed)
    windows = None if settings.seconds is None else windows_per_track(settings.seconds, settings.embedder)
    fad.check(windows, settings.embedder)
    if windows is not None:
        fad.check_pool(windows * len(tracks))
    if embedder is None:
        embedder = make_embedder(settings.embedder, settings.vggish_weights or None)
    sweep = isinstance(settings.steps, tuple)
    names = [t.name for t in tracks]

    def folder(steps: int) -> str:
        """items/<folder>/<track>.json and audio/<folder>/<track>/: one folder per step count of a sweep."""
        return f"{settings.protocol}/steps{steps}" if sweep else settings.protocol

    def evaluator(steps: int, store: ItemStore, keys: list[str]) -> Any:
        at_steps = settings.at_steps(steps)

        def evaluate(i: int) -> dict[str, Any]:
            audio = out / "audio" / folder(steps) / tracks[i].name
            record, embeddings = evaluate_item(pipe, tracks[i], i, at_steps, audio, embedder)
            store.save_embeddings(keys[i], embeddings)  # before the item's JSON marks it done
            return record

        return evaluate

    # The baselines first, once per track whatever the step counts: they sample nothing.
    baseline_keys = track_keys(f"{settings.protocol}/baselines", names)
    shuffled = settings.protocol == "generation"
    sources = dict(zip(baseline_keys, shuffle_sources(names, len(pipe.stems)))) if shuffled else {}
    baselines = BaselineStore(out, settings, sources, overwrite=overwrite)

    def evaluate_baseline(i: int) -> dict[str, Any]:
        audio = out / "audio" / settings.protocol / "baselines" / tracks[i].name
        record, embeddings = evaluate_baselines(pipe, tracks, i, settings, audio, embedder)
        baselines.save_embeddings(baseline_keys[i], embeddings)
        return record

    run_items(shard, baselines, baseline_keys, evaluate_baseline, progress)

    # Each step count is a setting of its own: its items carry its settings, so a resumed sweep
    # reuses every step count already done (and a longer sweep, those it shares).
    stores = {
        k: ItemStore(out, settings.at_steps(k).record(), overwrite=overwrite) for k in settings.step_counts()
    }
    keys = {k: track_keys(folder(k), names) for k in settings.step_counts()}
    for k, store in stores.items():
        run_items(shard, store, keys[k], evaluator(k, store, keys[k]), progress)
    shard.wait()
    if not shard.is_main:
        return None
    placed = (
        [(0, "generation")]
        if settings.protocol == "generation"
        else arrangement_rows(pipe.stems, settings.subsets)
    )
    rows = [name for _, name in placed]
    table: dict[str, Any] = {}
    for j, (k, store) in enumerate(stores.items()):
        embeddings = [store.load_embeddings(key) for key in keys[k]]
        at_steps = fad_table(embeddings, rows, fad, j * len(rows))
        if sweep:
            at_steps = {steps_row(row, k): {"generated": row, "steps": k, **v} for row, v in at_steps.items()}
        table.update(at_steps)
    first = settings.step_counts()[0]
    items = [stores[first].load(key) for key in keys[first]]
    results = {
        "protocol": settings.protocol,
        "settings": settings.record(),
        "tracks": [item["track"] for item in items],
        "seconds": sum(item["seconds"] for item in items),
        **embedder_record(settings, embedder),
        "fad_options": fad.record(),
        "table": table,
        "baselines": baseline_table(
            [baselines.load_embeddings(key) for key in baseline_keys], settings.protocol, placed, fad
        ),
        "baseline_rows": BASELINE_TEXT[settings.protocol],
    }
    from stemforge.evaluate.report import fad_markdown, fad_png, fad_steps_png, plot_safely, write_results

    write_results(out, results, fad_markdown(results, fad))
    plot_safely(out / f"{settings.protocol}.png", lambda path: fad_png(path, results))
    if sweep:
        plot_safely(out / "fad_steps.png", lambda path: fad_steps_png(path, results))
    return results
