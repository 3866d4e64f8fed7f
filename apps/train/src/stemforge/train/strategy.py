"""Lightning Fabric + DeepSpeed, on GPUs and on CPU processes.

Lightning Fabric's ``DeepSpeedStrategy`` refuses any accelerator but CUDA
(``lightning_fabric/strategies/deepspeed.py``: ``setup_environment`` checks ``CUDAAccelerator``,
``_setup_distributed`` validates CUDA device indices and ``_initialize_engine`` passes
``root_device.index``, which is None on CPU). DeepSpeed itself has a CPU accelerator
(``DS_ACCELERATOR=cpu``) whose ZeRO stages run over gloo. ``CPUCapableDeepSpeedStrategy`` relaxes
exactly those three CUDA assumptions when the accelerator is the CPU and changes nothing on GPUs,
so CI runs the same ZeRO code path as a cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import torch

from stemforge.train.config import DistConfig, OptimConfig
from stemforge.train.launch import check_launch


def _deepspeed_strategy_class() -> type:
    from lightning_fabric.accelerators import CPUAccelerator
    from lightning_fabric.strategies import DeepSpeedStrategy
    from lightning_fabric.strategies.ddp import DDPStrategy
    from lightning_fabric.utilities.seed import reset_seed

    class CPUCapableDeepSpeedStrategy(DeepSpeedStrategy):
        """``DeepSpeedStrategy`` that also accepts Fabric's CPU accelerator (DeepSpeed's CPU accelerator + gloo)."""

        def _on_cpu(self) -> bool:
            return isinstance(self.accelerator, CPUAccelerator)

        def setup_environment(self) -> None:
            if not self._on_cpu():
                super().setup_environment()
                return
            # The parent's only addition over DDPStrategy is the CUDA check.
            DDPStrategy.setup_environment(self)

        def _setup_distributed(self) -> None:
            if not self._on_cpu():
                super()._setup_distributed()
                return
            # As the parent, minus the CUDA device-index validation (CPU devices have no index).
            reset_seed()
            self._set_world_ranks()
            self._init_deepspeed_distributed()
            if not self._config_initialized:
                self._format_config()
                self._config_initialized = True

        def _initialize_engine(self, model: Any, optimizer: Any = None, scheduler: Any = None) -> Any:
            if not self._on_cpu():
                return super()._initialize_engine(model, optimizer, scheduler)
            import deepspeed

            # As the parent, with the local rank as device rank (root_device.index is None on CPU).
            engine, ds_optimizer, _, ds_scheduler = deepspeed.initialize(
                args=argparse.Namespace(device_rank=self.local_rank),
                config=self.config,
                model=model,
                model_parameters=[p for p in model.parameters() if p.requires_grad],
                optimizer=optimizer,
                lr_scheduler=scheduler,
                dist_init_required=False,
            )
            return engine, ds_optimizer, ds_scheduler

    return CPUCapableDeepSpeedStrategy


def resolve_accelerator(dist: DistConfig) -> str:
    if dist.accelerator == "auto":
        return "gpu" if torch.cuda.is_available() else "cpu"
    return dist.accelerator


def resolve_precision(dist: DistConfig, accelerator: str) -> str:
    """bf16 mixed precision on GPUs, fp32 on CPU unless the config names one."""
    if dist.precision != "auto":
        return dist.precision
    return "bf16-mixed" if accelerator == "gpu" else "32-true"


def deepspeed_config(
    dist: DistConfig, optim: OptimConfig, micro_batch: int, grad_accum: int
) -> dict[str, Any]:
    """The DeepSpeed JSON config: ZeRO stage, offload, clipping, accumulation."""
    zero: dict[str, Any] = {"stage": dist.zero_stage}
    if dist.zero_stage in (1, 2):
        zero.update(contiguous_gradients=True, overlap_comm=False, reduce_scatter=True)
    if dist.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    if dist.offload_parameters:
        if dist.zero_stage != 3:
            raise ValueError(
                f"dist.offload_parameters needs dist.zero_stage=3 (got {dist.zero_stage}); "
                "set --set dist.zero_stage=3 or turn the parameter offload off"
            )
        zero["offload_param"] = {"device": "cpu", "pin_memory": torch.cuda.is_available()}
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "gradient_clipping": optim.grad_clip,
        "zero_optimization": zero,
        # torch.optim.AdamW as the client optimizer: DeepSpeed's fused/CPU Adam need compiled ops.
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def _disable_shm_comm_op() -> None:
    """Let gloo carry DeepSpeed's CPU collectives instead of its shared-memory op.

    DeepSpeed's CPU backend JIT-compiles ``deepspeed_shm_comm`` (g++, ninja) under a file lock in
    ``~/.cache/torch_extensions``; a process killed while holding that lock (a killed run, a
    cancelled CI job) leaves it behind and every later run waits on it forever. The op is optional
    (``build_shm_op`` returns None when it is marked incompatible), so the CPU path skips it.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def make_fabric(dist: DistConfig, optim: OptimConfig, micro_batch: int, grad_accum: int) -> Any:
    """A ``lightning_fabric.Fabric`` on the DeepSpeed strategy (CPU processes use gloo).

    Under torchrun, srun or the DeepSpeed launcher, ``dist.devices`` and ``dist.num_nodes`` must
    match the launcher's processes per node and nodes (``ConfigError`` otherwise, see launch.py).
    """
    launch = check_launch(dist)
    accelerator = resolve_accelerator(dist)
    if accelerator == "cpu":
        # Must be set before deepspeed is imported anywhere in this process.
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        _disable_shm_comm_op()
    if dist.port is not None:
        os.environ.setdefault("MASTER_PORT", str(dist.port))
    if "CROSS_RANK" in os.environ and "NODE_RANK" not in os.environ:
        # The DeepSpeed launcher names the node rank CROSS_RANK; Fabric reads NODE_RANK.
        os.environ["NODE_RANK"] = os.environ["CROSS_RANK"]
    from lightning_fabric import Fabric

    strategy_cls = _deepspeed_strategy_class()
    strategy = strategy_cls(
        config=deepspeed_config(dist, optim, micro_batch, grad_accum),
        process_group_backend="gloo" if accelerator == "cpu" else "nccl",
    )
    fabric = Fabric(
        accelerator=accelerator,
        devices=dist.devices,
        num_nodes=dist.num_nodes,
        strategy=strategy,
        precision=resolve_precision(dist, accelerator),  # type: ignore[arg-type]
    )
    if launch is not None and launch.local_rank == 0:
        # One line per node, so that a multi-node log shows every node joining and how Fabric read it.
        environment = type(getattr(fabric.strategy, "cluster_environment", None)).__name__
        print(
            f"stemforge-train: {launch.launcher} launch, node {launch.node_rank} of {launch.num_nodes}, "
            f"{launch.devices} process(es) per node, {launch.world_size} in all; "
            f"Fabric cluster environment: {environment}",
            file=sys.stderr,
            flush=True,
        )
    return fabric
