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
    from stemforge.train.checkpoint import CheckpointError, export_checkpoint

    try:
        out = export_checkpoint(Path(args.checkpoint), Path(args.out), weights=args.weights)
    except CheckpointError as err:
        raise UserError(str(err)) from err
    print(f"exported {args.weights} weights to {out}")
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
    exp_p.set_defaults(func=_export)

    cache_p = subparsers.add_parser(
        "cache", help="encode a dataset once with a trained codec into latent shards"
    )
    cache_p.add_argument("config", help="the LDM run config whose data section names the dataset")
    cache_p.add_argument("--codec", required=True, help="exported codec folder (codec.save format)")
    cache_p.add_argument("--out", required=True, help="output folder for the latent shards")
    cache_p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    cache_p.set_defaults(func=_cache)
