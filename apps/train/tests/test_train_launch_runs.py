"""The multi-node launchers, started for real on this machine with the command lines of the README.

Two "nodes" of one CPU process each (gloo, DeepSpeed ZeRO-2) train configs/tiny-midi.yaml for four
steps under torchrun (c10d rendezvous), the DeepSpeed launcher (``--no_ssh``, one command per node
of a two-host hostfile; also one node with two slots) and the sbatch script (SLURM's variables, as srun sets them, for a 2-node x
1-task allocation: there is no SLURM here, so a stand-in ``srun`` on PATH starts the tasks). Each
run must exit 0, log the cluster environment Fabric chose on every node, write its checkpoint from
rank 0 and reproduce the loss curve of the same config launched by Fabric on one node (two local
processes, the same global batch).

Tolerance of the loss comparison: every rank reads the same shard and draws the same per-(rank,
step) randomness under every launcher, so the runs compute the same sums, but not always in the same
order: the loop gives each process cpu_count // dist.devices intra-op threads (two per process with
one process per node, one with two), and even at equal thread counts the last bits were seen to
differ from one run to the next (Fabric's own launch included). Observed while writing this:
steps 1-3 bit-equal, step 4 off by 5e-7 to 1.4e-6 at a loss of 4.78 (at most 3e-7 relative), and the
two-node runs differing among themselves by as much. The bound, 2e-5 relative, is 70 times that and
still 45 times smaller than the smallest change of the loss from one step to the next here (9e-4
relative, step 1 to 2), so a step out of place or a rank on the wrong data would fail it.

The fast tests start the real launchers with a config that disagrees with them: every process
must stop at start-up with the one-line error that names the fix.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "apps" / "train" / "README.md"
SBATCH = ROOT / "apps" / "train" / "launch" / "slurm.sbatch"
REL_TOL = 2e-5
TIMEOUT = 420

SRUN = '''\
"""srun for an allocation on this machine: start SLURM_NNODES x SLURM_NTASKS_PER_NODE tasks with the
per-task variables srun sets (srun(1), OUTPUT ENVIRONMENT VARIABLES); exit with the first failure."""
import os, subprocess, sys

nodes, per_node = int(os.environ["SLURM_NNODES"]), int(os.environ["SLURM_NTASKS_PER_NODE"])
hosts = os.environ["SLURM_JOB_NODELIST"].split(",")
procs = []
for node in range(nodes):
    for local in range(per_node):
        task = {
            "SLURM_STEP_ID": "0", "SLURM_STEPID": "0", "SLURM_STEP_NUM_NODES": str(nodes),
            "SLURM_STEP_NUM_TASKS": str(nodes * per_node), "SLURM_STEP_NODELIST": ",".join(hosts),
            "SLURM_STEP_TASKS_PER_NODE": f"{per_node}(x{nodes})", "SLURM_NODELIST": ",".join(hosts),
            "SLURM_PROCID": str(node * per_node + local), "SLURM_LOCALID": str(local),
            "SLURM_NODEID": str(node), "SLURMD_NODENAME": hosts[node], "SLURM_TOPOLOGY_ADDR": hosts[node],
        }
        procs.append(subprocess.Popen(sys.argv[1:], env={**os.environ, **task}))
codes = [p.wait() for p in procs]
sys.exit(next((c for c in codes if c), 0))
'''


def free_port(candidates: range | None = None) -> int:
    """A port nobody listens on: any (the kernel's choice) or the first free one of ``candidates``."""
    for port in candidates or [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError(f"no free port in {candidates}")


def readme_commands() -> list[str]:
    """The README's shell lines (continuations joined, a trailing ``&`` dropped)."""
    text = README.read_text()
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removesuffix("&").strip()
            if line and not line.startswith("#"):
                lines.append(re.sub(r"\s+", " ", line))
    return lines


def readme_command(prefix: str, contains: str = "tiny-midi") -> list[str]:
    """All README lines that start with ``prefix`` and mention ``contains``, as argument lists."""
    found = [shlex.split(c) for c in readme_commands() if c.startswith(prefix) and contains in c]
    assert found, f"no README command starting with {prefix!r} that mentions {contains!r}"
    return found


def with_out_dir(args: list[str], out: Path) -> list[str]:
    return [f"run.out_dir={out}" if a.startswith("run.out_dir=") else a for a in args]


def base_env(**extra: str) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # torchrun, deepspeed, stemforge-train
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC_"))}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
        env.pop(name, None)
    return {**env, "PATH": f"{bin_dir}:{env.get('PATH', '')}", "PYTHONUNBUFFERED": "1", **extra}


def run_together(commands: list[list[str]], env: dict[str, str], logs: Path) -> list[tuple[int, str]]:
    """Start the commands at once (one per node), wait for all; (exit code, output) per command."""
    procs = []
    for i, command in enumerate(commands):
        log = (logs / f"node{i}.log").open("w")
        procs.append(
            (
                subprocess.Popen(
                    command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                ),
                log,
            )
        )
    results = []
    try:
        for i, (proc, log) in enumerate(procs):
            proc.wait(timeout=TIMEOUT)
            log.close()
            results.append((proc.returncode, (logs / f"node{i}.log").read_text()))
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    return results


def train_losses(out_dir: Path) -> dict[int, float]:
    with (out_dir / "metrics.csv").open() as fh:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(fh) if r["split"] == "train"}


def check_run(
    results: list[tuple[int, str]],
    out: Path,
    environment: str,
    launcher: str,
    reference: Path,
    nodes: int = 2,
) -> None:
    for code, output in results:
        assert code == 0, output[-4000:]
    joined = "\n".join(output for _, output in results)
    per_node = 2 // nodes
    for node in range(nodes):
        line = f"stemforge-train: {launcher} launch, node {node} of {nodes}, {per_node} process(es) per node, 2 in all"
        assert f"{line}; Fabric cluster environment: {environment}" in joined, joined[-4000:]
    # Rank 0 wrote the final checkpoint (one folder, shared by the two "nodes" of this machine).
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-00000004"
    assert json.loads((out / "checkpoints" / "step-00000004" / "meta.json").read_text())["step"] == 4
    expected, got = train_losses(reference), train_losses(out)
    assert sorted(got) == sorted(expected) == [1, 2, 3, 4]
    for step, loss in expected.items():
        assert abs(got[step] - loss) <= REL_TOL * abs(loss), (step, got[step], loss)
    assert expected[4] < expected[1]  # it trains


@pytest.fixture(scope="module")
def fabric_reference(tmp_path_factory) -> Path:
    """The README's one-node run: Fabric starts the two processes itself."""
    logs = tmp_path_factory.mktemp("fabric")
    (command,) = readme_command("stemforge-train fit")
    out = logs / "run"
    ((code, output),) = run_together([with_out_dir(command, out)], base_env(), logs)
    assert code == 0, output[-4000:]
    return out


@pytest.mark.slow
def test_torchrun_two_nodes_match_one_node(fabric_reference, tmp_path):
    commands = readme_command("torchrun")
    assert len(commands) == 2 and commands[0] == commands[1]  # c10d: the same line on every node
    port = free_port()
    command = [
        a.replace("127.0.0.1:29400", f"127.0.0.1:{port}") for a in with_out_dir(commands[0], tmp_path / "run")
    ]
    results = run_together([command, command], base_env(), tmp_path)
    check_run(results, tmp_path / "run", "TorchElasticEnvironment", "torchrun", fabric_reference)


@pytest.mark.slow
def test_deepspeed_launcher_two_nodes_without_ssh_match_one_node(fabric_reference, tmp_path):
    commands = readme_command("DS_ACCELERATOR=cpu deepspeed", contains="hostfile-localhost-2x1")
    assert [c[c.index("--node_rank") + 1] for c in commands] == ["0", "1"]
    port = str(free_port())
    runs = []
    for command in commands:
        env_assign, *args = with_out_dir(command, tmp_path / "run")
        args[args.index("--master_port") + 1] = port
        runs.append(args)
    name, value = env_assign.split("=")
    results = run_together(runs, base_env(**{name: value}), tmp_path)
    check_run(results, tmp_path / "run", "LightningEnvironment", "deepspeed", fabric_reference)
    # The launcher appended --local_rank=0 to the module's arguments; the CLI accepted it.
    assert "'stemforge.train.cli', '--local_rank=0', 'fit'" in results[0][1]


@pytest.mark.slow
def test_deepspeed_launcher_one_node_two_slots_matches_fabric(fabric_reference, tmp_path):
    (command,) = readme_command("DS_ACCELERATOR=cpu deepspeed", contains="hostfile-localhost-2 ")
    env_assign, *args = with_out_dir(command, tmp_path / "run")
    args[args.index("--master_port") + 1] = str(free_port())
    name, value = env_assign.split("=")
    results = run_together([args], base_env(**{name: value}), tmp_path)
    check_run(results, tmp_path / "run", "LightningEnvironment", "deepspeed", fabric_reference, nodes=1)
    # One launcher process started both slots: local ranks 0 and 1.
    assert "--local_rank=0" in results[0][1] and "--local_rank=1" in results[0][1]


def sbatch_env(tmp_path: Path, nodes: int, per_node: int) -> dict[str, str]:
    """What sbatch sets for the batch script of a ``nodes`` x ``per_node`` allocation, srun on PATH."""
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text(f"#!{sys.executable}\n{SRUN}")
    (bin_dir / "srun").chmod(0o755)
    # Fabric's SLURMEnvironment uses port 15000 + the last four digits of the job id: pick a free one.
    job_id = f"7{free_port(range(15000 + os.getpid() % 9000, 25000)) - 15000:04d}"
    hosts = ",".join(["localhost", socket.gethostname()][:nodes])
    env = base_env()
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env.update(
        SLURM_JOB_ID=job_id, SLURM_JOBID=job_id, SLURM_JOB_NAME="stemforge-train", SLURM_NNODES=str(nodes),
        SLURM_JOB_NUM_NODES=str(nodes), SLURM_NTASKS=str(nodes * per_node), SLURM_NPROCS=str(nodes * per_node),
        SLURM_NTASKS_PER_NODE=str(per_node), SLURM_TASKS_PER_NODE=f"{per_node}(x{nodes})",
        SLURM_JOB_NODELIST=hosts, SLURM_NODELIST=hosts, SLURM_SUBMIT_DIR=str(ROOT), SLURM_CLUSTER_NAME="local",
    )  # fmt: skip
    return env


def sbatch_options() -> dict[str, str]:
    options = dict(re.findall(r"^#SBATCH --([a-z-]+)=(\S+)$", SBATCH.read_text(), re.M))
    return options


def test_sbatch_script_asks_for_one_task_per_gpu_on_every_node():
    options = sbatch_options()
    assert {"nodes", "ntasks-per-node", "gpus-per-node", "partition", "time"} <= set(options)
    assert options["ntasks-per-node"] == options["gpus-per-node"]
    assert "ntasks" not in options  # Fabric needs --ntasks-per-node
    (command,) = readme_command("CONFIG=configs/tiny-midi.yaml bash", contains="slurm.sbatch")
    assert command[2] == "apps/train/launch/slurm.sbatch"
    assert subprocess.run(["bash", "-n", str(SBATCH)]).returncode == 0  # valid bash
    # Tasks requested with --ntasks only: the script stops before srun and says what to change.
    env = {**base_env(), "SLURM_NTASKS": "16", "SLURM_NNODES": "2"}
    proc = subprocess.run(
        ["bash", str(SBATCH)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and "request the tasks with --ntasks-per-node" in proc.stderr, proc.stderr


@pytest.mark.slow
def test_sbatch_script_with_srun_variables_matches_one_node(fabric_reference, tmp_path):
    (command,) = readme_command("CONFIG=configs/tiny-midi.yaml bash", contains="slurm.sbatch")
    env_assign, *args = with_out_dir(command, tmp_path / "run")
    env = sbatch_env(tmp_path, nodes=2, per_node=1)
    name, value = env_assign.split("=")
    results = run_together([args], {**env, name: value}, tmp_path)
    check_run(results, tmp_path / "run", "SLURMEnvironment", "slurm", fabric_reference)


@pytest.mark.parametrize("launcher", ["torchrun", "deepspeed", "slurm"])
def test_real_launcher_with_a_disagreeing_config_stops_every_process_with_the_fix(launcher, tmp_path):
    # tiny-midi.yaml says dist.devices=2, dist.num_nodes=1; the launcher starts 2 nodes x 1 process.
    fit = [
        "-m",
        "stemforge.train.cli",
        "fit",
        "configs/tiny-midi.yaml",
        "--set",
        f"run.out_dir={tmp_path / 'run'}",
    ]
    if launcher == "torchrun":
        port = free_port()
        command = ["torchrun", "--nnodes", "1", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
                   "--rdzv-endpoint", f"127.0.0.1:{port}", *fit, "--set", "dist.devices=1"]  # fmt: skip
        expected = "dist.devices=1, dist.num_nodes=1, but torchrun started 1 node(s) x 2 process(es) per node"
        fix = "--set dist.devices=2 --set dist.num_nodes=1"
        commands, env = [command], base_env()
    elif launcher == "deepspeed":
        port = free_port()
        commands = [
            ["deepspeed", "--hostfile", "apps/train/launch/hostfile-localhost-2x1", "--no_ssh", "--node_rank",
             str(node), "--master_addr", "127.0.0.1", "--master_port", str(port), "--module", *fit[1:]]
            for node in (0, 1)
        ]  # fmt: skip
        expected = (
            "dist.devices=2, dist.num_nodes=1, but deepspeed started 2 node(s) x 1 process(es) per node"
        )
        fix = "--set dist.devices=1 --set dist.num_nodes=2"
        env = base_env(DS_ACCELERATOR="cpu")
    else:
        commands, env = [["srun", sys.executable, *fit]], sbatch_env(tmp_path, nodes=2, per_node=1)
        expected = "dist.devices=2, dist.num_nodes=1, but slurm started 2 node(s) x 1 process(es) per node"
        fix = "--set dist.devices=1 --set dist.num_nodes=2"
    results = run_together(commands, env, tmp_path)
    joined = "\n".join(output for _, output in results)
    assert all(code != 0 for code, _ in results), joined[-4000:]
    # Both processes print the one-line error (no traceback) and nothing starts training.
    assert joined.count(f"stemforge-train: error: the config has {expected}; pass {fix}") == 2, joined[-4000:]
    assert "src/stemforge/train" not in joined  # no traceback through the app
    assert not (tmp_path / "run" / "metrics.csv").exists()
