"""Which launcher started this process, and does the run config agree with it.

Across nodes the processes are started by an external launcher, one process per device, and each
launcher describes the job in its own environment variables:

- torchrun (torch.distributed.elastic): ``TORCHELASTIC_RUN_ID``, ``WORLD_SIZE``, ``RANK``,
  ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK`` (node rank), ``GROUP_WORLD_SIZE`` (nodes).
- SLURM's srun: ``SLURM_NTASKS``, ``SLURM_PROCID``, ``SLURM_LOCALID``, ``SLURM_NODEID``,
  ``SLURM_NNODES``, ``SLURM_NTASKS_PER_NODE`` (from ``--ntasks-per-node``), ``SLURM_NODELIST``.
- DeepSpeed's launcher (``deepspeed --hostfile``, ``deepspeed/launcher/launch.py``): ``WORLD_SIZE``,
  ``RANK``, ``LOCAL_RANK``, ``LOCAL_SIZE``, ``CROSS_RANK`` (node rank), ``CROSS_SIZE`` (nodes).

Lightning Fabric picks its cluster environment in the same order (``TorchElasticEnvironment``,
``SLURMEnvironment``, then LSF and MPI, which this module does not read, else
``LightningEnvironment``, which is what runs under the DeepSpeed launcher), but when the processes
are created externally it never checks ``devices`` / ``num_nodes`` against the launcher: a
disagreement shows up later as an index error, wrong ranks or a rendezvous that waits forever.
``check_launch`` turns it into an error at start-up that names both sides and the ``--set`` that
fixes it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from stemforge.train.config import ConfigError, DistConfig

LauncherKind = Literal["torchrun", "slurm", "deepspeed"]


@dataclass(frozen=True)
class LaunchEnvironment:
    """The job as an external launcher describes it (``devices`` = processes per node)."""

    launcher: LauncherKind
    world_size: int
    num_nodes: int
    devices: int
    global_rank: int
    local_rank: int
    node_rank: int


def _int(environ: Mapping[str, str], name: str, launcher: str) -> int:
    text = environ.get(name)
    if text is None:
        raise ConfigError(
            f"{launcher} launch: environment variable {name} is not set; start the run with {launcher}"
        )
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{launcher} launch: {name}={text!r} is not an integer") from None


def _slurm_used(environ: Mapping[str, str]) -> bool:
    # As Lightning's SLURMEnvironment.detect: srun sets SLURM_NTASKS; an interactive shell
    # (job name "bash" / "interactive") is not a training launch.
    return "SLURM_NTASKS" in environ and environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def detect_launch(environ: Mapping[str, str] | None = None) -> LaunchEnvironment | None:
    """The external launcher's view of the job, or None when Fabric starts the processes itself."""
    env = os.environ if environ is None else environ
    if "TORCHELASTIC_RUN_ID" in env:
        name = "torchrun"
        world = _int(env, "WORLD_SIZE", name)
        devices = _int(env, "LOCAL_WORLD_SIZE", name)
        return LaunchEnvironment(
            "torchrun",
            world_size=world,
            num_nodes=_int(env, "GROUP_WORLD_SIZE", name),
            devices=devices,
            global_rank=_int(env, "RANK", name),
            local_rank=_int(env, "LOCAL_RANK", name),
            node_rank=_int(env, "GROUP_RANK", name),
        )
    if _slurm_used(env):
        name = "SLURM"
        world = _int(env, "SLURM_NTASKS", name)
        if "SLURM_NTASKS_PER_NODE" not in env:
            raise ConfigError(
                f"SLURM launch with SLURM_NTASKS={world} but no SLURM_NTASKS_PER_NODE: request the tasks "
                "with --ntasks-per-node (one task per device) instead of --ntasks in the sbatch script"
            )
        return LaunchEnvironment(
            "slurm",
            world_size=world,
            num_nodes=_int(env, "SLURM_NNODES", name),
            devices=_int(env, "SLURM_NTASKS_PER_NODE", name),
            global_rank=_int(env, "SLURM_PROCID", name),
            local_rank=_int(env, "SLURM_LOCALID", name),
            node_rank=_int(env, "SLURM_NODEID", name),
        )
    if "CROSS_SIZE" in env and "LOCAL_SIZE" in env:
        name = "DeepSpeed launcher"
        return LaunchEnvironment(
            "deepspeed",
            world_size=_int(env, "WORLD_SIZE", name),
            num_nodes=_int(env, "CROSS_SIZE", name),
            devices=_int(env, "LOCAL_SIZE", name),
            global_rank=_int(env, "RANK", name),
            local_rank=_int(env, "LOCAL_RANK", name),
            node_rank=_int(env, "CROSS_RANK", name),
        )
    return None


def check_launch(dist: DistConfig, environ: Mapping[str, str] | None = None) -> LaunchEnvironment | None:
    """Check ``dist.devices`` / ``dist.num_nodes`` against the launcher; raise ``ConfigError`` if they disagree."""
    env = os.environ if environ is None else environ
    launch = detect_launch(env)
    if launch is None:
        if "LOCAL_RANK" in env and "WORLD_SIZE" in env:
            # Processes started by hand (Fabric's LightningEnvironment): only the total is known.
            world = _int(env, "WORLD_SIZE", "external")
            if dist.devices * dist.num_nodes != world:
                raise ConfigError(
                    f"dist.devices={dist.devices} x dist.num_nodes={dist.num_nodes} processes, but the "
                    f"environment has WORLD_SIZE={world}; set dist.devices (processes per node) and "
                    "dist.num_nodes so that their product is WORLD_SIZE"
                )
        return None
    fix = "pass --set dist.devices={d} --set dist.num_nodes={n} (processes per node, nodes)"
    if launch.devices * launch.num_nodes != launch.world_size:
        raise ConfigError(
            f"{launch.launcher} launch: {launch.num_nodes} nodes x {launch.devices} processes per node "
            f"!= {launch.world_size} processes in all; stemforge-train needs the same number of processes "
            "on every node"
        )
    if not (0 <= launch.local_rank < launch.devices and 0 <= launch.node_rank < launch.num_nodes):
        raise ConfigError(
            f"{launch.launcher} launch: local rank {launch.local_rank} / node rank {launch.node_rank} lie "
            f"outside {launch.devices} processes per node x {launch.num_nodes} nodes; check the launcher's "
            "node rank (--node-rank / --node_rank)"
        )
    if (dist.devices, dist.num_nodes) != (launch.devices, launch.num_nodes):
        raise ConfigError(
            f"the config has dist.devices={dist.devices}, dist.num_nodes={dist.num_nodes}, but {launch.launcher} "
            f"started {launch.num_nodes} node(s) x {launch.devices} process(es) per node; "
            + fix.format(d=launch.devices, n=launch.num_nodes)
        )
    return launch
