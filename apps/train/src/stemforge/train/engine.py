"""The training loop shared by every model kind (Lightning Fabric + DeepSpeed ZeRO).

Per optimizer step: ``grad_accum`` micro-batches (DeepSpeed accumulates and clips), AdamW with
linear warm-up, an EMA update, CSV/TensorBoard logging, periodic validation and checkpoints. All
randomness of step s on rank r (noise, timesteps, masks, dropout) is drawn from generators seeded by
(seed, r, s), so restoring the step and the data position restores the random stream too: a
resumed run continues the uninterrupted run's loss curve exactly. A checkpoint gathers the ZeRO
partitions into whole tensors (:mod:`stemforge.train.zero_state`) that rank 0 writes as safetensors +
JSON (:mod:`stemforge.train.checkpoint`); a task may add AdamW parameter groups, name the exported
submodule and follow the step through the optional hooks listed in :mod:`stemforge.train.tasks.base`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import yaml
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader

from stemforge.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_FORMAT_VERSION,
    EMA_FILE,
    OPTIMIZER_FILE,
    WEIGHTS_FILE,
    checkpoint_name,
    finalize_checkpoint,
    latest_checkpoint,
    read_full_state,
    read_meta,
    write_text_atomic,
)
from stemforge.train.config import TrainConfig
from stemforge.train.curves import CurvesWriter
from stemforge.train.ema import EMA
from stemforge.train.lr import scheduled_lr
from stemforge.train.sampler import DataPosition, ShardedBatchSampler
from stemforge.train.strategy import make_fabric, resolve_accelerator, resolve_precision
from stemforge.train.tasks import build_task
from stemforge.train.tasks.base import Task, export_module, optimizer_groups, to_device
from stemforge.train.zero_state import check_supported, engine_of, gather_full_state, load_full_state


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the message names the step and the last good checkpoint."""


@dataclass
class FitResult:
    step: int
    rank: int
    last_checkpoint: Path | None
    losses: dict[int, float] = field(default_factory=dict)
    val_losses: dict[int, float] = field(default_factory=dict)


def step_seed(seed: int, rank: int, step: int, micro: int) -> int:
    """A distinct 63-bit seed per (run seed, rank, optimizer step, micro-batch)."""
    value = (seed * 0x9E3779B1 + rank * 0x85EBCA77 + step * 0xC2B2AE3D + micro * 0x27D4EB2F) & ((1 << 63) - 1)
    return value or 1


def _module_prefix(root: nn.Module, part: nn.Module) -> str:
    """State-dict prefix of submodule ``part`` inside ``root`` ("" for the root itself)."""
    for name, module in root.named_modules():
        if module is part:
            return f"{name}." if name else ""
    raise ValueError("the task's export_module is not a submodule of its training model")


_ENGINE_COUNTERS = ("global_steps", "global_samples", "micro_steps", "skipped_steps")


def _engine_counters(engine: Any) -> dict[str, int]:
    return {name: int(getattr(engine, name)) for name in _ENGINE_COUNTERS}


def _set_engine_counters(engine: Any, counters: Mapping[str, int]) -> None:
    for name in _ENGINE_COUNTERS:
        setattr(engine, name, int(counters[name]))


class RunLog:
    """Rank-0 CSV (+ optional TensorBoard) metrics; resuming truncates rows after the resumed step."""

    FIELDS = ("step", "split", "loss", "lr", "samples_per_s", "extra")

    def __init__(self, out_dir: Path, tensorboard: bool, resume_step: int | None) -> None:
        self.path = out_dir / "metrics.csv"
        rows: list[dict[str, str]] = []
        if resume_step is not None and self.path.is_file():
            with self.path.open() as fh:
                rows = [r for r in csv.DictReader(fh) if int(r["step"]) <= resume_step]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomic(self.path, buf.getvalue())
        self._fh = self.path.open("a", newline="")
        self._csv = csv.DictWriter(self._fh, fieldnames=self.FIELDS)
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise RuntimeError(
                    "run.tensorboard is true but tensorboard is not installed; "
                    "install it with `pip install 'stemforge-train[tensorboard]'` or set run.tensorboard=false"
                ) from err
            self._tb = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step)

    def write(
        self, step: int, split: str, loss: float, lr: float, samples_per_s: float, extra: Mapping[str, float]
    ) -> None:
        self._csv.writerow(
            {
                "step": step,
                "split": split,
                "loss": repr(loss),
                "lr": repr(lr),
                "samples_per_s": f"{samples_per_s:.3f}",
                "extra": ";".join(f"{k}={v:.6g}" for k, v in sorted(extra.items())),
            }
        )
        self._fh.flush()
        if self._tb is not None:
            self._tb.add_scalar(f"{split}/loss", loss, step)
            if split == "train":
                self._tb.add_scalar("train/lr", lr, step)
                self._tb.add_scalar("train/samples_per_s", samples_per_s, step)
            for key, value in extra.items():
                self._tb.add_scalar(f"{split}/{key}", value, step)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


class _Progress:
    """A rich progress bar on a terminal; plain log lines otherwise."""

    def __init__(self, enabled: bool, total: int, start: int) -> None:
        self.enabled = enabled
        self._bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeRemainingColumn(),
            )
            self._bar.start()
            self._task = self._bar.add_task("train", total=total, completed=start, status="")

    def update(self, step: int, status: str, log_line: bool) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step, status=status)
        elif self.enabled and log_line:
            print(f"step {step}: {status}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _loader(task: Task, dataset: Any, sampler: Any, num_workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=task.collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


def _validate(
    fabric: Any, task: Task, model: Any, dataset: Any, config: TrainConfig
) -> tuple[float, dict[str, float]]:
    """Mean loss and mean extra terms over ``run.val_batches`` fixed batches (same noise every time)."""
    run = config.run
    sampler = ShardedBatchSampler(
        len(dataset), run.batch_size, fabric.global_rank, fabric.world_size, seed=run.seed, shuffle=False
    )
    batches = min(run.val_batches, sampler.batches_per_epoch)
    total = torch.zeros((), dtype=torch.float64)
    extras: dict[str, float] = {}
    model.eval()
    with torch.no_grad():
        for i in range(batches):
            items = [dataset[j] for j in sampler.batch_indices(0, i)]
            batch = to_device(task.collate(items), fabric.device)
            gen = torch.Generator().manual_seed(step_seed(run.seed + 7, fabric.global_rank, 0, i))
            torch.manual_seed(step_seed(run.seed + 11, fabric.global_rank, 0, i))
            loss, metrics = task.loss(model, batch, gen)
            total += float(loss.detach().float())
            for key, value in metrics.items():
                extras[key] = extras.get(key, 0.0) + float(value) / max(batches, 1)
    model.train()
    mean = fabric.all_reduce(total.to(torch.float32) / max(batches, 1), reduce_op="mean")
    # Every rank logs the same keys (the same task code on batches of the same kind).
    means = {
        k: float(fabric.all_reduce(torch.tensor(v), reduce_op="mean")) for k, v in sorted(extras.items())
    }
    return float(mean), means


#: The network component of a pipeline folder that each task's model is, for ``run.init_from``.
PIPELINE_NETWORK = {"ldm": ("multitrack", "unet"), "midi": ("voice-insertion", "network")}


def resolve_init_from(folder: Path, task: str, option: str = "run.init_from") -> tuple[Path, str]:
    """The weights file that ``run.init_from`` reads for a ``task`` run and the key prefix to strip:
    ``model.safetensors`` of a flat `stemforge-train export`; the network component of a pipeline
    folder (`PIPELINE_NETWORK`: ``unet/`` of a multitrack pipeline, ``network/`` of a voice-insertion
    one), so that a run continues from a shipped checkpoint; or, for a waveform_ae run, a waveform
    codec folder (``Codec.save`` keeps the autoencoder under ``autoencoder.``). A folder of another
    kind, or without its weights, is a ValueError naming ``option`` and the folder."""
    folder = Path(folder)
    if (folder / "pipeline.json").is_file():
        kind = json.loads((folder / "pipeline.json").read_text(encoding="utf-8")).get("kind")
        expected, component = PIPELINE_NETWORK.get(task, (None, None))
        if kind != expected or component is None:
            wanted = f"a {expected!r} pipeline folder" if expected else "a flat `stemforge-train export`"
            raise ValueError(
                f"{option} {folder}: a {kind!r} pipeline folder holds no network for a {task!r} run; a {task!r} "
                f"run continues from {wanted} or a `stemforge-train export` of a {task!r} run"
            )
        weights, prefix = folder / component / "model.safetensors", ""
    else:
        codec = _codec_folder_kind(folder)
        if codec is not None and (task != "waveform_ae" or codec != "waveform_autoencoder"):
            raise ValueError(
                f"{option} {folder}: a {codec!r} codec folder; only a waveform_ae run continues from a codec "
                "folder (a waveform_autoencoder one); give a `stemforge-train export` of this task's run"
            )
        weights, prefix = folder / "model.safetensors", ("autoencoder." if codec else "")
    if not weights.is_file():
        raise ValueError(
            f"{option} {folder}: no {weights.relative_to(folder)} there; give a folder written by "
            "`stemforge-train export`, or save or export this one again"
        )
    return weights, prefix


def _codec_folder_kind(folder: Path) -> str | None:
    """The codec kind of a `Codec.save` folder (config.json with ``format: stemforge-codec``), else None."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return (
        str(data.get("kind")) if isinstance(data, dict) and data.get("format") == "stemforge-codec" else None
    )


def init_from_export(module: nn.Module, folder: Path, task: str = "ldm") -> None:
    """Load the weights `resolve_init_from` finds in ``folder`` (any storage dtype) into ``module``,
    strictly: every key present and of the same shape, or a clear error before training starts."""
    from safetensors.torch import load_file

    weights, prefix = resolve_init_from(folder, task)
    state = {k.removeprefix(prefix): v for k, v in load_file(weights).items() if k.startswith(prefix)}
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"run.init_from {weights}: does not fit this config's model (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, other shapes {mismatched[:3]}); export it from a run of the same model config"
        )
    with torch.no_grad():
        for key, value in own.items():
            value.copy_(state[key].to(value.dtype))


def fit(config: TrainConfig, on_step: Callable[[int, float], None] | None = None) -> FitResult:
    """Train ``config`` from scratch, or resume from the newest checkpoint in ``run.out_dir``."""
    run, optim = config.run, config.optim
    out_dir = Path(run.out_dir)
    ckpt_root = out_dir / "checkpoints"
    fabric = make_fabric(config.dist, optim, run.batch_size, run.grad_accum)
    fabric.launch()
    rank0 = fabric.global_rank == 0
    if fabric.device.type == "cpu":
        # Each local rank gets its share of the cores (torch would give every process all of them),
        # and no more than OMP_NUM_THREADS when that is set (a run that leaves cores to other work).
        share = max(1, (os.cpu_count() or 1) // max(1, config.dist.devices))
        limit = os.environ.get("OMP_NUM_THREADS", "").strip()
        torch.set_num_threads(min(share, int(limit)) if limit.isdigit() and int(limit) > 0 else share)

    # Identical initial weights on every rank; per-step seeds take over in the loop.
    fabric.seed_everything(run.seed, workers=True, verbose=False)
    task = build_task(config)
    with fabric.init_module():
        raw_model = task.build_model()
    if run.init_from:
        init_from_export(export_module(task, raw_model), Path(run.init_from), config.task)
    if config.dist.activation_checkpointing:
        # stemforge-unet3d's activation checkpointing (recompute each block in the backward pass).
        target = getattr(raw_model, "unet", raw_model)
        if not hasattr(target, "gradient_checkpointing"):
            raise ValueError(
                f"dist.activation_checkpointing is true but {type(target).__name__} has no "
                "gradient_checkpointing switch; turn it off for this task"
            )
        target.gradient_checkpointing = True
    groups = optimizer_groups(task, raw_model)
    base_lrs = [float(group.setdefault("lr", optim.lr)) for group in groups]
    start_steps = [int(group.pop("start_step", 0)) for group in groups]
    decay_steps = optim.decay_steps or run.max_steps

    def schedule(base_lr: float, at_step: int) -> float:
        return scheduled_lr(
            base_lr,
            at_step,
            optim.warmup_steps,
            decay=optim.decay,
            decay_steps=decay_steps,
            min_lr_ratio=optim.min_lr_ratio,
        )

    optimizer = torch.optim.AdamW(
        groups, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay, eps=optim.eps
    )
    model, optimizer = fabric.setup(raw_model, optimizer)
    engine = engine_of(model)
    check_supported(engine)
    exported = export_module(task, raw_model)
    export_prefix = _module_prefix(raw_model, exported)
    ema = EMA(exported, optim.ema_decay)

    step = 0
    position = DataPosition()
    resume_from = latest_checkpoint(ckpt_root)
    if resume_from is not None:
        meta = read_meta(resume_from)  # refuses other formats (0.1.0's pickle shards) before any load
        load_full_state(model, raw_model, read_full_state(resume_from), str(resume_from))
        step = int(meta["step"])
        position = DataPosition(**meta["position"])
        _set_engine_counters(engine, meta["engine"])
        ema.load_state_tensors(load_file(resume_from / EMA_FILE))
        if rank0:
            print(f"resumed from {resume_from} at step {step}", file=sys.stderr, flush=True)

    if rank0:
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt_root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    fabric.barrier()
    log = RunLog(out_dir, run.tensorboard, step if resume_from is not None else None) if rank0 else None
    curves = CurvesWriter(out_dir / "metrics.csv") if rank0 else None

    train_set = task.train_dataset()
    val_set = task.val_dataset()
    sampler = ShardedBatchSampler(
        len(cast(Sized, train_set)), run.batch_size, fabric.global_rank, fabric.world_size, run.seed, position
    )
    if run.fixed_batch:
        fixed_items = [train_set[j] for j in sampler.batch_indices(0, 0)]

        def batches() -> Any:
            while True:
                yield task.collate(fixed_items)

        batch_iter = batches()
    else:
        batch_iter = iter(_loader(task, train_set, sampler, run.num_workers))

    result = FitResult(step=step, rank=fabric.global_rank, last_checkpoint=resume_from)
    progress = _Progress(rank0 and run.progress, run.max_steps, step)
    samples_per_step = run.batch_size * run.grad_accum * fabric.world_size
    window_start, window_steps = time.perf_counter(), 0

    def save(at_step: int) -> Path:
        # Collective: every rank takes part in gathering the partitions; rank 0 writes.
        state = gather_full_state(model, raw_model, keep=rank0)
        final = ckpt_root / checkpoint_name(at_step)
        if rank0:
            meta = {
                "format": CHECKPOINT_FORMAT,
                "format_version": CHECKPOINT_FORMAT_VERSION,
                "step": at_step,
                "position": dataclasses.asdict(position),
                "engine": _engine_counters(engine),
                "optimizer": {
                    "class": "torch.optim.AdamW",
                    "groups": [
                        {
                            "name": group.get("name", str(i)),
                            "base_lr": base_lrs[i],
                            "lr": group["lr"],
                            "betas": list(group["betas"]),
                            "weight_decay": group["weight_decay"],
                            "eps": group["eps"],
                            "start_step": start_steps[i],
                        }
                        for i, group in enumerate(optimizer.param_groups)
                    ],
                },
                "loss_scaler": None,  # fp32 and bf16 train without one; fp16 is refused
                "rng": {
                    "seed": run.seed,
                    "scheme": "every random draw of step s, micro-batch m on rank r comes from generators "
                    "seeded by step_seed(seed, r, s, m); nothing else to restore",
                },
                "world_size": fabric.world_size,
                "zero_stage": engine.zero_optimization_stage(),
                "precision": resolve_precision(config.dist, resolve_accelerator(config.dist)),
                "export_prefix": export_prefix,
                "config": config.to_dict(),
                "export": task.export_meta(),
            }
            tensors = {
                WEIGHTS_FILE: state.weights,
                OPTIMIZER_FILE: state.optimizer,
                EMA_FILE: ema.state_tensors(),
            }
            tmp = ckpt_root / f".{checkpoint_name(at_step)}.tmp"
            finalize_checkpoint(ckpt_root, tmp, at_step, meta, tensors, run.keep_last)
        fabric.barrier()
        return final

    try:
        while step < run.max_steps:
            lr = schedule(optim.lr, step)
            for group, base_lr, start in zip(optimizer.param_groups, base_lrs, start_steps, strict=True):
                group["lr"] = schedule(base_lr, step - start) if step >= start else 0.0
            on_step_start = getattr(task, "on_step_start", None)
            if on_step_start is not None:
                on_step_start(step)
            step_loss = torch.zeros(())
            extras: dict[str, float] = {}
            for micro in range(run.grad_accum):
                batch = to_device(next(batch_iter), fabric.device)
                if not run.fixed_batch:
                    position = sampler.advance(position)
                seed = step_seed(run.seed, fabric.global_rank, step, micro)
                torch.manual_seed(seed)
                gen = torch.Generator().manual_seed(seed)
                loss, metrics = task.loss(model, batch, gen)
                bad = fabric.all_reduce(
                    torch.tensor(0.0 if torch.isfinite(loss).item() else 1.0), reduce_op="sum"
                )
                if float(bad) > 0:
                    last = latest_checkpoint(ckpt_root)
                    raise NonFiniteLossError(
                        f"non-finite loss ({float(loss)}) at step {step + 1} on {int(bad)} rank(s); "
                        f"last good checkpoint: {last if last is not None else 'none (no checkpoint written yet)'}; "
                        "lower optim.lr or raise optim.warmup_steps and resume from it"
                    )
                fabric.backward(loss)
                optimizer.step()
                optimizer.zero_grad()
                step_loss += loss.detach().float().cpu() / run.grad_accum
                for key, value in metrics.items():
                    extras[key] = extras.get(key, 0.0) + float(value) / run.grad_accum
            ema.update(exported)
            step += 1
            window_steps += 1
            mean_loss = float(fabric.all_reduce(step_loss, reduce_op="mean"))
            result.losses[step] = mean_loss
            if on_step is not None:
                on_step(step, mean_loss)
            if step % run.log_every == 0 or step == run.max_steps:
                elapsed = time.perf_counter() - window_start
                speed = window_steps * samples_per_step / max(elapsed, 1e-9)
                if log is not None:
                    log.write(step, "train", mean_loss, lr, speed, extras)
                progress.update(step, f"loss {mean_loss:.4f}  {speed:.1f} samples/s", log_line=True)
                window_start, window_steps = time.perf_counter(), 0
            else:
                progress.update(step, f"loss {mean_loss:.4f}", log_line=False)
            if val_set is not None and run.val_every > 0 and step % run.val_every == 0:
                val_loss, val_extras = _validate(fabric, task, model, val_set, config)
                result.val_losses[step] = val_loss
                if log is not None:
                    log.write(step, "val", val_loss, lr, 0.0, val_extras)
                if rank0:
                    task.on_validation(raw_model, out_dir / "samples", step)
                fabric.barrier()
            if step % run.ckpt_every == 0 or step == run.max_steps:
                result.last_checkpoint = save(step)
                if curves is not None:
                    curves.update()
    finally:
        progress.close()
        if log is not None:
            log.close()
    result.step = step
    if not math.isfinite(result.losses.get(step, 0.0)):
        raise NonFiniteLossError(f"loss is not finite at step {step}")
    return result
