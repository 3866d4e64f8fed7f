"""Launcher detection and the dist-config check, on the variables each launcher sets.

The environments below are written out variable by variable from each launcher's source or manual
(torch/distributed/elastic/agent/server/local_elastic_agent.py ``_start_workers``, srun(1) "OUTPUT
ENVIRONMENT VARIABLES", deepspeed/launcher/launch.py ``main``); the multi-process tests in
test_train_launch_runs.py start the real launchers.
"""

import os
from collections.abc import Iterator

import pytest

from stemforge.train.cli import build_parser
from stemforge.train.config import ConfigError, DistConfig
from stemforge.train.launch import LaunchEnvironment, check_launch, detect_launch


@pytest.fixture
def exact_environ() -> Iterator[None]:
    """Requested before monkeypatch, so that it is torn down after it. Restore os.environ exactly: make_fabric and Fabric set variables (NODE_RANK, DS_ACCELERATOR,
    ...) directly, which monkeypatch cannot undo; a leaked NODE_RANK=1 makes every later one-node
    run in this process wait for a node 0 that never comes."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def torchrun_env(node_rank: int, local_rank: int, nodes: int = 2, per_node: int = 1) -> dict[str, str]:
    rank = node_rank * per_node + local_rank
    return {
        "TORCHELASTIC_RUN_ID": "tiny",
        "TORCHELASTIC_RESTART_COUNT": "0",
        "TORCHELASTIC_MAX_RESTARTS": "0",
        "TORCHELASTIC_USE_AGENT_STORE": "True",
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": str(nodes * per_node),
        "LOCAL_WORLD_SIZE": str(per_node),
        "GROUP_RANK": str(node_rank),
        "GROUP_WORLD_SIZE": str(nodes),
        "ROLE_RANK": str(rank),
        "ROLE_WORLD_SIZE": str(nodes * per_node),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }


def srun_env(node_rank: int, local_rank: int, nodes: int = 2, per_node: int = 1) -> dict[str, str]:
    rank = node_rank * per_node + local_rank
    return {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "stemforge",
        "SLURM_NTASKS": str(nodes * per_node),
        "SLURM_NPROCS": str(nodes * per_node),
        "SLURM_NNODES": str(nodes),
        "SLURM_JOB_NUM_NODES": str(nodes),
        "SLURM_NTASKS_PER_NODE": str(per_node),
        "SLURM_TASKS_PER_NODE": f"{per_node}(x{nodes})",
        "SLURM_NODELIST": "node[01-02]",
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(local_rank),
        "SLURM_NODEID": str(node_rank),
    }


def deepspeed_env(node_rank: int, local_rank: int, nodes: int = 2, per_node: int = 1) -> dict[str, str]:
    return {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
        "WORLD_SIZE": str(nodes * per_node),
        "CROSS_RANK": str(node_rank),
        "CROSS_SIZE": str(nodes),
        "LOCAL_SIZE": str(per_node),
        "RANK": str(node_rank * per_node + local_rank),
        "LOCAL_RANK": str(local_rank),
        "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in range(per_node)),
    }


@pytest.mark.parametrize(
    ("make_env", "kind"), [(torchrun_env, "torchrun"), (srun_env, "slurm"), (deepspeed_env, "deepspeed")]
)
def test_each_launcher_is_read_for_every_rank_of_a_3_node_x_2_job(make_env, kind):
    for node in range(3):
        for local in range(2):
            launch = detect_launch(make_env(node, local, nodes=3, per_node=2))
            assert launch == LaunchEnvironment(
                kind, world_size=6, num_nodes=3, devices=2, global_rank=node * 2 + local, local_rank=local,
                node_rank=node,
            )  # fmt: skip
            assert check_launch(DistConfig(devices=2, num_nodes=3), make_env(node, local, 3, 2)) == launch


def test_no_launcher_means_fabric_starts_the_processes():
    assert detect_launch({"PATH": "/usr/bin"}) is None
    assert check_launch(DistConfig(devices=2), {}) is None
    # An srun inside an interactive allocation ("srun --job-name=interactive") is not a training launch.
    assert detect_launch({**srun_env(0, 0), "SLURM_JOB_NAME": "interactive"}) is None


def test_torchrun_wins_inside_a_slurm_allocation():
    # As Fabric: torchrun started from an sbatch script sees SLURM variables too.
    assert detect_launch({**srun_env(0, 0), **torchrun_env(1, 0)}).launcher == "torchrun"


@pytest.mark.parametrize("make_env", [torchrun_env, srun_env, deepspeed_env])
def test_config_that_disagrees_with_the_launcher_is_a_clear_error(make_env):
    with pytest.raises(ConfigError) as err:
        check_launch(DistConfig(devices=2, num_nodes=1), make_env(1, 0, nodes=2, per_node=1))
    message = str(err.value)
    assert "dist.devices=2, dist.num_nodes=1" in message
    assert "2 node(s) x 1 process(es) per node" in message
    assert "--set dist.devices=1 --set dist.num_nodes=2" in message


def test_uneven_nodes_and_bad_variables_are_errors():
    uneven = {**torchrun_env(0, 0, nodes=2, per_node=2), "WORLD_SIZE": "3"}
    with pytest.raises(ConfigError, match="same number of processes on every node"):
        check_launch(DistConfig(devices=2, num_nodes=2), uneven)
    with pytest.raises(ConfigError, match=r"node rank 2 lie outside 1 processes per node x 2 nodes"):
        check_launch(DistConfig(devices=1, num_nodes=2), deepspeed_env(2, 0, nodes=2))
    with pytest.raises(ConfigError, match=r"WORLD_SIZE='two' is not an integer"):
        detect_launch({**torchrun_env(0, 0), "WORLD_SIZE": "two"})
    with pytest.raises(ConfigError, match="GROUP_WORLD_SIZE is not set"):
        detect_launch({k: v for k, v in torchrun_env(0, 0).items() if k != "GROUP_WORLD_SIZE"})
    no_per_node = {k: v for k, v in srun_env(0, 0).items() if k != "SLURM_NTASKS_PER_NODE"}
    with pytest.raises(ConfigError, match="--ntasks-per-node"):
        detect_launch(no_per_node)


def test_processes_started_by_hand_must_add_up_to_world_size():
    by_hand = {"LOCAL_RANK": "0", "WORLD_SIZE": "4", "NODE_RANK": "1"}
    assert check_launch(DistConfig(devices=2, num_nodes=2), by_hand) is None
    with pytest.raises(ConfigError, match="WORLD_SIZE=4"):
        check_launch(DistConfig(devices=2, num_nodes=1), by_hand)


def test_cli_accepts_the_local_rank_argument_of_the_deepspeed_launcher():
    args = build_parser().parse_args(
        ["--local_rank=1", "fit", "configs/tiny-midi.yaml", "--set", "run.max_steps=1"]
    )
    assert (args.local_rank, args.command, args.overrides) == (1, "fit", ["run.max_steps=1"])


def cluster_commands() -> list[list[str]]:
    """The README's GPU-cluster launch lines, with its placeholders filled in."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "apps" / "train" / "README.md").read_text()
    block = re.search(r"On a GPU cluster.*?```\n(.*?)```", text, re.S).group(1)
    lines = [line.strip() for line in block.replace("\\\n", " ").splitlines()]
    lines = [line.replace("$HEAD", "10.0.0.1").replace("--node_rank N", "--node_rank 1") for line in lines]
    commands = [shlex.split(line) for line in lines if line and not line.startswith("#")]
    # Drop leading VAR=value assignments (CONFIG=... sbatch ...).
    return [
        [a for i, a in enumerate(c) if not (re.fullmatch(r"[A-Z_]+=\S*", a) and i == 0)] for c in commands
    ]


def check_fit_arguments(fit_args: list[str], nodes: int, per_node: int, environ: dict[str, str]) -> None:
    from pathlib import Path

    from stemforge.train.config import load_config

    args = build_parser().parse_args(fit_args)
    assert args.command == "fit"
    root = Path(__file__).resolve().parents[3]
    config = load_config(root / args.config, args.overrides)
    assert (config.dist.devices, config.dist.num_nodes) == (per_node, nodes)
    assert check_launch(config.dist, environ) is not None


def test_readme_cluster_commands_parse_with_each_launchers_own_parser(monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    from deepspeed.launcher.runner import fetch_hostfile
    from deepspeed.launcher.runner import parse_args as deepspeed_args
    from torch.distributed.run import get_args_parser

    root = Path(__file__).resolve().parents[3]
    commands = cluster_commands()
    assert sorted({c[0] for c in commands}) == ["deepspeed", "sbatch", "torchrun"]
    for command in commands:
        if command[0] == "torchrun":
            args = get_args_parser().parse_args(command[1:])
            assert (args.nnodes, args.nproc_per_node, args.rdzv_backend) == ("2", "8", "c10d")
            assert args.module and args.training_script == "stemforge.train.cli"
            check_fit_arguments(args.training_script_args, 2, 8, torchrun_env(1, 7, nodes=2, per_node=8))
        elif command[0] == "deepspeed":
            args = deepspeed_args(command[1:])
            assert args.module and args.user_script == "stemforge.train.cli"
            hosts = fetch_hostfile(str(root / args.hostfile))
            assert list(hosts.values()) == [8, 8]  # 2 nodes x 8 slots, as the command asks
            assert args.num_nodes in (-1, 2) and args.num_gpus in (-1, 8)
            # The launcher puts --local_rank=N before the user's arguments.
            check_fit_arguments(
                ["--local_rank=3", *args.user_args], 2, 8, deepspeed_env(1, 3, nodes=2, per_node=8)
            )
        else:
            script = root / command[1]
            assert script.is_file() and script.read_text().startswith("#!/bin/bash")


@pytest.mark.parametrize(
    ("make_env", "environment"),
    [
        (torchrun_env, "TorchElasticEnvironment"),
        (srun_env, "SLURMEnvironment"),
        (deepspeed_env, "LightningEnvironment"),
    ],
)
def test_fabric_reads_each_launchers_ranks_as_the_launcher_assigned_them(
    exact_environ, make_env, environment, monkeypatch, capsys
):
    from lightning_fabric.utilities.rank_zero import rank_zero_only

    from stemforge.train.config import OptimConfig
    from stemforge.train.strategy import make_fabric

    # Two processes of a 2-node x 2-process job: node 1 local rank 1 (global 3), node 0 local rank 0.
    for node, local in ((1, 1), (0, 0)):
        launched = make_env(node, local, nodes=2, per_node=2)
        names = {*launched, *torchrun_env(0, 0), *srun_env(0, 0), *deepspeed_env(0, 0), "NODE_RANK"}
        for name in (*names, "DS_ACCELERATOR"):  # restored afterwards, including what Fabric sets
            monkeypatch.delenv(name, raising=False)
        for name, value in launched.items():
            monkeypatch.setenv(name, value)
        try:
            fabric = make_fabric(DistConfig(accelerator="cpu", devices=2, num_nodes=2), OptimConfig(), 1, 1)
            assert type(fabric.strategy.cluster_environment).__name__ == environment
            ranks = (fabric.global_rank, fabric.world_size, fabric.node_rank, fabric.local_rank)
            assert ranks == (node * 2 + local, 4, node, local)
        finally:
            rank_zero_only.rank = 0  # Fabric sets this process-wide rank; other tests expect rank 0
        # Only local rank 0 of a node logs the launch line.
        logged = capsys.readouterr().err
        expected = f"launch, node {node} of 2, 2 process(es) per node, 4 in all; Fabric cluster environment: {environment}"
        assert (expected in logged) == (local == 0), logged
