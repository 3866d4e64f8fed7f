"""Full (consolidated) training state of a DeepSpeed engine as plain tensors, and back.

ZeRO stages 1-3 partition the fp32 master weights and AdamW's moments over the ranks. DeepSpeed's
public ``deepspeed.utils.safe_get_full_fp32_param`` / ``safe_get_full_optimizer_state`` gather the
full tensor of one named parameter (a collective: every rank calls them, in the same order) and
``safe_set_full_fp32_param`` / ``safe_set_full_optimizer_state`` scatter a full tensor back into
this rank's partition. Full tensors per parameter name make the saved state independent of the
world size and of the stage, and plain tensors go to safetensors (no pickle anywhere).

What those functions do not cover is handled here explicitly:

- **Adam's step count.** torch's AdamW keeps ``state["step"]`` per (flat) master tensor; it is not
  partitioned, so it is read from the flat tensors and saved per parameter name (``step.<name>``).
- **Lazily created state.** AdamW creates ``exp_avg`` / ``exp_avg_sq`` at its first step, and ZeRO-1/2
  (and the bf16 optimizer) link each parameter's fragment to them only after that step. A resumed
  run creates the state tensors (zeros) and links the fragments before setting the saved values,
  as DeepSpeed's universal-checkpoint loader does. DeepSpeed 0.19's ZeRO-1/2 links once, right after
  stepping the *first* parameter group, so with several groups (a generator and its discriminators)
  the later groups stay unlinked; the links are therefore made again before every gather.
- **Working copies.** After the fp32 masters are set, the model's working weights (bf16 or fp32)
  are refreshed from them: ``update_lp_params`` for ZeRO-1/2 and the bf16 optimizer; for ZeRO-3 the
  flat partition is copied and unflattened and the persistent (always gathered) parameters are
  gathered again.
- **ZeRO stage 0 in fp32.** No partitioning and no master copy: the parameters and torch's AdamW
  state are read and written directly.
- **Buffers and frozen parameters** are not partitioned by ZeRO-1/2 and are identical on every rank;
  under ZeRO-3 frozen parameters are gathered with ``deepspeed.zero.GatheredParameters``.
- **Loss scaling.** The app trains in fp32 or bf16, neither of which uses a loss scaler, so there is
  no scaler state; fp16 is refused.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

MOMENTS = ("exp_avg", "exp_avg_sq")


@dataclass
class FullState:
    """World-size independent training state: every tensor whole, on the CPU, named by parameter."""

    weights: dict[str, Tensor] = field(default_factory=dict)
    optimizer: dict[str, Tensor] = field(default_factory=dict)


def engine_of(model: Any) -> Any:
    """The ``DeepSpeedEngine`` behind a Fabric-wrapped module."""
    engine = getattr(model, "_forward_module", model)
    if not hasattr(engine, "zero_optimization_stage"):
        raise TypeError(f"expected a DeepSpeed engine behind the Fabric module, got {type(engine).__name__}")
    return engine


def _base_optimizer(engine: Any) -> torch.optim.Optimizer:
    ds_optimizer = engine.optimizer
    base = getattr(ds_optimizer, "optimizer", ds_optimizer)
    if not isinstance(base, torch.optim.Adam | torch.optim.AdamW):
        raise TypeError(f"checkpoints support (torch) Adam/AdamW only, got {type(base).__name__}")
    if any(group.get("amsgrad", False) for group in base.param_groups):
        raise ValueError("checkpoints do not support AMSGrad (its max_exp_avg_sq state is not saved)")
    return base


def check_supported(engine: Any) -> None:
    """Refuse setups whose state this module cannot save exactly, with the fix in the message."""
    if engine.fp16_enabled():
        raise ValueError(
            "fp16 training is not supported by stemforge-train checkpoints (its loss scaler state is not "
            "saved); use dist.precision=bf16-mixed or 32-true"
        )
    if getattr(engine.optimizer, "swap_optimizer", False):
        raise ValueError("ZeRO-3 NVMe optimizer offload is not supported; offload to the CPU instead")
    _base_optimizer(engine)


def _flat_masters(engine: Any) -> list[Tensor]:
    """The tensors torch's optimizer steps (and keys its state by): flat fp32 partitions or parameters."""
    ds_optimizer = engine.optimizer
    if engine.zero_optimization_stage() == 3:
        return list(ds_optimizer.fp32_partitioned_groups_flat)
    return [p for group in _base_optimizer(engine).param_groups for p in group["params"]]


def _partitioned(engine: Any) -> bool:
    """True when parameters carry a ZeRO / bf16-optimizer mapping to fp32 masters."""
    return engine.zero_optimization_stage() > 0 or engine.bfloat16_enabled()


def _gathered(params: list[nn.Parameter]) -> contextlib.AbstractContextManager:
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()


def _named_state_entries(module: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """State-dict names with the tensor object behind each (parameters and persistent buffers)."""
    yield from module.state_dict(keep_vars=True).items()


def gather_full_state(model: Any, module: nn.Module, keep: bool) -> FullState:
    """Collective: full fp32 weights, AdamW moments and step counts of ``module`` (every rank calls it).

    Only ranks with ``keep`` hold on to the tensors (rank 0 writes them); the others drop each one as
    soon as the collective for it is done.
    """
    from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

    engine = engine_of(model)
    check_supported(engine)
    base = _base_optimizer(engine)
    _link_optimizer_state(engine)
    group_steps = _group_steps(engine, base)
    out = FullState()
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    seen: dict[int, str] = {}
    for name, tensor in _named_state_entries(module):
        if id(tensor) in seen:  # a tied weight: saved under its first name and again here
            if keep:
                out.weights[name] = out.weights[seen[id(tensor)]].clone()
            continue
        seen[id(tensor)] = name
        if id(tensor) in trainable:
            param = tensor
            if _partitioned(engine):
                full = safe_get_full_fp32_param(param)
                step = group_steps.get(id(param))
                moments = (
                    {} if step is None else {k: safe_get_full_optimizer_state(param, k) for k in MOMENTS}
                )
            else:
                full = param.detach()
                state = base.state.get(param, {})
                moments = {key: state.get(key) for key in MOMENTS}
                step = float(state["step"]) if "step" in state else None
            if keep:
                out.weights[name] = full.detach().float().cpu().clone()
                if step is not None:
                    for key, value in moments.items():
                        out.optimizer[f"{key}.{name}"] = value.detach().float().cpu().clone()
                    out.optimizer[f"step.{name}"] = torch.tensor(step, dtype=torch.float64)
        else:
            with _gathered([tensor] if isinstance(tensor, nn.Parameter) else []):
                if keep:
                    out.weights[name] = tensor.detach().cpu().clone()
    return out


def _group_steps(engine: Any, base: torch.optim.Optimizer) -> dict[int, float]:
    """AdamW's step count of each trainable parameter (by ``id``), read from its flat master tensor."""
    steps: dict[int, float] = {}
    if not _partitioned(engine):
        return steps
    ds_optimizer = engine.optimizer
    if engine.zero_optimization_stage() == 3:
        for sub_group, flat in enumerate(ds_optimizer.fp32_partitioned_groups_flat):
            state = base.state.get(flat, {})
            if "step" in state:
                for param in ds_optimizer.fp16_groups[sub_group]:
                    steps[id(param)] = float(state["step"])
        return steps
    lp_groups = getattr(ds_optimizer, "bit16_groups", None) or ds_optimizer.bf16_groups
    for group_index, group in enumerate(base.param_groups):
        for flat in group["params"]:
            state = base.state.get(flat, {})
            if "step" in state:
                for param in lp_groups[group_index]:
                    steps[id(param)] = float(state["step"])
    return steps


def _ensure_optimizer_state(engine: Any, base: torch.optim.Optimizer, step_of_flat: dict[int, float]) -> None:
    """Create AdamW's state (zeros, with the saved step count) where it does not exist yet, and link it."""
    for flat in _flat_masters(engine):
        if id(flat) not in step_of_flat:
            continue
        state = base.state[flat]
        for key in MOMENTS:
            if key not in state:
                state[key] = torch.zeros_like(flat, memory_format=torch.preserve_format)
        # torch keeps a non-capturable step as a 0-d float32 tensor on the CPU.
        state["step"] = torch.tensor(step_of_flat[id(flat)], dtype=torch.float32)
    _link_optimizer_state(engine)


def _link_optimizer_state(engine: Any) -> None:
    """(Re)link every parameter's optimizer-state fragment to the flat AdamW state of its group."""
    ds_optimizer = engine.optimizer
    link = getattr(ds_optimizer, "_lazy_init_hp_params_optimizer_state", None)
    if link is not None:
        ds_optimizer._hp_optimizer_states_linked = False
        link()


def _flat_of_params(engine: Any, base: torch.optim.Optimizer) -> dict[int, Tensor]:
    """Map each trainable parameter (by ``id``) to the flat master tensor that holds its fp32 copy."""
    ds_optimizer = engine.optimizer
    out: dict[int, Tensor] = {}
    if not _partitioned(engine):
        return {id(p): p for group in base.param_groups for p in group["params"]}
    if engine.zero_optimization_stage() == 3:
        for sub_group, flat in enumerate(ds_optimizer.fp32_partitioned_groups_flat):
            for param in ds_optimizer.fp16_groups[sub_group]:
                out[id(param)] = flat
        return out
    lp_groups = getattr(ds_optimizer, "bit16_groups", None) or ds_optimizer.bf16_groups
    for group_index, group in enumerate(base.param_groups):
        for param in lp_groups[group_index]:
            out[id(param)] = group["params"][0]
    return out


def _set_full(param: Tensor, value: Tensor, key: str | None) -> None:
    """``safe_set_full_fp32_param`` / ``safe_set_full_optimizer_state``, with ZeRO-3 padding handled.

    DeepSpeed 0.19's ZeRO-3 ``set_full_hp_param`` slices ``value`` at ``rank * partition_numel`` without
    the padding that the last partition carries when the size does not divide by the world size (a
    1-element bias on 2 ranks fails). This writes the rank's slice itself, padding with zeros, in the
    layout that ``_fp32_state_allgather`` reads back.
    """
    from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

    if not hasattr(param, "ds_id"):
        if key is None:
            safe_set_full_fp32_param(param, value)
        else:
            safe_set_full_optimizer_state(param, value, key)
        return
    z3 = param._z3_optimizer  # type: ignore[attr-defined]
    partition, _ = z3._get_fp32_opt_state_partition(param, release_swap_buffers=False, optim_state_key=key)
    flat = value.flatten().to(partition.device, partition.dtype)
    start = partition.numel() * z3._get_param_partition_rank(param)
    count = max(0, min(partition.numel(), flat.numel() - start))
    partition.data.zero_()
    partition.data[:count].copy_(flat[start : start + count])


def _refresh_working_weights(engine: Any) -> None:
    ds_optimizer = engine.optimizer
    if engine.zero_optimization_stage() == 3:
        for sub_group in range(len(ds_optimizer.fp16_groups)):
            ds_optimizer._reassign_or_swap_out_partitioned_parameters(sub_group)
        ds_optimizer.checkpoint_event_epilogue()
    elif _partitioned(engine):
        ds_optimizer.update_lp_params()


@torch.no_grad()
def load_full_state(model: Any, module: nn.Module, state: FullState, source: str) -> None:
    """Collective inverse of :func:`gather_full_state` on a freshly set-up engine (every rank calls it).

    ``state`` must hold exactly ``module``'s state-dict names; ``source`` names the files for errors.
    """
    engine = engine_of(model)
    check_supported(engine)
    base = _base_optimizer(engine)
    entries = list(_named_state_entries(module))
    expected = {name for name, _ in entries}
    missing, unexpected = sorted(expected - set(state.weights)), sorted(set(state.weights) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{source}: the checkpoint does not match the model (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}); resume with the configuration the run was started with"
        )
    for name, tensor in entries:
        if tuple(state.weights[name].shape) != tuple(getattr(tensor, "ds_shape", tensor.shape)):
            raise ValueError(
                f"{source}: {name!r} has shape {tuple(state.weights[name].shape)} in the checkpoint but "
                f"{tuple(getattr(tensor, 'ds_shape', tensor.shape))} in the model; resume with the run's configuration"
            )
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    flat_of = _flat_of_params(engine, base)
    step_of_flat: dict[int, float] = {}
    for name, tensor in entries:
        key = f"step.{name}"
        if id(tensor) in trainable and key in state.optimizer:
            step_of_flat[id(flat_of[id(tensor)])] = float(state.optimizer[key])
    if not _partitioned(engine):
        for name, tensor in entries:
            if id(tensor) in trainable and f"step.{name}" in state.optimizer:
                base.state[tensor] = {
                    "step": torch.tensor(float(state.optimizer[f"step.{name}"]), dtype=torch.float32),
                    **{k: state.optimizer[f"{k}.{name}"].to(tensor.device).clone() for k in MOMENTS},
                }
    else:
        _ensure_optimizer_state(engine, base, step_of_flat)
    done: set[int] = set()
    for name, tensor in entries:
        if id(tensor) in done:
            continue
        done.add(id(tensor))
        value = state.weights[name]
        if id(tensor) in trainable:
            device = tensor.device
            if _partitioned(engine):
                _set_full(tensor, value.to(device), None)
                if f"step.{name}" in state.optimizer:
                    for key in MOMENTS:
                        _set_full(tensor, state.optimizer[f"{key}.{name}"].to(device), key)
            else:
                tensor.data.copy_(value)
        elif isinstance(tensor, nn.Parameter) and hasattr(tensor, "ds_id"):
            import deepspeed

            with deepspeed.zero.GatheredParameters([tensor], modifier_rank=0):
                tensor.data.copy_(value)
        else:
            tensor.data.copy_(value)
    _refresh_working_weights(engine)
