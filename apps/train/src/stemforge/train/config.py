"""Typed training configuration: YAML file + ``--set key=value`` overrides -> frozen dataclasses.

A run config has five sections. ``model`` and ``data`` are free-form mappings handed to the task
(each task validates them against its package's own config class); ``optim``, ``dist`` and ``run``
are fixed here. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

TaskKind = Literal["mel_vae", "vocoder", "waveform_ae", "ldm", "midi"]
Precision = Literal["auto", "32-true", "bf16-mixed", "bf16-true"]
Accelerator = Literal["auto", "cpu", "gpu"]


class ConfigError(ValueError):
    """A configuration problem; the message names the file or key, the problem and the fix."""


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up, an optional cosine decay, global-norm clipping and an EMA of the weights.

    ``decay: cosine`` lowers the learning rate from ``lr`` after the warm-up to ``min_lr_ratio * lr``
    at step ``decay_steps`` (0: ``run.max_steps``); ``constant`` (MSG-LD's recipe) keeps ``lr``.
    """

    lr: float = 3e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.01
    eps: float = 1e-8
    warmup_steps: int = 1000
    decay: Literal["constant", "cosine"] = "constant"
    decay_steps: int = 0
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.decay_steps < 0:
            raise ConfigError(
                f"optim.decay_steps must be 0 (run.max_steps) or a positive step, got {self.decay_steps}"
            )
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")

    grad_clip: float = 1.0
    ema_decay: float = 0.9999


@dataclass(frozen=True)
class DistConfig:
    """Devices and the DeepSpeed strategy (ZeRO stage 2 by default)."""

    accelerator: Accelerator = "auto"
    devices: int = 1
    num_nodes: int = 1
    zero_stage: Literal[0, 1, 2, 3] = 2
    offload_optimizer: bool = False
    offload_parameters: bool = False
    precision: Precision = "auto"
    activation_checkpointing: bool = False
    port: int | None = None


@dataclass(frozen=True)
class RunConfig:
    """Loop lengths, batch sizes, logging and checkpoint cadence."""

    out_dir: str = "runs/default"
    max_steps: int = 1000
    batch_size: int = 4
    grad_accum: int = 1
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    val_every: int = 500
    val_batches: int = 4
    ckpt_every: int = 500
    keep_last: int = 3
    tensorboard: bool = False
    progress: bool = True
    fixed_batch: bool = False
    """Train on the first batch only (overfit check)."""
    init_from: str | None = None
    """A `stemforge-train export` folder whose weights start the run (fresh optimiser and warm-up);
    a resumed run continues from its own checkpoint instead."""


#: The numbers of a run config that the loop divides by, counts down or loops over: (key, least, what).
_RUN_MINIMUMS: tuple[tuple[str, int, str], ...] = (
    ("run.max_steps", 1, "optimizer steps to train"),
    ("run.batch_size", 1, "items per micro-batch"),
    ("run.grad_accum", 1, "micro-batches per step"),
    ("run.log_every", 1, "steps between log lines"),
    ("run.ckpt_every", 1, "steps between checkpoints"),
    ("run.keep_last", 1, "checkpoints to keep; 0 would delete the newest too"),
    ("run.val_batches", 1, "validation batches"),
    ("run.val_every", 0, "steps between validations; 0 turns validation off"),
    ("run.num_workers", 0, "data-loader processes"),
    ("dist.devices", 1, "processes per node"),
    ("dist.num_nodes", 1, "nodes"),
    ("optim.warmup_steps", 0, "warm-up steps"),
)


@dataclass(frozen=True)
class TrainConfig:
    task: TaskKind
    name: str = "run"
    model: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<config>") -> TrainConfig:
        """Validate ``raw``, the task's ``model`` and ``data`` sections included (``task_options``)."""
        config = _build(cls, raw, source, "")
        config.check_numbers(source)
        config.options(source)
        return config

    def check_numbers(self, source: str = "<config>") -> None:
        """Steps, batch sizes, cadences and optimizer numbers that the loop divides by, counts down
        or loops over: a value out of range is a :class:`ConfigError` naming the key and the fix."""
        for key, least, what in _RUN_MINIMUMS:
            section, name = key.split(".")
            value = getattr(getattr(self, section), name)
            if value < least:
                wanted = "at least 1" if least == 1 else f"a value >= {least}"
                raise ConfigError(
                    f"{source}: {key} = {value} ({what}); give {wanted}, e.g. --set {key}={max(least, 1)}"
                )
        optim = self.optim
        if not (math.isfinite(optim.lr) and optim.lr > 0):
            raise ConfigError(
                f"{source}: optim.lr = {optim.lr}; give a learning rate > 0, e.g. --set optim.lr=1e-4"
            )
        if not 0.0 <= optim.ema_decay <= 1.0:
            raise ConfigError(
                f"{source}: optim.ema_decay = {optim.ema_decay}; give a value in [0, 1], e.g. 0.999"
            )
        if not optim.grad_clip >= 0:
            raise ConfigError(
                f"{source}: optim.grad_clip = {optim.grad_clip}; give a norm >= 0 (0 turns clipping off)"
            )

    def options(self, source: str = "<config>") -> Any:
        """The typed ``model`` and ``data`` sections of this config's task (``stemforge.train.options``)."""
        from stemforge.train.options import task_options

        return task_options(self.task, self.model, self.data, source)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _check_value(tp: Any, value: Any, where: str, source: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{source}: {where} = {value!r} is not one of {list(get_args(tp))}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "2e-4" (no dot) as a string.
            with contextlib.suppress(ValueError):
                value = float(value)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: {where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where} must be a string, got {value!r}")
        return value
    if origin is tuple and len(get_args(tp)) == 2 and get_args(tp)[1] is Ellipsis:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {where} must be a list, got {value!r}")
        return tuple(_check_value(get_args(tp)[0], v, f"{where}[{i}]", source) for i, v in enumerate(value))
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{source}: {where} must be a list of {len(args)} values, got {value!r}")
        return tuple(_check_value(a, v, f"{where}[{i}]", source) for i, (a, v) in enumerate(zip(args, value)))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for candidate in inner:
            try:
                return _check_value(candidate, value, where, source)
            except ConfigError as err:
                errors.append(err)
        raise (
            errors[0]
            if len(inner) == 1
            else ConfigError(
                f"{source}: {where} = {value!r} is none of the accepted forms ({'; '.join(str(e).split(': ', 1)[-1] for e in errors)})"
            )
        )
    if dataclasses.is_dataclass(tp):
        return _build(typing.cast(type, tp), value, source, f"{where}.")
    if origin is Mapping or tp is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: {where} must be a mapping, got {value!r}")
        return dict(value)
    return value


def build_section(cls: type, raw: Any, source: str, prefix: str) -> Any:
    """A frozen dataclass ``cls`` from the mapping ``raw`` read at ``prefix`` of the file ``source``:
    unknown keys, missing required keys and values of the wrong type are ``ConfigError``s naming the
    key (and, for unknown keys, the valid ones)."""
    return _build(cls, raw, source, prefix)


def _build(cls: type, raw: Any, source: str, prefix: str) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: section {prefix or '<root>'} must be a mapping, got {type(raw).__name__}"
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(prefix + str(k) for k in unknown)}; "
            f"valid keys here are {sorted(names)}"
        )
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{source}: missing required key {prefix}{f.name}")
            continue
        tp = hints[f.name]
        value = raw[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(typing.cast(type, tp), value, source, f"{prefix}{f.name}.")
        else:
            kwargs[f.name] = _check_value(tp, value, prefix + f.name, source)
    return cls(**kwargs)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested mapping, returning a copy."""
    out = _plain(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set run.max_steps=100")
        value = yaml.safe_load(text) if text else ""
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML run config, apply ``--set`` overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; pass a YAML file such as configs/tiny-midi.yaml")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err}); fix the syntax") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with a 'task' key")
    return TrainConfig.from_dict(apply_overrides(raw, overrides), source=str(path))
