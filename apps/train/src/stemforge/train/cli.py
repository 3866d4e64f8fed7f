"""Command line of stemforge-train.

Each group of commands lives in its own module and registers itself here:
``data`` (data_cli.py: render and inspect Slakh-format corpora), and the training commands.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

# Modules that provide ``register(subparsers)``; a group is listed once its module exists.
COMMAND_MODULES: tuple[str, ...] = ("stemforge.train.data_cli", "stemforge.train.fit_cli")


class UserError(Exception):
    """A problem with the user's input: printed as one clear message, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stemforge-train", description=__doc__)
    # The DeepSpeed launcher appends --local_rank=N after the module name unless given
    # --no_local_rank; the rank is also in the LOCAL_RANK variable, which is what Fabric reads.
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            # A group whose module has not been written yet is simply not offered.
            continue
        module = importlib.import_module(name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        # One line: messages that quote YAML or soundfont errors carry their newlines.
        print(f"stemforge-train: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stemforge-train: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Under ``python -m`` (torchrun, the DeepSpeed launcher) this module is ``__main__``, and the
    # command modules raise ``stemforge.train.cli.UserError``, a different class than this module's:
    # run the imported module's main so that user errors print as one line, not a traceback.
    from stemforge.train.cli import main as package_main

    raise SystemExit(package_main())
