"""``stemforge-train fit | export | cache``: train any model kind, export a checkpoint, cache latents."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stemforge.train.cli import UserError


def _fit(args: argparse.Namespace) -> int:
    from stemforge.train.checkpoint import CheckpointError
    from stemforge.train.config import ConfigError, load_config
    from stemforge.train.engine import NonFiniteLossError, fit

    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as err:
        raise UserError(str(err)) from err
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
    from stemforge.pipelines import PipelineError
    from stemforge.train.checkpoint import CheckpointError, export_checkpoint, export_pipeline

    if args.codec and args.format != "pipeline":
        raise UserError(
            "--codec is for --format pipeline (an LDM's pipeline folder holds its codec); remove it"
        )
    try:
        if args.format == "pipeline":
            codec = Path(args.codec) if args.codec else None
            out = export_pipeline(
                Path(args.checkpoint), Path(args.out), weights=args.weights, dtype=args.dtype, codec=codec
            )
        else:
            out = export_checkpoint(
                Path(args.checkpoint), Path(args.out), weights=args.weights, dtype=args.dtype
            )
    except (CheckpointError, PipelineError) as err:
        raise UserError(str(err)) from err
    what = "a pipeline folder" if args.format == "pipeline" else "model.safetensors + config.json"
    print(f"exported {args.weights} weights ({args.dtype}) as {what} to {out}")
    return 0


def _cache(args: argparse.Namespace) -> int:
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


def _codec_bundle(args: argparse.Namespace) -> int:
    import torch

    from stemforge.train.checkpoint import CheckpointError
    from stemforge.train.codec_bundle import bundle_mel_codec
    from stemforge.train.config import ConfigError, load_config
    from stemforge.train.datasets import audio_segments
    from stemforge.train.options import AudioData

    batches = None
    if args.scale_config:
        try:
            config = load_config(args.scale_config, args.overrides)
        except ConfigError as err:
            raise UserError(str(err)) from err
        data = config.options(str(args.scale_config)).data
        if not isinstance(data, AudioData):
            raise UserError(
                f"{args.scale_config}: task {config.task!r} reads no audio; give a codec or LDM config"
            )
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

    exp_p = subparsers.add_parser("export", help="consolidate a ZeRO checkpoint into safetensors + JSON")
    exp_p.add_argument("checkpoint", help="a run folder or checkpoints/step-XXXXXXXX folder")
    exp_p.add_argument("out", help="new output folder (model.safetensors + config.json)")
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
        choices=("flat", "pipeline"),
        default="flat",
        help="flat: model.safetensors + config.json (run.init_from, codec assembly); pipeline: a "
        "stemforge-pipelines folder for from_pretrained and the stemforge-insert / -evaluate commands "
        "(ldm and midi runs)",
    )
    exp_p.add_argument(
        "--codec",
        help="with --format pipeline, the LDM's codec folder (default: the data.codec it was trained with)",
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
    nll_p.add_argument("--out", help="write the results as JSON to this file")
    nll_p.set_defaults(func=_midi_nll)
