"""``stemforge-train fit | export | cache | codec-bundle | midi-nll``: train any model kind, export a
checkpoint, cache latents, assemble a mel codec, score a MIDI model. Each command runs its checks of
``stemforge.train.preflight`` first, then imports and starts its work."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stemforge.train.cli import UserError


def _fit(args: argparse.Namespace) -> int:
    from stemforge.train.preflight import check_fit, read_config

    config = read_config(args.config, args.overrides)
    check_fit(config, str(args.config))  # before DeepSpeed starts (on every rank)

    from stemforge.train.checkpoint import CheckpointError
    from stemforge.train.config import ConfigError
    from stemforge.train.engine import NonFiniteLossError, fit

    try:
        result = fit(config)
    except (ConfigError, CheckpointError, ValueError) as err:
        raise UserError(str(err)) from err
    except NonFiniteLossError as err:
        print(f"stemforge-train: stopped: {err}", file=sys.stderr)
        return 3
    if result.rank == 0:
        print(f"finished at step {result.step}; last checkpoint: {result.last_checkpoint}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from stemforge.train.checkpoint import PIPELINE_TASKS, recorded_codec
    from stemforge.train.preflight import check_codec_folder, check_new_folder, check_run_source

    if args.codec and args.format == "flat":
        raise UserError(
            "--codec with --format flat: a flat export holds no codec (--codec names an LDM's codec for its "
            "pipeline folder); remove --codec, or leave out --format flat"
        )
    meta = check_run_source(args.checkpoint)
    task = (meta.get("export") or {}).get("task")
    codec = Path(args.codec) if args.codec else None
    pipeline = args.format == "pipeline" or (args.format == "auto" and task in PIPELINE_TASKS)
    if args.format == "pipeline" and task not in PIPELINE_TASKS:
        raise UserError(
            f"CHECKPOINT {args.checkpoint}: a {task!r} run is a pipeline component, not a pipeline; export it "
            "without --format pipeline (a codec goes into a pipeline as its codec/ folder)"
        )
    if codec is not None and task != "ldm":
        holds = (
            "a 'midi' run, whose pipeline holds no codec"
            if task == "midi"
            else f"a {task!r} run, exported flat (config.json + model.safetensors) without a codec"
        )
        raise UserError(f"--codec {codec}: CHECKPOINT {args.checkpoint} is {holds}; leave out --codec")
    if pipeline and task == "ldm":
        if codec is not None:
            check_codec_folder(codec, "--codec")
        else:
            found = recorded_codec(meta)
            if found.path is None:
                flat = ", or --format flat to export the U-Net alone" if args.format == "auto" else ""
                raise UserError(
                    f"CHECKPOINT {args.checkpoint}: found no codec for the LDM's pipeline folder ({found.missing}); "
                    f"pass --codec DIR (the codec it was trained with, `Codec.save` format){flat}"
                )
            check_codec_folder(found.path, found.source, f"CHECKPOINT {args.checkpoint}: ")
            codec = found.path
    check_new_folder(Path(args.out), "OUT", empty_ok=not pipeline)

    from stemforge.pipelines import PipelineError
    from stemforge.train.checkpoint import CheckpointError, export_checkpoint, export_pipeline

    try:
        if pipeline:
            out = export_pipeline(
                Path(args.checkpoint), Path(args.out), weights=args.weights, dtype=args.dtype, codec=codec
            )
        else:
            out = export_checkpoint(
                Path(args.checkpoint), Path(args.out), weights=args.weights, dtype=args.dtype
            )
    except (CheckpointError, PipelineError) as err:
        raise UserError(str(err)) from err
    what = "model.safetensors + config.json"
    if pipeline:
        what = "a pipeline folder" + (f" with the codec {codec}" if codec is not None else "")
    print(f"exported {args.weights} weights ({args.dtype}) as {what} to {out}")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from stemforge.train.preflight import check_cache, read_config

    config = read_config(args.config, args.overrides)
    check_cache(config, str(args.config), Path(args.codec), Path(args.out))  # before loading the codec

    from stemforge.train.cache import build_latent_cache
    from stemforge.train.config import ConfigError

    try:
        summary = build_latent_cache(
            Path(args.codec), Path(args.out), config_path=Path(args.config), overrides=args.overrides
        )
    except (ConfigError, ValueError, FileNotFoundError) as err:
        raise UserError(str(err)) from err
    print(summary)
    return 0


def _midi_nll(args: argparse.Namespace) -> int:
    from stemforge.train.preflight import check_at_least, check_midi_model, check_out_file

    check_at_least("--length", args.length, 1, " (16th-note steps per window)")
    check_at_least("--batch-size", args.batch_size, 1, " (windows per model call)")
    check_at_least("--max-windows", args.max_windows, 1, " (or leave it out: every window)")
    check_at_least("--threads", args.threads, 0, " (0: torch's default)")
    multiple = check_midi_model(args.model)
    if args.length % multiple:
        raise UserError(
            f"--length {args.length}: the model's U-Net needs a multiple of {multiple} steps; give e.g. "
            f"{max(multiple, args.length - args.length % multiple)}"
        )
    _check_windows(args.splits, args.length)
    if args.out:
        check_out_file(Path(args.out), "--out")

    import json

    import torch

    from stemforge.train.checkpoint import CheckpointError, write_json_atomic
    from stemforge.train.midi_eval import jsb_framewise_nll, load_midi_model

    try:
        model, config = load_midi_model(Path(args.model))
    except (CheckpointError, ValueError) as err:
        raise UserError(str(err)) from err
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for split in args.splits:
        result = jsb_framewise_nll(
            model,
            split,
            length=args.length,
            windows=args.windows,
            batch_size=args.batch_size,
            seed=args.seed,
            max_windows=args.max_windows,
        )
        result["model"] = str(args.model)
        result["step"] = config.get("step")
        results.append(result)
        print(
            f"{split}: framewise NLL {result['framewise_nll']:.4f} +- {result['stderr']:.4f} nats "
            f"({result['num_windows']} windows of {args.length} steps, {result['seconds']:.0f} s)"
        )
    if args.out:
        write_json_atomic(Path(args.out), results)
    else:
        print(json.dumps(results, indent=2))
    return 0


def _check_windows(splits: list[str], length: int) -> None:
    """Every split has a chorale of at least ``length`` steps (else there is no window to score)."""
    from stemforge.midi import load_jsb

    for split in splits:
        longest = max(chorale.shape[-1] for chorale in load_jsb(split))  # type: ignore[arg-type]
        if longest < length:
            raise UserError(
                f"--length {length}: no chorale of the JSB {split} split is that long (the longest has {longest} "
                f"steps); give at most {longest}"
            )


def _codec_bundle(args: argparse.Namespace) -> int:
    from stemforge.train.preflight import (
        check_at_least,
        check_export,
        check_new_folder,
        check_scale_config,
        read_config,
    )

    check_at_least("--scale-items", args.scale_items, 1, " (training segments for the scale factor)")
    if args.overrides and not args.scale_config:
        raise UserError("--set applies to --scale-config; add --scale-config CONFIG or remove --set")
    config = None
    if args.scale_config:
        config = read_config(args.scale_config, args.overrides, "--scale-config")
        check_scale_config(config, str(args.scale_config))
    check_export(args.vae, "--vae", "mel_vae", "codec-bundle --vae")
    if args.vocoder:
        check_export(args.vocoder, "--vocoder", "vocoder", "codec-bundle --vocoder")
    check_new_folder(Path(args.out), "--out", overwrite=args.overwrite)

    import torch

    from stemforge.train.checkpoint import CheckpointError
    from stemforge.train.codec_bundle import bundle_mel_codec
    from stemforge.train.datasets import audio_segments

    batches = None
    if config is not None:
        data = config.options(str(args.scale_config)).data
        stems = data.stems
        samples = round(data.segment_seconds * 16000)
        dataset = audio_segments(data, "train", stems, 16000, samples)
        count = min(len(dataset), args.scale_items)  # type: ignore[arg-type]
        batches = (torch.stack([dataset[i] for i in range(j, min(j + 4, count))]) for j in range(0, count, 4))
    try:
        out = bundle_mel_codec(
            Path(args.vae),
            Path(args.out),
            vocoder_dir=Path(args.vocoder) if args.vocoder else None,
            scale_batches=batches,
        )
    except CheckpointError as err:
        raise UserError(str(err)) from err
    print(f"wrote codec {out}")
    return 0


def register(subparsers: Any) -> None:
    fit_p = subparsers.add_parser("fit", help="train a codec, LDM or MIDI model from a YAML config")
    fit_p.add_argument("config", help="YAML run config, e.g. configs/tiny-midi.yaml")
    fit_p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value (repeatable), e.g. --set run.max_steps=100",
    )
    fit_p.set_defaults(func=_fit)

    exp_p = subparsers.add_parser(
        "export",
        help="write a checkpoint's weights as a pipeline folder (ldm, midi runs) or model.safetensors + "
        "config.json (codec runs)",
    )
    exp_p.add_argument("checkpoint", help="a run folder or checkpoints/step-XXXXXXXX folder")
    exp_p.add_argument("out", help="new output folder")
    exp_p.add_argument(
        "--weights", choices=("ema", "raw"), default="ema", help="EMA (default) or raw weights"
    )
    exp_p.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="storage type of the weights (loaded into float32 parameters); float16 halves the file",
    )
    exp_p.add_argument(
        "--format",
        choices=("auto", "pipeline", "flat"),
        default="auto",
        help="pipeline: a stemforge-pipelines folder for from_pretrained and the stemforge-insert / "
        "-evaluate commands (ldm and midi runs); flat: model.safetensors + config.json (a codec run's own "
        "format; of an ldm or midi run, its network alone, as ldm_eval reads it); auto (default): "
        "pipeline for ldm and midi runs, flat for the others",
    )
    exp_p.add_argument(
        "--codec",
        metavar="DIR",
        help="an LDM's pipeline export: its codec folder (default: the run's data.codec, else the codec "
        "its data.latent_cache was encoded with)",
    )
    exp_p.set_defaults(func=_export)

    cache_p = subparsers.add_parser(
        "cache", help="encode a dataset once with a trained codec into latent shards"
    )
    cache_p.add_argument("config", help="the LDM run config whose data section names the dataset")
    cache_p.add_argument("--codec", required=True, help="exported codec folder (codec.save format)")
    cache_p.add_argument("--out", required=True, help="output folder for the latent shards")
    cache_p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    cache_p.set_defaults(func=_cache)

    bundle_p = subparsers.add_parser(
        "codec-bundle", help="assemble a MelVAECodec from exported mel_vae / vocoder runs"
    )
    bundle_p.add_argument("--vae", required=True, help="exported mel_vae run")
    bundle_p.add_argument("--vocoder", help="exported vocoder run (default: an untrained tiny vocoder)")
    bundle_p.add_argument("--out", required=True, help="output codec folder")
    bundle_p.add_argument(
        "--scale-config", help="config whose data section gives the audio for the scale factor"
    )
    bundle_p.add_argument("--scale-items", type=int, default=64)
    bundle_p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    bundle_p.add_argument(
        "--overwrite", action="store_true", help="replace an existing --out folder (default: refuse it)"
    )
    bundle_p.set_defaults(func=_codec_bundle)

    nll_p = subparsers.add_parser(
        "midi-nll", help="framewise chain-rule NLL of an exported MIDI model on JSB splits"
    )
    nll_p.add_argument("model", help="exported MIDI model folder (stemforge-train export)")
    nll_p.add_argument("--splits", nargs="+", default=["valid", "test"], choices=("train", "valid", "test"))
    nll_p.add_argument("--length", type=int, default=32, help="window length in 16th-note steps")
    nll_p.add_argument("--windows", choices=("first", "all"), default="first")
    nll_p.add_argument("--batch-size", type=int, default=128)
    nll_p.add_argument("--seed", type=int, default=0)
    nll_p.add_argument("--max-windows", type=int, default=None, help="score only the first N windows")
    nll_p.add_argument("--threads", type=int, default=0)
    nll_p.add_argument("--out", help="write the results as JSON to this file (replaced if it exists)")
    nll_p.set_defaults(func=_midi_nll)
