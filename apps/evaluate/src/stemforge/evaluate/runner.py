"""Sharding, per-item results and resumption.

Items (tracks, chorales) are dealt to processes round-robin by accelerate's ``PartialState``: under
``accelerate launch --num_processes K`` process r takes items r, r + K, ...; a plain
``stemforge-evaluate`` is one process with every item. Each item's metrics go to their own JSON
file, written atomically, and an item whose file exists (with the same settings) is skipped: an
interrupted run resumes where it stopped. Every random draw of an item is seeded from the item's
index, never from the process, so sharding does not change a single number. When all processes
are done, the main process reads the item files back and computes the set-level figures.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")


class EvaluationError(ValueError):
    """A run that cannot go on as asked; the message names the input and the fix."""


def write_json_atomic(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)
    return path


@dataclass
class Shard:
    """This process's share of the work (accelerate's ``PartialState``)."""

    index: int = 0
    count: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    _state: Any = None

    @classmethod
    def current(cls, cpu: bool = False) -> Shard:
        """The shard of this process: accelerate's launch environment, or one process."""
        from accelerate import PartialState

        state = PartialState(cpu=cpu)
        device = torch.device(state.device)
        if device.type == "cpu":
            # Each process gets its share of the cores (torch would give every process all of them),
            # and no more than OMP_NUM_THREADS when that is set. Float sums depend on the thread
            # count, so runs compare exactly only at the same number of threads per process.
            share = max(1, (os.cpu_count() or 1) // state.num_processes)
            limit = os.environ.get("OMP_NUM_THREADS", "").strip()
            torch.set_num_threads(min(share, int(limit)) if limit.isdigit() and int(limit) > 0 else share)
        return cls(state.process_index, state.num_processes, device, state)

    @property
    def is_main(self) -> bool:
        return self.index == 0

    def mine(self, items: Sequence[T]) -> Iterator[tuple[int, T]]:
        """(global index, item) of the items this process evaluates."""
        for i in range(self.index, len(items), self.count):
            yield i, items[i]

    def wait(self) -> None:
        if self._state is not None:
            self._state.wait_for_everyone()


class ItemStore:
    """Per-item JSON results under ``out/items/``, each tagged with the run's settings."""

    def __init__(self, out: Path, settings: dict[str, Any], overwrite: bool = False) -> None:
        self.folder = out / "items"
        self.settings = settings
        self.overwrite = overwrite

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def done(self, key: str) -> bool:
        """True when the item is already there with these settings; an item of other settings is an
        error (a new --out, or --overwrite), not silently mixed in."""
        path = self.path(key)
        if not path.is_file():
            return False
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return False  # a file cut short is evaluated again
        if saved.get("settings") != self.settings:
            if self.overwrite:
                return False
            raise EvaluationError(
                f"{path}: holds a result of other settings ({_diff(saved.get('settings') or {}, self.settings)}); "
                "give a new --out, or --overwrite to evaluate again"
            )
        return True

    def save(self, key: str, result: dict[str, Any]) -> None:
        write_json_atomic(self.path(key), {"settings": self.settings, **result})

    def load(self, key: str) -> dict[str, Any]:
        return json.loads(self.path(key).read_text())

    def save_embeddings(self, key: str, embeddings: dict[str, torch.Tensor]) -> None:
        """An item's embeddings beside its JSON (``<key>.safetensors``), written atomically and
        before the item is saved, so a stored item always has them."""
        from safetensors.torch import save_file

        path = self.path(key).with_suffix(".safetensors")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({k: v.contiguous() for k, v in embeddings.items()}, tmp)
        tmp.replace(path)

    def load_embeddings(self, key: str) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file

        return load_file(self.path(key).with_suffix(".safetensors"))


def _diff(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:4]) or "unreadable settings"


def track_keys(protocol: str, names: Sequence[str]) -> list[str]:
    """The item keys of a protocol's tracks; two tracks of one name would share their results."""
    keys = [f"{protocol}/{name}" for name in names]
    if len(set(keys)) != len(keys):
        raise EvaluationError(
            "two tracks of the test set have the same name; give each track its own folder name"
        )
    return keys


def run_items(
    shard: Shard,
    store: ItemStore,
    keys: Sequence[str],
    evaluate: Callable[[int], dict[str, Any]],
    progress: Callable[[str], None] | None = None,
) -> int:
    """Evaluate this process's items not yet stored; returns how many it evaluated."""
    todo = [(i, key) for i, key in shard.mine(keys) if not store.done(key)]
    for n, (i, key) in enumerate(todo):
        store.save(key, {**evaluate(i), "process": f"{shard.index + 1}/{shard.count}"})
        if progress is not None:
            progress(f"[{shard.index + 1}/{shard.count}] {key} ({n + 1}/{len(todo)})")
    return len(todo)
