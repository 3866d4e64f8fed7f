"""The interface between the training loop and a model kind."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset


class Task(Protocol):
    """One model kind. The loop owns devices, ZeRO, EMA, checkpoints and logs; a task owns the rest."""

    def build_model(self) -> nn.Module:
        """A freshly initialised network (same seed on every rank gives the same weights)."""
        ...

    def train_dataset(self) -> Dataset: ...

    def val_dataset(self) -> Dataset | None: ...

    def collate(self, items: list[Any]) -> Any: ...

    def loss(
        self, model: nn.Module, batch: Any, generator: torch.Generator
    ) -> tuple[Tensor, Mapping[str, float]]:
        """Scalar loss of one micro-batch (on the model's device) and extra scalars to log."""
        ...

    def export_meta(self) -> dict[str, Any]:
        """JSON describing the model for ``export``: ``model_class``, ``model_config``, stem names, ..."""
        ...

    def on_validation(self, model: nn.Module, out_dir: Path, step: int) -> None:
        """Optional extra validation output (e.g. decoded audio samples); rank 0 only."""
        ...


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def package_versions(*names: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in ("torch", "stemforge-train", *names):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out
