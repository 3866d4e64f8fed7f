"""The interface between the training loop and a model kind.

Besides the :class:`Task` protocol's methods, a task may define these optional hooks (the loop looks
them up with ``getattr`` and falls back to the defaults, so older tasks keep working):

- ``param_groups(model) -> list[dict]``: AdamW parameter groups, each with ``params`` and ``name`` and
  optionally its own ``lr``, ``betas``, ``weight_decay``, ``eps`` and ``start_step`` (the group's
  learning rate is 0 before that optimizer step). Default: one group ``"model"`` of every trainable
  parameter with the ``optim`` section's settings.
- ``export_module(model) -> nn.Module``: the part of the training module that is exported and
  averaged by the EMA (a generator trained together with its discriminators). Default: the model.
- ``on_step_start(step) -> None``: called before each optimizer step with its 0-based index.
"""

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


def optimizer_groups(task: Any, model: nn.Module) -> list[dict[str, Any]]:
    """The task's AdamW parameter groups (hook ``param_groups``), or one group of every trainable parameter."""
    hook = getattr(task, "param_groups", None)
    if hook is None:
        return [{"name": "model", "params": [p for p in model.parameters() if p.requires_grad]}]
    groups = [dict(group) for group in hook(model)]
    for i, group in enumerate(groups):
        if "params" not in group or "name" not in group:
            raise ValueError(f"{type(task).__name__}.param_groups: group {i} needs 'params' and 'name'")
    return groups


def export_module(task: Any, model: nn.Module) -> nn.Module:
    """The exported (and EMA-averaged) part of ``model`` (hook ``export_module``), or ``model``."""
    hook = getattr(task, "export_module", None)
    return model if hook is None else hook(model)


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
