"""The stem insertion protocols of Subtractive Training (Villa-Renteria et al. 2024) and of Pasini,
Grachten & Lattner (2024): a stem inserted into a mixture that lacks it.

Per test track (``--seconds`` from ``--offset``; the mixture is the sum of the test set's stems,
``--test-stems``) and per inserted stem s (``--stems``, in turn): the partial mixture (every test
stem but s) goes to the model, which returns s.

- ``insertion``: ``MultiTrackPipeline.insert`` (a subtractive model with CFG ``--guidance`` and an
  optional ``--instruction``; an accompaniment model with CFG; a joint model by MSDM's Dirac
  posterior).
- ``accompaniment``: ``MultiTrackPipeline.accompany`` with CFG weight w, CFG rescale phi and style
  grounding strength lambda toward a reference: stem s (or ``--style-stem``) of the *next* test
  track (cyclically; the same excerpt), a passage the model has not been given. Besides the main
  setting it runs two sweeps:

  * FAD against the CFG weight, each w of ``--cfg-sweep`` with rescale off (phi = 0) and on
    (phi = ``--rescale``): Pasini et al.'s Fig. 2 (``cfg.png``). An accompaniment model only: a
    joint model takes the mixture as a constraint, without CFG;
  * style grounding strength against the timbre distance to the reference: each lambda of
    ``--style-sweep``, the distance (stemforge-metrics ``timbre_distance``: Euclidean distance of
    the mean MFCC vectors c1-c19, loudness left out) from the generated stem to the reference and
    to the true stem, mean over tracks (``style.png``); the true stem's own distance to the
    reference is the baseline row.

  Every variant of one (track, stem) starts from the same noise (seed (seed + i) x 100 + k), so
  the curves compare settings, not draws.

FAD rows per inserted stem (stemforge-metrics through :mod:`stemforge.evaluate.fad`): the inserted
stem against the test set's real stems of that name, and the resulting mixture (partial mixture +
inserted stem) against the test mixtures; beside the model, two references: ``codec oracle`` (the
true stem through the model's codec and back: the ceiling of any model with this codec) and
``no stem`` (the partial mixture alone against the test mixtures: what inserting nothing scores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

PROTOCOLS = ("insertion", "accompaniment")
MODEL_ROW = "model"
EMPTY_ROW = "no stem"


@dataclass(frozen=True)
class SubtractiveSettings(GeneratedAudioSettings):
    """Everything an insertion / accompaniment figure depends on (recorded with every item)."""

    protocol: str = "insertion"
    insert_stems: tuple[str, ...] = ()
    test_stems: tuple[str, ...] = ()
    guidance: float = 1.0
    instruction: str = ""
    """insertion: the instruction, ``{stem}`` replaced by the inserted stem's name ("": none)."""
    rescale: float = 0.7
    style_strength: float = 0.7
    style_stem: str = ""
    """accompaniment: the stem of the next track that serves as the reference ("": the inserted one)."""
    cfg_sweep: tuple[float, ...] = ()
    style_sweep: tuple[float, ...] = ()

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise EvaluationError(f"protocol {self.protocol!r}: insertion or accompaniment")
        if isinstance(self.steps, tuple):
            raise EvaluationError("--steps: one step count for insertion and accompaniment")
        self.check_sampling()
        if not self.insert_stems:
            raise EvaluationError("--stems: name at least one stem to insert")
        missing = [s for s in self.insert_stems if s not in self.test_stems]
        if missing:
            raise EvaluationError(
                f"--stems {','.join(missing)}: not among the test set's stems ({', '.join(self.test_stems)}); "
                "add it to --test-stems or choose another stem"
            )
        if len(self.test_stems) < 2:
            raise EvaluationError(
                f"--test-stems {','.join(self.test_stems)}: a mixture needs at least two stems"
            )
        if self.style_stem and self.style_stem not in self.test_stems:
            raise EvaluationError(
                f"--style-stem {self.style_stem}: not among the test set's stems ({', '.join(self.test_stems)})"
            )
        if self.guidance < 0 or any(w < 0 for w in self.cfg_sweep):
            raise EvaluationError("--guidance and --cfg-sweep: CFG weights must be >= 0")
        for name, values in (
            ("--rescale", (self.rescale,)),
            ("--style-strength", (self.style_strength,)),
            ("--style-sweep", self.style_sweep),
        ):
            if any(not 0 <= v <= 1 for v in values):
                raise EvaluationError(f"{name} {','.join(f'{v:g}' for v in values)}: give values in [0, 1]")
        if self.protocol == "insertion" and (self.cfg_sweep or self.style_sweep):
            raise EvaluationError(
                "--cfg-sweep / --style-sweep belong to the accompaniment protocol; leave them out of insertion"
            )


def cfg_key(guidance: float, rescale: float) -> str:
    return f"w={guidance:g},phi={rescale:g}"


def check_model(pipe: Any, settings: SubtractiveSettings) -> None:
    """Refuse, before any work, what the checkpoint cannot do."""
    from stemforge.pipelines import PipelineError

    try:
        for stem in settings.insert_stems:
            pipe.check_insertion(stem)
        if settings.protocol == "accompaniment":
            pipe.check_accompaniment(settings.style_strength, settings.guidance, settings.rescale)
    except PipelineError as err:
        raise EvaluationError(str(err)) from err
    if settings.instruction and not pipe.has_text:
        raise EvaluationError(
            f"--instruction: the checkpoint {settings.checkpoint} has no text conditioning; leave it out"
        )
    if settings.protocol == "insertion" and pipe.mode == "msgld" and settings.sampler != "ddim":
        raise EvaluationError(f"--sampler {settings.sampler}: a joint model inserts by DDIM only; use ddim")


def sweeps_cfg(pipe: Any, settings: SubtractiveSettings) -> list[tuple[float, float]]:
    """(w, phi) of the CFG curve: each w without and with rescale; none for a joint model."""
    if settings.protocol != "accompaniment" or pipe.mode != "accompaniment":
        return []
    phis = (0.0, settings.rescale) if settings.rescale > 0 else (0.0,)
    return [(w, phi) for w in settings.cfg_sweep for phi in phis]


def evaluate_item(
    pipe: Any,
    tracks: Sequence[Track],
    index: int,
    settings: SubtractiveSettings,
    out: Path,
    embedder: Any,
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """One track: the timbre distances and the embeddings of every audio the table needs."""
    from stemforge.data import write_audio
    from stemforge.metrics import timbre_distance

    rate = pipe.sample_rate
    track = tracks[index]
    originals = read_excerpt(track, rate, settings)
    n = originals.shape[-1]
    names = list(settings.test_stems)
    mix = originals.sum(0)
    embeddings = {"real:mix": embed(embedder, mix, rate)}
    record: dict[str, Any] = {"track": track.name, "index": index, "seconds": n / rate, "timbre": {}}
    reference_track = tracks[(index + 1) % len(tracks)]
    reference_all = None
    if settings.protocol == "accompaniment":
        reference_all = reference_track.read(rate, settings.offset, settings.seconds)
        record["reference_track"] = reference_track.name
    for k, stem in enumerate(settings.insert_stems):
        s = names.index(stem)
        true = originals[s]
        partial = mix - true
        seed = (settings.seed + index) * 100 + k
        common = {
            "steps": settings.steps,
            "sampler": settings.sampler,
            "eta": settings.eta,
            "seed": seed,
            "allow_degenerate": True,
        }
        oracle = codec_round_trip(pipe, true[None])[0]
        embeddings[f"real:{stem}"] = embed(embedder, true, rate)
        embeddings[f"{ORACLE_ROW}:{stem}"] = embed(embedder, oracle, rate)
        embeddings[f"{ORACLE_ROW}:mix:{stem}"] = embed(embedder, partial + oracle, rate)
        embeddings[f"{EMPTY_ROW}:mix:{stem}"] = embed(embedder, partial, rate)
        if settings.protocol == "insertion":
            instruction = settings.instruction.replace("{stem}", stem) or None
            generated = pipe.insert(
                partial, rate, stem, instruction=instruction, guidance=settings.guidance, **common
            )[:n]
        else:
            assert reference_all is not None
            reference = reference_all[names.index(settings.style_stem or stem)]
            accompany = _cached_accompany(pipe, partial, rate, stem, reference, common, n)
            generated = accompany(settings.guidance, settings.rescale, settings.style_strength)
            for w, phi in sweeps_cfg(pipe, settings):
                wave = accompany(w, phi, settings.style_strength)
                embeddings[f"cfg:{cfg_key(w, phi)}:{stem}"] = embed(embedder, wave, rate)
                embeddings[f"cfg:{cfg_key(w, phi)}:mix:{stem}"] = embed(embedder, partial + wave, rate)
            by_strength = {}
            for lam in settings.style_sweep:
                wave = accompany(settings.guidance, settings.rescale, lam)
                by_strength[f"{lam:g}"] = {
                    "to_reference": _finite(timbre_distance(wave, reference, rate)),
                    "to_true": _finite(timbre_distance(wave, true, rate)),
                }
            record["timbre"][stem] = {
                "true_to_reference": _finite(timbre_distance(true, reference, rate)),
                "model_to_reference": _finite(timbre_distance(generated, reference, rate)),
                "by_strength": by_strength,
            }
        embeddings[f"{MODEL_ROW}:{stem}"] = embed(embedder, generated, rate)
        embeddings[f"{MODEL_ROW}:mix:{stem}"] = embed(embedder, partial + generated, rate)
        if settings.save_audio:
            folder = out / "audio" / settings.protocol / track.name
            write_audio(folder / f"{stem}.wav", generated.clamp(-1, 1), rate)
            write_audio(folder / f"mix_with_{stem}.wav", (partial + generated).clamp(-1, 1), rate)
    return record, embeddings


def _cached_accompany(
    pipe: Any, partial: Tensor, rate: int, stem: str, reference: Tensor, common: dict[str, Any], n: int
) -> Callable[[float, float, float], Tensor]:
    """``accompany(w, phi, lambda)`` for one (track, stem), each setting sampled once."""
    cache: dict[tuple[float, float, float], Tensor] = {}

    def accompany(w: float, phi: float, lam: float) -> Tensor:
        if (w, phi, lam) not in cache:
            cache[(w, phi, lam)] = pipe.accompany(
                partial, rate, stem, style=reference, style_strength=lam, guidance=w, rescale=phi, **common
            )[:n]
        return cache[(w, phi, lam)]

    return accompany


def _finite(value: float) -> float | None:
    return value if value == value else None  # NaN (a silent stem) -> None


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def summarize(
    items: Sequence[dict[str, Any]],
    embeddings: Sequence[dict[str, Tensor]],
    settings: SubtractiveSettings,
    cfg_points: Sequence[tuple[float, float]],
    fad: FadOptions,
) -> dict[str, Any]:
    """Per inserted stem: the FAD rows, the CFG curve and the style-strength curve."""
    real_mix = [e["real:mix"] for e in embeddings]
    table: dict[str, Any] = {}
    cfg: dict[str, Any] = {}
    style: dict[str, Any] = {}
    counter = 0

    def row(real: list[Tensor] | None, key: str) -> dict[str, Any] | None:
        nonlocal counter
        counter += 1
        if real is None:
            return None
        return fad_row(real, [e[key] for e in embeddings], fad, counter)

    for stem in settings.insert_stems:
        real_stem = [e[f"real:{stem}"] for e in embeddings]
        table[stem] = {
            MODEL_ROW: {
                "stem": row(real_stem, f"{MODEL_ROW}:{stem}"),
                "mix": row(real_mix, f"{MODEL_ROW}:mix:{stem}"),
            },
            ORACLE_ROW: {
                "stem": row(real_stem, f"{ORACLE_ROW}:{stem}"),
                "mix": row(real_mix, f"{ORACLE_ROW}:mix:{stem}"),
            },
            EMPTY_ROW: {"stem": None, "mix": row(real_mix, f"{EMPTY_ROW}:mix:{stem}")},
        }
        if cfg_points:
            cfg[stem] = [
                {
                    "guidance": w,
                    "rescale": phi,
                    "stem": row(real_stem, f"cfg:{cfg_key(w, phi)}:{stem}"),
                    "mix": row(real_mix, f"cfg:{cfg_key(w, phi)}:mix:{stem}"),
                }
                for w, phi in cfg_points
            ]
        if settings.protocol == "accompaniment":
            timbres = [item["timbre"][stem] for item in items]
            style[stem] = {
                "true_to_reference": _mean([t["true_to_reference"] for t in timbres]),
                "model_to_reference": _mean([t["model_to_reference"] for t in timbres]),
                "by_strength": [
                    {
                        "strength": lam,
                        "to_reference": _mean(
                            [t["by_strength"][f"{lam:g}"]["to_reference"] for t in timbres]
                        ),
                        "to_true": _mean([t["by_strength"][f"{lam:g}"]["to_true"] for t in timbres]),
                        "tracks": sum(
                            t["by_strength"][f"{lam:g}"]["to_reference"] is not None for t in timbres
                        ),
                    }
                    for lam in settings.style_sweep
                ],
            }
    return {"table": table, "cfg": cfg, "style": style}


def run_subtractive(
    pipe: Any,
    tracks: Sequence[Track],
    out: Path,
    settings: SubtractiveSettings,
    shard: Shard,
    *,
    overwrite: bool = False,
    progress: Any = None,
    fad: FadOptions | None = None,
    embedder: Any = None,
) -> dict[str, Any] | None:
    """Insertion or accompaniment (``settings.protocol``); results on the main process. ``embedder``:
    the one ``make_embedder`` built for these settings."""
    settings.check()
    check_model(pipe, settings)
    if settings.protocol == "accompaniment" and len(tracks) < 2:
        raise EvaluationError(
            "accompaniment: the style reference of a track is the next track's stem, so the test set needs "
            "at least 2 tracks (--max-tracks 2 or more)"
        )
    fad = fad or FadOptions(seed=settings.seed)
    windows = None if settings.seconds is None else windows_per_track(settings.seconds, settings.embedder)
    fad.check(windows, settings.embedder)
    if windows is not None:
        fad.check_pool(windows * len(tracks))
    if embedder is None:
        embedder = make_embedder(settings.embedder, settings.vggish_weights or None)
    store = ItemStore(out, settings.record(), overwrite=overwrite)
    keys = track_keys(settings.protocol, [t.name for t in tracks])

    def evaluate(i: int) -> dict[str, Any]:
        record, embeddings = evaluate_item(pipe, tracks, i, settings, out, embedder)
        store.save_embeddings(keys[i], embeddings)  # before the item's JSON marks it done
        return record

    run_items(shard, store, keys, evaluate, progress)
    shard.wait()
    if not shard.is_main:
        return None
    items = [store.load(key) for key in keys]
    embeddings = [store.load_embeddings(key) for key in keys]
    cfg_points = sweeps_cfg(pipe, settings)
    results = {
        "protocol": settings.protocol,
        "settings": settings.record(),
        "mode": pipe.mode,
        "tracks": [item["track"] for item in items],
        "seconds": sum(item["seconds"] for item in items),
        **embedder_record(settings, embedder),
        "fad_options": fad.record(),
        "timbre_distance": "Euclidean distance of mean MFCC c1-c19 (64 Slaney mels, ~64 ms frames, "
        "frames 60 dB below the loudest dropped; stemforge-metrics timbre_distance)",
        **summarize(items, embeddings, settings, cfg_points, fad),
    }
    from stemforge.evaluate.report import (
        cfg_png,
        plot_safely,
        style_png,
        subtractive_markdown,
        subtractive_png,
        write_results,
    )

    write_results(out, results, subtractive_markdown(results, fad))
    plot_safely(out / f"{settings.protocol}.png", lambda path: subtractive_png(path, results))
    if results["cfg"]:
        plot_safely(out / "cfg.png", lambda path: cfg_png(path, results))
    if any(v["by_strength"] for v in results["style"].values()):
        plot_safely(out / "style.png", lambda path: style_png(path, results))
    return results
