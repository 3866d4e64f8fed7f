"""Command line of stemforge-insert: separate, generate, arrange and insert stems in audio and MIDI.

    stemforge-insert midi SONG.mid --stem bass --out OUT.mid
    stemforge-insert separate MIX.wav --out DIR [--method cfg|dirac|gaussian] [--guidance 2]
    stemforge-insert generate --out DIR [--seconds 30]
    stemforge-insert arrange --given bass=B.wav,drums=D.wav --out DIR
    stemforge-insert audio MIX.wav --stem drums --instruction "..." --out DIR
    stemforge-insert accompany MIX.wav --stem bass [--style REF.wav --style-strength 0.7] [--guidance 3 --rescale 0.7] --out DIR
    stemforge-insert import-msgld MODEL.ckpt --config EVAL.yaml [--vocoder-config config_16k_64.json] --out DIR

Audio of any length and sample rate is resampled to the model's rate, processed in overlapping
crossfaded chunks and written at the input's rate. Problems with the input print one message
(what, which file, what to do) and exit with status 2; nothing is written then.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stemforge.insert.errors import InsertError
from stemforge.pipelines import PipelineError

if TYPE_CHECKING:
    from stemforge.insert.audio_commands import InputOptions
    from stemforge.insert.audio_input import InputAudio
    from stemforge.insert.preflight import CheckpointInfo
    from stemforge.pipelines import ChunkOptions, SamplingOptions

PROG = "stemforge-insert"


def _device(name: str):
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise InsertError(f"--device {name}: not a device name ({err}); use cpu, cuda or cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InsertError(f"--device {name}: no CUDA device is available here; use --device cpu")
    if device.type not in ("cpu", "cuda", "mps"):
        raise InsertError(f"--device {name}: use cpu, cuda or cuda:N")
    return device


def _audio_checkpoint(args: argparse.Namespace):
    """The audio checkpoint's folder as its JSON describes it (kind, stems, schedule); no weights."""
    from stemforge.insert.embedded import demo_audio_checkpoint
    from stemforge.insert.preflight import peek_checkpoint

    return peek_checkpoint(
        Path(args.checkpoint) if args.checkpoint else demo_audio_checkpoint(), "multitrack"
    )


def _audio_model(args: argparse.Namespace, path: Path, device):
    from stemforge.pipelines import MultiTrackPipeline

    model = MultiTrackPipeline.from_pretrained(path, device)
    if not args.checkpoint and not args.quiet:
        print(
            f"{PROG}: using {model.label} (a demonstration model; pass --checkpoint for a real one)",
            file=sys.stderr,
        )
    return model


def _options(args: argparse.Namespace):
    from stemforge.insert.audio_commands import InputOptions
    from stemforge.pipelines.chunked import ChunkOptions
    from stemforge.pipelines.sampling import DEFAULT_STEPS, SamplingOptions

    # --eta / --steps left out: checked here with stemforge's defaults (before loading), then the
    # model's recorded values (_run_audio_command).
    eta = 1.0 if args.eta is None else args.eta
    steps = DEFAULT_STEPS if args.steps is None else args.steps
    sampling = SamplingOptions(steps=steps, sampler=args.sampler, eta=eta, seed=args.seed)
    chunking = ChunkOptions(
        chunk_seconds=args.chunk_seconds, overlap=args.overlap, batch_size=args.batch_size
    )
    if not args.max_seconds > 0:
        raise InsertError(f"--max-seconds {args.max_seconds}: give a positive length in seconds")
    inputs = InputOptions(downmix=args.downmix, max_seconds=args.max_seconds)
    return sampling, chunking, inputs


@dataclass(frozen=True)
class _AudioPlan:
    """An audio command's options, device and checkpoint, checked before any input is read."""

    checkpoint: CheckpointInfo
    sampling: SamplingOptions
    chunking: ChunkOptions
    inputs: InputOptions
    device: object

    def read(self, path: str | Path, what: str) -> InputAudio:
        """One input file, read in full and checked (before the model is loaded)."""
        from stemforge.insert.audio_input import load_input_audio

        return load_input_audio(
            Path(path), what=what, downmix=self.inputs.downmix, max_seconds=self.inputs.max_seconds
        )


def _audio_plan(args: argparse.Namespace, stems: Sequence[tuple[str, str]] = ()) -> _AudioPlan:
    """Options first, then the checkpoint's JSON: its kind, ``stems`` ((option, name) pairs) among
    its stems, ``--steps`` within its schedule."""
    sampling, chunking, inputs = _options(args)
    device = _device(args.device)
    checkpoint = _audio_checkpoint(args)
    for option, stem in stems:
        checkpoint.check_stem(stem, option)
    checkpoint.check_steps(sampling.steps)
    return _AudioPlan(checkpoint, sampling, chunking, inputs, device)


def _report(paths: Sequence[Path]) -> None:
    for path in paths:
        print(f"wrote {path}")


def _run_audio_command(
    args: argparse.Namespace,
    plan: _AudioPlan,
    run,
    *positional,
    outputs: Callable[[Sequence[str]], list[str]],
    takes_inputs: bool = True,
    **options,
) -> int:
    """Check the outputs, then load the audio model and run one audio command with a progress
    reporter, and list what it wrote. The inputs in ``positional`` / ``options`` are read already.

    ``outputs(stems)``: the file names the command writes into ``--out``, refused up front if they
    exist (unless ``--overwrite``), as is an ``--out`` that cannot be written, so that no loading or
    sampling time is spent on a result that cannot be kept.
    """
    import dataclasses

    from stemforge.insert.outputs import check_out_dir, refuse_existing
    from stemforge.insert.progress import Reporter
    from stemforge.pipelines.chunked import OutputChecks
    from stemforge.pipelines.sampling import default_eta, default_separation_guidance, default_steps

    out = check_out_dir(Path(args.out))
    if plan.checkpoint.stems is not None:
        refuse_existing([out / name for name in outputs(plan.checkpoint.stems)], overwrite=args.overwrite)
    model = _audio_model(args, plan.checkpoint.path, plan.device)
    if plan.checkpoint.stems is None:  # a folder whose JSON does not list them: known now
        refuse_existing([out / name for name in outputs(model.stems)], overwrite=args.overwrite)
    sampling = plan.sampling
    # Options left out take the values the pipeline records (an imported MSG-LD checkpoint: eta 1,
    # separation w from its config; the demonstration model: its measured separation steps), else
    # stemforge's defaults (eta 1, separation w 2, 50 steps).
    if args.steps is None:
        method = args.method if args.command == "separate" else None
        sampling = dataclasses.replace(sampling, steps=default_steps(model, args.command, method))
    sampling.check_schedule(model.schedule.num_steps)
    if args.eta is None:  # the command's task: "audio" inserts a stem
        task = {"audio": "insert"}.get(args.command, args.command)
        sampling = dataclasses.replace(sampling, eta=default_eta(model, task))
    if "guidance" in options and options["guidance"] is None:
        options["guidance"] = default_separation_guidance(model)
    if takes_inputs:
        options["inputs"] = plan.inputs
    options["checks"] = OutputChecks(allow_degenerate=args.allow_degenerate)
    with Reporter(not args.quiet) as reporter:
        paths = run(
            model, *positional, sampling=sampling, chunking=plan.chunking, reporter=reporter, **options
        )
    _report(paths)
    return 0


def _check_pipeline_out(args: argparse.Namespace) -> Path:
    """``--out`` of convert / import-msgld: a new folder, or a pipeline folder with --overwrite, in a
    place that can be written."""
    from stemforge.insert.outputs import writable_ancestor

    out = Path(args.out)
    if out.exists() and not (out / "pipeline.json").is_file():
        raise InsertError(f"--out {out}: exists and is not a pipeline folder; choose a new folder")
    if out.exists() and not args.overwrite:
        raise InsertError(f"--out {out}: already holds a pipeline; pass --overwrite to replace it")
    writable_ancestor(out, "the pipeline folder")
    return out


def _cmd_convert(args: argparse.Namespace) -> int:
    from stemforge.insert.preflight import peek_checkpoint
    from stemforge.pipelines import MultiTrackPipeline, VoiceInsertionPipeline

    out = _check_pipeline_out(args)
    source = peek_checkpoint(Path(args.checkpoint), option="CHECKPOINT")
    if out.exists() and out.resolve() == source.path.resolve():
        raise InsertError(f"--out {out}: is the model being converted; choose a new folder")
    import torch

    cls = VoiceInsertionPipeline if source.kind == "voice-insertion" else MultiTrackPipeline
    pipe = cls.from_pretrained(source.path)
    dtype = {"float32": None, "float16": torch.float16}[args.dtype]
    _report([pipe.save_pretrained(out, dtype)])
    return 0


def _cmd_import_msgld(args: argparse.Namespace) -> int:
    """Convert an original MSG-LD Lightning checkpoint once into a pipeline folder (the original's
    sampler conventions recorded in its pipeline.json). Every input is checked before any work."""
    out = _check_pipeline_out(args)
    ckpt = Path(args.ckpt)
    fix = "give the MSG-LD Lightning checkpoint (.ckpt, e.g. from the Zenodo record)"
    if not ckpt.exists():
        raise InsertError(f"{ckpt}: no such file; {fix}")
    if ckpt.is_dir():
        raise InsertError(
            f"{ckpt}: is a folder, not a Lightning checkpoint file; {fix} (a pipeline folder is used as it is, "
            "with --checkpoint)"
        )
    try:
        with ckpt.open("rb") as handle:
            magic = handle.read(4)
    except OSError as err:
        raise InsertError(f"{ckpt}: cannot be read ({err.strerror or err})") from err
    if not magic:
        raise InsertError(f"{ckpt}: the file is empty (0 bytes); {fix}")
    if not (magic.startswith(b"PK\x03\x04") or magic.startswith(b"\x80")):
        raise InsertError(
            f"{ckpt}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle); give the "
            "MSG-LD Lightning checkpoint (.ckpt)"
        )
    for option, value in (("--config", args.config), ("--vocoder-config", args.vocoder_config)):
        if value is None:
            continue
        path = Path(value)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "no such file"
            raise InsertError(f"{option} {value}: {what}; give the file MSG-LD was trained with")
        if path.stat().st_size == 0:
            raise InsertError(f"{option} {value}: the file is empty; give the file MSG-LD was trained with")
    import torch

    from stemforge.pipelines.msgld import load_msgld_checkpoint

    dtype = {"float32": None, "float16": torch.float16}[args.dtype]
    if not args.quiet:
        print(f"{PROG}: reading {ckpt} ({args.weights} weights)", file=sys.stderr)
    # The config and the vocoder config are read and checked (errors naming their files) before
    # the checkpoint's tensors are.
    pipe = load_msgld_checkpoint(ckpt, args.config, vocoder_config=args.vocoder_config, weights=args.weights)
    _report([pipe.save_pretrained(out, dtype)])
    return 0


def _cmd_separate(args: argparse.Namespace) -> int:
    from stemforge.insert.audio_commands import run_separate
    from stemforge.insert.preflight import check_non_negative

    check_non_negative("--guidance", args.guidance)
    plan = _audio_plan(args)
    if args.method != "cfg":
        plan.sampling.require_ddim(f"--method {args.method}")
    mix = plan.read(args.mix, "mixture")
    return _run_audio_command(
        args,
        plan,
        run_separate,
        mix,
        Path(args.out),
        outputs=lambda stems: [f"{s}.wav" for s in stems],
        method=args.method,
        guidance=args.guidance,
    )


def _cmd_generate(args: argparse.Namespace) -> int:
    from stemforge.insert.audio_commands import run_generate
    from stemforge.insert.preflight import check_positive
    from stemforge.pipelines import MAX_GENERATE_SECONDS

    if not 0 < args.seconds <= MAX_GENERATE_SECONDS:
        raise InsertError(
            f"--seconds {args.seconds}: give a length in (0, {MAX_GENERATE_SECONDS:.0f}] seconds"
        )
    check_positive("--sample-rate", args.sample_rate, " in Hz (or leave it out: the model's rate)")
    plan = _audio_plan(args)
    return _run_audio_command(
        args,
        plan,
        run_generate,
        Path(args.out),
        outputs=lambda stems: [*(f"{s}.wav" for s in stems), "mix.wav", "mix.json"],
        takes_inputs=False,
        seconds=args.seconds,
        sample_rate=args.sample_rate,
        independent_chunks=args.independent_chunks,
    )


def _cmd_arrange(args: argparse.Namespace) -> int:
    from stemforge.insert.audio_commands import parse_given, run_arrange

    given = parse_given(args.given)
    plan = _audio_plan(args, [("--given", name) for name in given])
    plan.sampling.require_ddim("arrangement by inpainting")
    stems = plan.checkpoint.stems
    if stems is not None and set(given) >= set(stems):
        raise InsertError(f"--given names every stem ({', '.join(stems)}); leave out the ones to generate")
    audio = {name: plan.read(path, f"given stem {name}") for name, path in given.items()}
    return _run_audio_command(
        args,
        plan,
        run_arrange,
        audio,
        Path(args.out),
        outputs=lambda stems: [*(f"{s}.wav" for s in stems if s not in given), "mix.wav", "mix.json"],
        independent_chunks=args.independent_chunks,
    )


def _cmd_audio(args: argparse.Namespace) -> int:
    from stemforge.insert.audio_commands import run_insert_audio
    from stemforge.insert.preflight import check_non_negative

    check_non_negative("--guidance", args.guidance)
    plan = _audio_plan(args, [("--stem", args.stem)])
    mix = plan.read(args.mix, "mixture")
    return _run_audio_command(
        args,
        plan,
        run_insert_audio,
        mix,
        args.stem,
        Path(args.out),
        outputs=lambda stems: [f"{args.stem}.wav", "mix.wav", "mix.json"],
        instruction=args.instruction,
        guidance=args.guidance,
    )


def _cmd_accompany(args: argparse.Namespace) -> int:
    from stemforge.insert.audio_commands import run_accompany
    from stemforge.insert.preflight import check_fraction, check_non_negative

    check_non_negative("--guidance", args.guidance)
    check_fraction("--style-strength", args.style_strength)
    check_fraction("--rescale", args.rescale)
    plan = _audio_plan(args, [("--stem", args.stem)])
    mix = plan.read(args.mix, "mixture")
    style = plan.read(args.style, "style reference") if args.style else None
    return _run_audio_command(
        args,
        plan,
        run_accompany,
        mix,
        args.stem,
        Path(args.out),
        outputs=lambda stems: [f"{args.stem}.wav", "mix.wav", "mix.json"],
        style=style,
        style_strength=args.style_strength,
        guidance=args.guidance,
        rescale=args.rescale,
    )


def _cmd_midi(args: argparse.Namespace) -> int:
    """Options, outputs, the checkpoint's JSON and the whole MIDI file are checked before the model
    is loaded."""
    from stemforge.insert.embedded import example_chorale, jsb_checkpoint
    from stemforge.insert.midi_command import insert_midi_stems, parse_stems, read_song
    from stemforge.insert.preflight import check_midi_options, check_positive, peek_checkpoint
    from stemforge.insert.progress import Reporter
    from stemforge.pipelines import VoiceInsertionPipeline

    if args.example and args.song:
        raise InsertError("give either SONG.mid or --example, not both")
    if not args.example and not args.song:
        raise InsertError(
            "name the MIDI file (SONG.mid), or pass --example for the chorale that ships with the app"
        )
    stems = parse_stems(args.stem, args.stems)
    check_midi_options(args.steps, args.temperature)
    if not args.no_preview:
        check_positive("--preview-rate", args.preview_rate, " in Hz")
    _check_midi_outputs(args)
    device = _device(args.device)
    checkpoint = peek_checkpoint(
        Path(args.checkpoint) if args.checkpoint else jsb_checkpoint(), "voice-insertion"
    )
    for stem in stems:
        checkpoint.check_stem(stem)
    song_path = example_chorale() if args.example else Path(args.song)
    with Reporter(not args.quiet) as reporter:
        model = None
        if checkpoint.stems is None:  # a folder whose JSON does not list them: load to know them
            model = VoiceInsertionPipeline.from_pretrained(checkpoint.path, device)
        song = read_song(
            song_path,
            checkpoint.stems or model.stems,  # type: ignore[union-attr]
            stems,
            voice_map=args.map,
            steps_per_quarter=checkpoint.steps_per_quarter if model is None else model.steps_per_quarter,
            reporter=reporter,
        )
        if model is None:
            model = VoiceInsertionPipeline.from_pretrained(checkpoint.path, device)
        paths = insert_midi_stems(
            model,
            song_path,
            stems,
            Path(args.out),
            instruction=args.instruction,
            seed=args.seed,
            steps=args.steps,
            temperature=args.temperature,
            order=args.order,
            no_parallels=not args.allow_parallels,
            preview=not args.no_preview,
            preview_rate=args.preview_rate,
            png=not args.no_png,
            reporter=reporter,
            song=song,
        )
    _report(paths)
    return 0


def _check_midi_outputs(args: argparse.Namespace) -> None:
    """OUT.mid and its OUT.wav / OUT.png: refused up front if they exist (unless --overwrite) or
    cannot be written."""
    from stemforge.insert.outputs import refuse_existing, writable_ancestor

    out = Path(args.out)
    if out.suffix.lower() not in (".mid", ".midi"):
        raise InsertError(f"--out {out}: give a MIDI file name ending in .mid")
    if out.is_dir():
        raise InsertError(f"--out {out}: is a folder; give a file name such as out/song_bass.mid")
    planned = [out]
    if not args.no_preview:
        planned.append(out.with_suffix(".wav"))
    if not args.no_png:
        planned.append(out.with_suffix(".png"))
    refuse_existing(planned, overwrite=args.overwrite)
    writable_ancestor(out)


def _common(p: argparse.ArgumentParser, *, audio: bool = True) -> None:
    p.add_argument("--checkpoint", help="model folder (stemforge-train export); default: the embedded model")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    if not audio:
        return
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="sampling steps (default 50; separate: the checkpoint's recorded steps for the method, else 50; "
        "the embedded model records 10 for cfg and 20 for gaussian, each measured as good as 200 with DDIM: "
        "benchmarks/samplers/RESULTS.md; MSG-LD uses 200)",
    )
    p.add_argument(
        "--sampler",
        default="ddim",
        choices=("ddim", "dpm", "dpm3", "ddpm"),
        help="sampler: ddim, dpm (DPM-Solver++(2M)), dpm3 (DPM-Solver++(3M)) or ddpm (default ddim)",
    )
    p.add_argument(
        "--eta",
        type=float,
        default=None,
        help="DDIM eta (default: the checkpoint's recorded value for the command, else 1, MSG-LD's choice)",
    )
    p.add_argument("--batch-size", type=int, default=1, help="chunks sampled together (default 1)")
    p.add_argument(
        "--chunk-seconds", type=float, default=None, help="chunk length (default: the training segment)"
    )
    p.add_argument(
        "--overlap", type=float, default=0.25, help="crossfaded share of each chunk (default 0.25)"
    )
    p.add_argument("--max-seconds", type=float, default=600.0, help="refuse longer inputs (default 600)")
    p.add_argument("--downmix", action="store_true", help="average the channels of a stereo input")
    p.add_argument(
        "--allow-degenerate",
        action="store_true",
        help="write outputs that fail the checks (NaN, DC, constant, clipped, silent from an audible "
        "input) with a warning instead of stopping with an error",
    )


def _continuation(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--independent-chunks",
        action="store_true",
        help="sample the chunks of long audio independently and crossfade them (default: each chunk "
        "continues the previous one by inpainting, one piece of music)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("midi", help="insert (or regenerate) stems of a multi-track MIDI file")
    p.add_argument("song", nargs="?", help="multi-track MIDI file, tracks named after the stems")
    p.add_argument(
        "--example", action="store_true", help="use the held-out JSB chorale that ships with the app"
    )
    p.add_argument("--stem", help="the stem to insert, e.g. alto")
    p.add_argument("--stems", help="several stems, comma-separated, e.g. alto,tenor")
    p.add_argument("--instruction", help="a text instruction (used by text-conditioned models)")
    p.add_argument("--out", required=True, help="output MIDI file; OUT.wav and OUT.png are written beside it")
    p.add_argument("--steps", type=int, default=None, help="model calls per window (default: one per token)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1)")
    p.add_argument(
        "--order",
        choices=("confidence", "random"),
        default="confidence",
        help="reveal the most probable notes first (default) or in a random order (exact sampling)",
    )
    p.add_argument(
        "--allow-parallels",
        action="store_true",
        help="do not forbid parallel fifths/octaves against the given voices while decoding",
    )
    p.add_argument(
        "--map",
        default=None,
        metavar="VOICE=TRACK,...",
        help="which track plays which voice, by track name or #index (e.g. soprano=Flute,bass=#3); "
        "default: by track name, then General MIDI family, then register (the command lists its choices)",
    )
    p.add_argument("--no-preview", action="store_true", help="do not render OUT.wav")
    p.add_argument("--preview-rate", type=int, default=22050, help="preview sample rate (default 22050)")
    p.add_argument("--no-png", action="store_true", help="do not draw OUT.png")
    _common(p, audio=False)
    p.set_defaults(func=_cmd_midi)

    p = sub.add_parser(
        "convert", help="write a model (a stemforge-train export or a pipeline) as a pipeline folder"
    )
    p.add_argument("checkpoint", help="the model folder to convert")
    p.add_argument("--out", required=True, help="the pipeline folder to write (pipeline.json + components)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is a pipeline folder already"
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float16"),
        help="storage type of the networks' weights (float16 halves the folder; they load into float32)",
    )
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser(
        "import-msgld",
        help="convert an original MSG-LD checkpoint (.ckpt + its YAML) into a pipeline folder",
    )
    p.add_argument("ckpt", help="the MSG-LD PyTorch-Lightning checkpoint (.ckpt)")
    p.add_argument(
        "--config",
        required=True,
        help="the YAML it was trained with (e.g. multichannel_musicldm_slakh_3d_eval.yaml)",
    )
    p.add_argument(
        "--vocoder-config",
        default=None,
        help="the HiFi-GAN JSON (MSG-LD's src/hifigan/config_16k_64.json; default: the released values)",
    )
    p.add_argument(
        "--weights",
        default="ema",
        choices=("ema", "raw"),
        help="the EMA weights (default, what MSG-LD samples with) or the raw ones",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float16"),
        help="storage type of the U-Net's weights (float16 halves the folder; they load into float32)",
    )
    p.add_argument("--out", required=True, help="the pipeline folder to write (pipeline.json + components)")
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it is a pipeline folder already"
    )
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=_cmd_import_msgld)

    p = sub.add_parser("separate", help="separate a mixture into the model's stems")
    p.add_argument("mix", help="mixture audio file (WAV, FLAC, OGG), any length and rate")
    p.add_argument("--out", required=True, help="output folder (one WAV per stem)")
    p.add_argument("--method", default="cfg", choices=("cfg", "dirac", "gaussian"), help="default cfg")
    p.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="CFG scale w (default: the checkpoint's recorded value, e.g. 1 for an imported MSG-LD, else 2)",
    )
    _common(p)
    p.set_defaults(func=_cmd_separate)

    p = sub.add_parser("generate", help="generate all stems from scratch (w = 0)")
    p.add_argument("--out", required=True, help="output folder (one WAV per stem and mix.wav)")
    p.add_argument("--seconds", type=float, default=30.0, help="length (default 30)")
    p.add_argument("--sample-rate", type=int, default=None, help="output rate (default: the model's)")
    _common(p)
    _continuation(p)
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("arrange", help="generate the missing stems around the given ones (inpainting)")
    p.add_argument("--given", required=True, help="STEM=FILE pairs, e.g. bass=B.wav,drums=D.wav")
    p.add_argument("--out", required=True, help="output folder (one WAV per generated stem and mix.wav)")
    _common(p)
    _continuation(p)
    p.set_defaults(func=_cmd_arrange)

    p = sub.add_parser("audio", help="insert a stem into a mixture that lacks it (Subtractive Training)")
    p.add_argument("mix", help="mixture without the stem")
    p.add_argument("--stem", required=True, help="the stem to insert")
    p.add_argument("--instruction", help="text instruction (text-conditioned checkpoints)")
    p.add_argument("--guidance", type=float, default=1.0, help="CFG scale w for conditional checkpoints")
    p.add_argument("--out", required=True, help="output folder (STEM.wav and mix.wav)")
    _common(p)
    p.set_defaults(func=_cmd_audio)

    p = sub.add_parser("accompany", help="accompany a mixture with a stem, optionally in a reference timbre")
    p.add_argument("mix", help="mixture to accompany")
    p.add_argument("--stem", required=True, help="the stem to generate, e.g. bass")
    p.add_argument("--style", help="reference audio whose timbre the stem takes")
    p.add_argument("--style-strength", type=float, default=0.7, help="style grounding lambda in [0, 1]")
    p.add_argument("--guidance", type=float, default=3.0, help="CFG scale w (default 3)")
    p.add_argument("--rescale", type=float, default=0.7, help="CFG rescale phi in [0, 1] (default 0.7)")
    p.add_argument("--out", required=True, help="output folder (STEM.wav and mix.wav)")
    _common(p)
    p.set_defaults(func=_cmd_accompany)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PipelineError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
