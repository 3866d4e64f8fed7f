"""Training tasks: what to build, what to load and which loss to minimise, per model kind."""

from __future__ import annotations

import importlib

from stemforge.train.config import TaskKind, TrainConfig
from stemforge.train.tasks.base import Task

_MODULES: dict[str, str] = {
    "midi": "stemforge.train.tasks.midi",
    "ldm": "stemforge.train.tasks.ldm",
    "mel_vae": "stemforge.train.tasks.codec",
    "vocoder": "stemforge.train.tasks.codec",
    "waveform_ae": "stemforge.train.tasks.codec",
}


def build_task(config: TrainConfig) -> Task:
    """The task object for ``config.task``."""
    kind: TaskKind = config.task
    module = importlib.import_module(_MODULES[kind])
    return module.make_task(config)


__all__ = ["Task", "build_task"]
