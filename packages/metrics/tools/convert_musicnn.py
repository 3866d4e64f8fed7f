#!/usr/bin/env python3
"""Convert the MSD_musicnn TF1 checkpoint of the ``musicnn`` wheel into the weights that
stemforge-metrics ships (``src/stemforge/metrics/weights/``).

Usage, from the repository root, in an environment with stemforge-metrics and the musicnn wheel
(installed without its TensorFlow requirement, which is not used here)::

    pip install --no-deps musicnn==0.1.0
    python packages/metrics/tools/convert_musicnn.py            # (re)writes the shipped files
    python packages/metrics/tools/convert_musicnn.py --check    # verifies them, writes nothing

The checkpoint is read by stemforge's own TF1 reader (every tensor CRC-32C checked), loaded into
``MusicnnNet`` by ``load_tf_variables`` (the same code path that ``checkpoint=`` uses), and the
network's float32 state dict is written as safetensors: every parameter and batch-norm running
statistic of the whole model, tag layer included. The Adam moments that the checkpoint also holds
are training state and are left out (which is why the file is a third of the checkpoint's size).
Beside it go ``msd_musicnn.json`` (source, command, sha256) and the musicnn licence text, copied
from the installed wheel's metadata.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from stemforge.metrics.musicnn import MusicnnNet, _read_weights, musicnn_checkpoint_prefix

MODEL = "MSD_musicnn"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "src" / "stemforge" / "metrics" / "weights"
WEIGHTS_FILE = "msd_musicnn.safetensors"
RECORD_FILE = "msd_musicnn.json"
LICENCE_FILE = "musicnn-LICENSE.md"
COMMAND = "python packages/metrics/tools/convert_musicnn.py"
CHECKPOINT_FILES = (".index", ".data-00000-of-00001")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def converted_state_dict() -> dict[str, torch.Tensor]:
    """MusicnnNet's float32 state dict with the MSD_musicnn checkpoint of the installed musicnn wheel."""
    net = MusicnnNet()
    net.load_tf_variables(_read_weights(musicnn_checkpoint_prefix(MODEL)))
    return net.float_state_dict()


def convert(out: Path) -> dict:
    """Write the weights, their record and the licence into ``out``; return the record."""
    dist = importlib.metadata.distribution("musicnn")
    licence = dist.read_text("LICENSE.md")
    if not licence:
        raise SystemExit(
            "the installed musicnn wheel has no LICENSE.md in its metadata; reinstall musicnn==0.1.0"
        )
    prefix = musicnn_checkpoint_prefix(MODEL)  # a folder path ending in a separator
    checkpoint_sha256 = {name: sha256(Path(prefix + name)) for name in CHECKPOINT_FILES}
    state = converted_state_dict()
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        staged = Path(tmp) / WEIGHTS_FILE
        save_file(
            state,
            staged,
            # One key: safetensors writes its metadata map in hash order, which would vary run to run.
            metadata={"source": f"{MODEL} of musicnn {dist.version} (ISC licence, {LICENCE_FILE})"},
        )
        os.chmod(staged, 0o644)
        os.replace(staged, weights)
    record = {
        "model": MODEL,
        "file": WEIGHTS_FILE,
        "sha256": sha256(weights),
        "bytes": weights.stat().st_size,
        "contents": "MusicnnNet (stemforge.metrics.musicnn) state dict: every parameter and batch-norm "
        "running statistic, float32, without the num_batches_tracked counters",
        "tensors": len(state),
        "values": sum(t.numel() for t in state.values()),
        "source": {
            "distribution": "musicnn",
            "version": dist.version,
            "author": dist.metadata["Author"],
            "homepage": dist.metadata["Home-page"],
            "licence": dist.metadata["License"],
            "checkpoint": f"musicnn/{MODEL}/",
            "checkpoint_sha256": checkpoint_sha256,
            "left_out": "the Adam optimiser moments (training state)",
        },
        "licence_file": LICENCE_FILE,
        "command": COMMAND,
    }
    _write_atomic(out / LICENCE_FILE, licence.encode())
    _write_atomic(out / RECORD_FILE, (json.dumps(record, indent=2) + "\n").encode())
    return record


def check(shipped: Path) -> list[str]:
    """Differences between the shipped files and a fresh conversion (empty when they agree)."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh_record = convert(Path(tmp))
        fresh = load_file(Path(tmp) / WEIGHTS_FILE)
        fresh_licence = (Path(tmp) / LICENCE_FILE).read_text()
    weights = shipped / WEIGHTS_FILE
    if not weights.is_file():
        return [f"{weights}: missing; run {COMMAND}"]
    ours = load_file(weights)
    if ours.keys() != fresh.keys():
        problems.append(
            f"{weights}: tensor names differ from the checkpoint's: {sorted(ours.keys() ^ fresh.keys())}"
        )
    for name in sorted(ours.keys() & fresh.keys()):
        if ours[name].dtype != torch.float32 or not torch.equal(ours[name], fresh[name]):
            problems.append(f"{weights}: {name} differs from the checkpoint")
    record = json.loads((shipped / RECORD_FILE).read_text())
    if record["sha256"] != sha256(weights):
        problems.append(f"{shipped / RECORD_FILE}: sha256 does not match {weights.name}")
    if record["source"] != fresh_record["source"]:
        problems.append(f"{shipped / RECORD_FILE}: source differs from the installed musicnn wheel")
    if (shipped / LICENCE_FILE).read_text() != fresh_licence:
        problems.append(f"{shipped / LICENCE_FILE}: differs from the musicnn wheel's LICENSE.md")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=WEIGHTS_DIR, help=f"output folder (default {WEIGHTS_DIR})"
    )
    parser.add_argument(
        "--check", action="store_true", help="verify the files in --out against a fresh conversion"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if not problems:
            print(
                f"{args.out / WEIGHTS_FILE}: equal to the musicnn wheel's {MODEL} checkpoint, tensor for tensor"
            )
        return 1 if problems else 0
    record = convert(args.out)
    print(f"wrote {args.out / WEIGHTS_FILE} ({record['bytes']} bytes, sha256 {record['sha256']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
