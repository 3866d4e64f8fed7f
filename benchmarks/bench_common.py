"""Helpers shared by the benchmark scripts: one process per configuration, machine facts.

Scripts in ``benchmarks/<area>/`` put this folder on ``sys.path`` and import from here.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import torch


def cpuinfo_lines() -> list[str]:
    return Path("/proc/cpuinfo").read_text().splitlines()


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine_info(device: str) -> dict:
    """Platform, versions, threads, CPU model, load average now and the GPU name on CUDA."""
    info = {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "load_average_at_end": os.getloadavg()}  # fmt: skip
    try:
        info["cpu"] = next(
            line.split(":")[1].strip() for line in cpuinfo_lines() if line.startswith("model name")
        )
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _child(measure: Callable[[dict], dict], spec: dict, queue: mp.Queue) -> None:
    try:
        queue.put(measure(spec))
    except Exception as err:  # reported in the results table, e.g. out of memory
        queue.put({"error": f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"})


def run_isolated(measure: Callable[[dict], dict], spec: dict, timeout: float) -> dict:
    """``measure(spec)`` in a fresh spawned process, so that its peak memory is its own."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(measure, spec, queue))
    proc.start()
    try:
        result = queue.get(timeout=timeout)
    except Exception:
        result = {"error": f"no result within {timeout:.0f} s (exit code {proc.exitcode})"}
    proc.join(5)
    if proc.is_alive():
        proc.kill()
    return result
