"""``stemforge-evaluate``: one command per protocol, each on a pipeline folder, a test set and an
output folder.

    stemforge-evaluate separation --checkpoint PIPELINE --slakh-root CORPUS --out out/eval
    stemforge-evaluate generation --checkpoint PIPELINE --slakh-root CORPUS --steps 5,10,20 --out out/eval-gen
    stemforge-evaluate arrangement ... --embedder vggish --vggish-weights vggish.safetensors
    accelerate launch --num_processes 2 -m stemforge.evaluate.cli separation ...   # sharded
    stemforge-evaluate midi --checkpoint PIPELINE --protocols windowed,insertion --out out/eval-midi
    stemforge-evaluate insertion --checkpoint PIPELINE --slakh-root CORPUS --stems bass --out out/eval-ins
    stemforge-evaluate accompaniment --checkpoint PIPELINE --slakh-root CORPUS --out out/eval-acc

Results: ``OUT/results.json``, ``OUT/results.md``, PNG plots, per-item files under ``OUT/items``
(an interrupted run resumes from them) and the generated audio under ``OUT/audio``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stemforge.evaluate.runner import EvaluationError


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated numbers, e.g. 1,2") from err


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _step_counts(text: str) -> int | tuple[int, ...]:
    """One step count, or several (comma-separated), each evaluated as a setting of its own."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a step count or several, e.g. 50 or 5,10,20"
        ) from err
    if not counts:
        raise argparse.ArgumentTypeError(f"{text!r}: give a step count or several, e.g. 50 or 5,10,20")
    return counts[0] if len(counts) == 1 else counts


def _embedder_name(text: str) -> str:
    from stemforge.evaluate.fad import EMBEDDERS

    name = "musicnn-max_pool" if text == "musicnn" else text
    if name not in EMBEDDERS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: choose musicnn (musicnn-max_pool), musicnn-mean_pool, musicnn-penultimate or vggish"
        )
    return name


def _out_folder(out: Path) -> Path:
    from stemforge.evaluate.runner import EvaluationError

    if out.exists() and not out.is_dir():
        raise EvaluationError(f"--out {out}: is a file; give a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    import os

    if not os.access(probe, os.W_OK):
        raise EvaluationError(f"--out {out}: {probe} is not writable; choose another folder")
    return out


def _progress(quiet: bool):  # type: ignore[no-untyped-def]
    if quiet:
        return None
    return lambda line: print(line, file=sys.stderr, flush=True)


def _audio_setup(args: argparse.Namespace, test_stems: Any = None):  # type: ignore[no-untyped-def]
    """Output folder, shard, pipeline, tracks and the test set's description, checked before any work.
    ``test_stems(pipe)`` names the stems read from the test set (default: the model's)."""
    from stemforge.evaluate.runner import Shard
    from stemforge.evaluate.testset import slakh_tracks, stem_folder_tracks
    from stemforge.pipelines import MultiTrackPipeline

    out = _out_folder(Path(args.out))
    if bool(args.slakh_root) == bool(args.stems_root):
        raise EvaluationError("give the test set with either --slakh-root or --stems-root")
    shard = Shard.current(cpu=args.cpu)
    pipe = MultiTrackPipeline.from_pretrained(Path(args.checkpoint), shard.device)
    stems = tuple(pipe.stems) if test_stems is None else test_stems(pipe)
    if args.slakh_root:
        tracks = slakh_tracks(Path(args.slakh_root), args.split, stems, args.group_by)
        test_set = f"{args.slakh_root} ({args.split}, by {args.group_by})"
    else:
        tracks = stem_folder_tracks(Path(args.stems_root), stems)
        test_set = str(args.stems_root)
    if args.max_tracks:
        tracks = tracks[: args.max_tracks]
    return out, shard, pipe, tracks, test_set


def _fad_options(args: argparse.Namespace) -> Any:
    from stemforge.evaluate.fad import FadOptions, windows_per_track

    options = FadOptions(
        modes=tuple(dict.fromkeys(("plain", *args.fad))),
        infinity_steps=args.fad_infinity_steps,
        infinity_min=args.fad_infinity_min,
        seed=args.seed,
    )
    options.check(
        None if args.seconds <= 0 else windows_per_track(args.seconds, args.embedder), args.embedder
    )
    return options


def _vggish_weights(args: argparse.Namespace) -> str:
    """The weights file as the settings record it (absolute, so a resumed run finds it again)."""
    return str(Path(args.vggish_weights).resolve()) if args.vggish_weights else ""


#: The pipeline task each audio protocol runs (its recorded eta is the protocol's default).
_PROTOCOL_TASKS = {
    "separation": "separate",
    "generation": "generate",
    "arrangement": "arrange",
    "subtractive": "insert",
    "accompaniment": "accompany",
}


def _eta(args: argparse.Namespace, pipe: Any) -> float:
    """--eta, else the eta the pipeline records for the protocol's task, else 1 (the original's)."""
    from stemforge.pipelines.sampling import default_eta

    if args.eta is not None:
        return float(args.eta)
    return default_eta(pipe, _PROTOCOL_TASKS.get(args.command))


def _run_audio_protocol(
    args: argparse.Namespace, settings_cls: type, run: Any, read_stems: Any = None, **specific: Any
) -> int:
    """Build the protocol's settings from the shared audio options, check them, run, print the table."""
    extra = {}
    if hasattr(args, "fad"):
        from stemforge.evaluate.fad import make_embedder

        # Checked, and the embedder loaded, before the model: a bad --vggish-weights costs nothing.
        extra["fad"] = _fad_options(args)
        extra["embedder"] = make_embedder(args.embedder, args.vggish_weights)
    out, shard, pipe, tracks, test_set = _audio_setup(args, read_stems)
    if args.command in ("generation", "arrangement") and pipe.mode != "msgld":
        raise EvaluationError(
            f"--checkpoint {args.checkpoint}: a {pipe.mode} model; generation and arrangement need a joint "
            "multi-stem model (MSG-LD)"
        )
    specific = {k: (v(pipe) if callable(v) else v) for k, v in specific.items()}
    settings = settings_cls(
        steps=args.steps,
        sampler=args.sampler,
        eta=_eta(args, pipe),
        seed=args.seed,
        seconds=args.seconds if args.seconds > 0 else None,
        offset=args.offset,
        save_audio=not args.no_audio,
        checkpoint=str(args.checkpoint),
        test_set=test_set,
        stems=tuple(pipe.stems),
        **specific,
    )
    settings.check()
    results = run(
        pipe, tracks, out, settings, shard, overwrite=args.overwrite, progress=_progress(args.quiet), **extra
    )
    if results is not None:
        print((out / "results.md").read_text())
    return 0


def _cmd_generation(args: argparse.Namespace) -> int:
    from stemforge.evaluate.arrangement import GenerationSettings, arrangement_rows, run_generation

    def subsets(pipe: Any) -> tuple[str, ...]:
        """The model's names of the --subsets, in the table's order."""
        names = getattr(args, "subsets", ())
        return tuple(name for _, name in arrangement_rows(pipe.stems, names)) if names else ()

    return _run_audio_protocol(
        args,
        GenerationSettings,
        run_generation,
        protocol=args.command,
        embedder=args.embedder,
        vggish_weights=_vggish_weights(args),
        subsets=subsets,
    )


def _cmd_subtractive(args: argparse.Namespace) -> int:
    from stemforge.evaluate.subtractive import SubtractiveSettings, run_subtractive

    def test_stems(pipe: Any) -> tuple[str, ...]:
        if args.test_stems:
            return tuple(args.test_stems)
        if len(pipe.stems) < 2:
            raise EvaluationError(
                f"--checkpoint {args.checkpoint}: the model generates {', '.join(pipe.stems)} only; name the "
                "test set's stems that make up the mixture with --test-stems, e.g. --test-stems "
                "soprano,alto,tenor,bass"
            )
        return tuple(pipe.stems)

    def insert_stems(pipe: Any) -> tuple[str, ...]:
        if args.stems:
            return tuple(args.stems)
        if pipe.mode == "accompaniment":
            return (pipe.target,)
        if pipe.mode == "subtractive" and pipe.insert_stems:
            return tuple(pipe.insert_stems)
        return tuple(pipe.stems)

    accompaniment = args.command == "accompaniment"
    return _run_audio_protocol(
        args,
        SubtractiveSettings,
        run_subtractive,
        read_stems=test_stems,
        protocol=args.command,
        embedder=args.embedder,
        vggish_weights=_vggish_weights(args),
        insert_stems=insert_stems,
        test_stems=test_stems,
        guidance=args.guidance if args.guidance is not None else (3.0 if accompaniment else 1.0),
        instruction=getattr(args, "instruction", "") or "",
        rescale=getattr(args, "rescale", 0.7),
        style_strength=getattr(args, "style_strength", 0.7),
        style_stem=getattr(args, "style_stem", "") or "",
        cfg_sweep=getattr(args, "cfg_sweep", ()),
        style_sweep=getattr(args, "style_sweep", ()),
    )


def _cmd_separation(args: argparse.Namespace) -> int:
    from stemforge.evaluate.separation import SeparationSettings, run_separation

    return _run_audio_protocol(
        args, SeparationSettings, run_separation, methods=args.methods, guidances=args.guidance
    )


def _cmd_midi(args: argparse.Namespace) -> int:
    from stemforge.evaluate.midi import MidiSettings, run_midi
    from stemforge.evaluate.runner import Shard
    from stemforge.pipelines import VoiceInsertionPipeline

    out = _out_folder(Path(args.out))
    shard = Shard.current(cpu=args.cpu)
    pipe = VoiceInsertionPipeline.from_pretrained(Path(args.checkpoint), shard.device)
    settings = MidiSettings(
        split=args.split,
        protocols=args.protocols,
        length=args.length,
        windows=args.windows,
        orderings=args.orderings,
        max_pieces=args.max_pieces,
        max_frames=args.max_frames,
        insert_steps=args.insert_steps,
        order=args.order,
        parallels=args.parallels,
        temperature=args.temperature,
        seed=args.seed,
        checkpoint=str(args.checkpoint),
    )
    settings.check()
    results = run_midi(pipe, out, settings, shard, overwrite=args.overwrite, progress=_progress(args.quiet))
    if results is not None:
        print((out / "results.md").read_text())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stemforge-evaluate",
        description="The papers' evaluation protocols on a stemforge pipeline folder (sharded with accelerate).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--checkpoint", required=True, help="a pipeline folder (pipeline.json) or a train export"
        )
        p.add_argument("--out", required=True, help="output folder (results.json, results.md, PNG, items/)")
        p.add_argument("--seed", type=int, default=0, help="base seed; item i uses seed + i (default 0)")
        p.add_argument(
            "--overwrite", action="store_true", help="evaluate items stored with other settings again"
        )
        p.add_argument("--cpu", action="store_true", help="run on the CPU even where a GPU is present")
        p.add_argument("--quiet", action="store_true", help="no per-item progress lines")

    def audio(p: argparse.ArgumentParser, steps_sweep: bool = False) -> None:
        common(p)
        p.add_argument("--slakh-root", help="a Slakh-format folder (Slakh2100, or a rendered chorale corpus)")
        p.add_argument("--split", default="test", help="split of --slakh-root (default test)")
        p.add_argument(
            "--group-by",
            default="stem_name",
            choices=("stem_name", "inst_class"),
            help="stem_name for rendered chorales (default), inst_class for Slakh2100",
        )
        p.add_argument("--stems-root", help="MUSDB-style track folders with one <stem>.wav|flac per stem")
        p.add_argument("--max-tracks", type=int, default=0, help="evaluate the first N tracks only")
        if steps_sweep:
            p.add_argument(
                "--steps",
                type=_step_counts,
                default=50,
                help="sampler steps (default 50); several, e.g. 5,10,20: each a setting of its own, "
                "one table row per step count and fad_steps.png",
            )
        else:
            p.add_argument("--steps", type=int, default=50, help="sampler steps (default 50)")
        p.add_argument(
            "--sampler",
            default="ddim",
            choices=("ddim", "dpm", "dpm3", "ddpm"),
            help="ddim, dpm (DPM-Solver++(2M)), dpm3 (DPM-Solver++(3M)) or ddpm (default ddim)",
        )
        p.add_argument(
            "--eta",
            type=float,
            default=None,
            help="DDIM eta (default: the checkpoint's recorded eta for the protocol's task, else 1, the "
            "original code's)",
        )
        p.add_argument(
            "--seconds", type=float, default=4.0, help="seconds per track; 0 for whole tracks (default 4)"
        )
        p.add_argument(
            "--offset", type=float, default=0.0, help="start of each excerpt in seconds (default 0)"
        )
        p.add_argument("--no-audio", action="store_true", help="do not keep the audio it generates")

    p = sub.add_parser(
        "separation", help="MSDM SI-SDRi and MSG-LD Mel-MSE of cfg / dirac / gaussian separation"
    )
    audio(p)
    p.add_argument(
        "--methods", type=_names, default=("cfg", "dirac"), help="cfg,dirac,gaussian (default cfg,dirac)"
    )
    p.add_argument("--guidance", type=_floats, default=(1.0, 2.0), help="CFG weights, w >= 1 (default 1,2)")
    p.set_defaults(func=_cmd_separation)

    def fad(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--embedder",
            type=_embedder_name,
            default="musicnn-max_pool",
            metavar="{musicnn,musicnn-mean_pool,musicnn-penultimate,vggish}",
            help="FAD embedder: musicnn (its max_pool layer, the default; or another layer), or vggish "
            "with --vggish-weights",
        )
        p.add_argument(
            "--vggish-weights",
            metavar="FILE",
            help="--embedder vggish: a local .safetensors file of torchvggish's state dict "
            "(stemforge ships and downloads none)",
        )
        p.add_argument(
            "--fad",
            type=_names,
            default=("plain",),
            help="FAD figures: plain (always), infinity (FAD-infinity, Chong & Forsyth), per-song; "
            "comma-separated, e.g. infinity,per-song (default plain)",
        )
        p.add_argument(
            "--fad-infinity-steps",
            type=int,
            default=15,
            help="FAD-infinity: subset sizes fitted (default 15)",
        )
        p.add_argument(
            "--fad-infinity-min",
            type=int,
            default=0,
            help="FAD-infinity: smallest subset (default 0: half the evaluated windows)",
        )

    for name, text in (
        ("generation", "FAD of mixtures generated from nothing (w = 0) against the test mixtures"),
        ("arrangement", "FAD of the 14 sub-mixtures (each subset of stems generated given the others)"),
    ):
        p = sub.add_parser(name, help=text)
        audio(p, steps_sweep=True)
        fad(p)
        if name == "arrangement":
            p.add_argument(
                "--subsets",
                type=_names,
                default=(),
                help="evaluate these subsets only, named as the table's rows: stems joined by +, "
                "comma-separated, e.g. bass,soprano+alto (default: every non-empty proper subset)",
            )
        p.set_defaults(func=_cmd_generation)

    for name, text in (
        ("insertion", "Subtractive Training: FAD of the inserted stem and of the resulting mixture"),
        (
            "accompaniment",
            "Pasini et al.: FAD of the accompaniment stem and mixture, FAD against CFG weight with and "
            "without rescale, timbre distance against style grounding strength",
        ),
    ):
        p = sub.add_parser(name, help=text)
        audio(p)
        fad(p)
        p.add_argument(
            "--stems",
            type=_names,
            default=(),
            help="stems to insert, each in turn (default: the model's target, or the stems it inserts)",
        )
        p.add_argument(
            "--test-stems",
            type=_names,
            default=(),
            help="the test set's stems that make up the mixture (default: the model's stems)",
        )
        p.add_argument(
            "--guidance",
            type=float,
            default=None,
            help="CFG weight w (default 1 for insertion, 3 for accompaniment)",
        )
        if name == "insertion":
            p.add_argument(
                "--instruction",
                default="",
                help="text instruction for a text-conditioned model; {stem} is replaced by the stem's name",
            )
        else:
            p.add_argument(
                "--rescale", type=float, default=0.7, help="CFG rescale phi in [0, 1] (default 0.7)"
            )
            p.add_argument(
                "--style-strength",
                type=float,
                default=0.7,
                help="style grounding lambda in [0, 1] (default 0.7)",
            )
            p.add_argument(
                "--style-stem",
                default="",
                help="the reference is this stem of the next track (default: the inserted stem)",
            )
            p.add_argument(
                "--cfg-sweep",
                type=_floats,
                default=(1.0, 3.0, 5.0),
                help="CFG weights of the FAD curve, each without and with rescale (default 1,3,5; '' for none)",
            )
            p.add_argument(
                "--style-sweep",
                type=_floats,
                default=(0.0, 0.5, 1.0),
                help="style grounding strengths of the timbre curve (default 0,0.5,1; '' for none)",
            )
        p.set_defaults(func=_cmd_subtractive)

    p = sub.add_parser(
        "midi",
        help="JSB chorales: framewise NLL (windowed, Coconet's whole-piece protocol) and voice insertion",
    )
    common(p)
    p.add_argument(
        "--split", default="test", choices=("train", "valid", "test"), help="JSB split (default test)"
    )
    p.add_argument(
        "--protocols",
        type=_names,
        default=("windowed",),
        help="windowed,coconet,insertion (default windowed)",
    )
    p.add_argument(
        "--length", type=int, default=32, help="window length in 16th notes (windowed; default 32)"
    )
    p.add_argument(
        "--windows", default="first", choices=("first", "all"), help="windowed: first or all windows"
    )
    p.add_argument("--orderings", type=int, default=5, help="coconet: random orderings averaged (default 5)")
    p.add_argument("--max-pieces", type=int, default=0, help="evaluate the first N chorales only")
    p.add_argument(
        "--max-frames",
        type=int,
        default=0,
        help="coconet, insertion: the first N frames of each chorale (default: whole)",
    )
    p.add_argument(
        "--insert-steps",
        type=int,
        default=0,
        help="insertion: model calls per window (default 0: one token per call)",
    )
    p.add_argument(
        "--order", default="confidence", choices=("random", "confidence"), help="insertion: reveal order"
    )
    p.add_argument(
        "--parallels",
        default="forbidden",
        choices=("forbidden", "allowed"),
        help="insertion: parallel fifths / octaves while decoding (default forbidden)",
    )
    p.add_argument("--temperature", type=float, default=1.0, help="insertion: sampling temperature")
    p.set_defaults(func=_cmd_midi)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from stemforge.evaluate.testset import TestSetError
    from stemforge.pipelines import PipelineError

    try:
        return int(args.func(args))
    except (EvaluationError, TestSetError, PipelineError) as err:
        print(f"stemforge-evaluate: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stemforge-evaluate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
