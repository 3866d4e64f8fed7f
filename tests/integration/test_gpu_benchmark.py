"""benchmarks/gpu/run.py, the paper-size GPU benchmark, at its tiny size on one CPU thread.

The GPU run is opt-in (``bash benchmarks/gpu/run.sh`` on a CUDA machine); ``--tiny`` takes the same
code paths (sections in their own processes, the budget guard, the JSON) on CPU so that they cannot
rot between GPU runs. Not marked ``slow`` on purpose: it is the only guard of that script.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu" / "run.py"
SECTIONS = ("attention", "unet", "end_to_end", "train")


def _run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("gpu-bench") / "tiny.json"
    _run("--tiny", "--budget-s", "200", "--out", str(out))
    return json.loads(out.read_text())


def test_tiny_run_has_every_section_with_figures_or_a_reason(tiny_report: dict[str, Any]) -> None:
    report = tiny_report
    assert report["device"] == "cpu" and report["profile"]["name"] == "tiny"
    assert report["versions"]["torch"] == torch.__version__
    assert report["peak"]["tflops"] is None and "--peak-tflops" in report["peak"]["source"]
    assert set(report["sections"]) == set(SECTIONS)
    for name, section in report["sections"].items():
        if section["status"] == "skipped":
            assert section["skipped"], name  # a skipped section says why
        else:
            assert section["status"] == "ok", (name, section.get("error"), section.get("traceback"))
    # Everything but DeepSpeed runs at this size; the training step may be skipped only with a reason.
    assert all(report["sections"][s]["status"] == "ok" for s in ("attention", "unet", "end_to_end"))


def test_tiny_attention_section(tiny_report: dict[str, Any]) -> None:
    section = tiny_report["sections"]["attention"]
    assert section["candidate"] == "reference-bias"  # no CUDA: the reference stands in for Triton
    assert [(row["tokens"], row["heads"]) for row in section["accuracy"]] == [
        (512, 4)
    ]  # the tiny U-Net's level
    for row in section["accuracy"]:
        assert set(row["errors"]) == {"out", "dq", "dk", "dv", "dtable"}
        for err in row["errors"].values():
            # float32 against float64 on the same inputs: rounding only, far below the tolerance.
            assert 0 <= err["max_abs"] < section["tolerance"]["atol"] and err["within_tolerance"]
    rows = {(row["variant"], row["mode"]): row for row in section["speed"]}
    assert set(rows) == {
        (v, m) for v in ("sdpa-nobias", "sdpa-bias", "reference-bias") for m in ("fwd", "fwd+bwd")
    }
    for row in rows.values():
        assert _positive(row["median_s"]) and row["runs"] >= 1 and _positive(row["tflops_per_s"])
        assert row["speedup_vs_sdpa-bias"] == pytest.approx(
            rows[("sdpa-bias", row["mode"])]["median_s"] / row["median_s"]
        )


def test_tiny_unet_section(tiny_report: dict[str, Any]) -> None:
    section = tiny_report["sections"]["unet"]
    assert section["parameters"] == 1_776_740 and section["latent_shape_per_sample"] == [4, 8, 16, 16]
    flops = section["flops"]
    assert (
        _positive(flops["forward_per_sample"])
        and flops["fwd+bwd_per_sample"] == 3 * flops["forward_per_sample"]
    )
    # No out-of-memory on CPU: the doubling stops at the profile's limit.
    for mode in ("fwd", "fwd+bwd"):
        assert section["largest_batch"][mode]["batch"] == 2
        assert section["largest_batch"][mode]["stopped_by"] == "limit 2 reached"
    assert [(r["mode"], r["batch"]) for r in section["results"]] == [
        ("fwd", 1),
        ("fwd", 2),
        ("fwd+bwd", 1),
        ("fwd+bwd", 2),
    ]
    for row in section["results"]:
        assert _positive(row["median_s"]) and _positive(row["tflops_per_s"])
        assert row["tokens_per_s"] == pytest.approx(
            row["batch"] * section["tokens_per_sample"] / row["median_s"]
        )
        assert row["mfu"] is None  # no assumed peak for a CPU


def test_tiny_end_to_end_section(tiny_report: dict[str, Any]) -> None:
    section = tiny_report["sections"]["end_to_end"]
    assert section["num_samples"] == 10240 and section["stems"] == ["bass", "drums", "guitar", "piano"]
    assert set(section["runs"]) == {"ddim-3-w1", "ddim-4-cfg"}
    for run in section["runs"].values():
        assert run["unet_rows_per_step"] == (1 if run["guidance"] == 1 else 2) and len(run["repeats"]) >= 1
        for repeat in run["repeats"]:
            assert (
                _positive(repeat["encode_s"])
                and _positive(repeat["decode_s"])
                and _positive(repeat["sample_s"])
            )
            assert repeat["encode_s"] + repeat["decode_s"] + repeat["sample_s"] == pytest.approx(
                repeat["device_s"]
            )
            assert repeat["device_s"] <= repeat["wall_s"] * 1.01


def test_tiny_train_section(tiny_report: dict[str, Any]) -> None:
    section = tiny_report["sections"]["train"]
    if section["status"] == "skipped":
        pytest.skip(section["skipped"])
    assert section["zero_stage"] == 2 and section["precision"] == "32-true" and section["batch"] == 2
    assert section["parameters"] == 1_776_740
    assert _positive(section["median_s"]) and _positive(section["samples_per_s"])
    unet = tiny_report["sections"]["unet"]
    assert section["model_flops_per_step"] == 3 * 2 * unet["flops"]["forward_per_sample"]


def test_budget_guard_skips_sections_with_a_reason(tmp_path: Path) -> None:
    out = tmp_path / "none.json"
    proc = _run("--tiny", "--budget-s", "0", "--out", str(out), timeout=60)
    report = json.loads(out.read_text())
    for name in SECTIONS:
        assert report["sections"][name]["status"] == "skipped"
        assert "--budget-s" in report["sections"][name]["skipped"]
    assert not report["complete"] and "JSON" in proc.stdout


@pytest.fixture(scope="module")
def bench() -> Iterator[Any]:
    spec = importlib.util.spec_from_file_location("stemforge_gpu_benchmark", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_largest_batch_stops_at_the_first_out_of_memory(bench: Any) -> None:
    cleaned = []

    def run(batch: int) -> None:
        if batch >= 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    found = bench._largest_batch(run, lambda: cleaned.append(True), 256, "cpu", float("inf"))
    assert found["batch"] == 4 and found["stopped_by"] == "out of memory at batch 8"
    assert len(cleaned) == 4  # after each of batches 1, 2, 4 and the failed 8


def test_assumed_peak_table(bench: Any) -> None:
    assert bench.assumed_peak("NVIDIA H100 80GB HBM3", "bfloat16", None)["tflops"] == 989.0
    assert bench.assumed_peak("NVIDIA H100 PCIe", "bfloat16", None)["tflops"] == 756.0
    assert bench.assumed_peak("NVIDIA H200", "bfloat16", None)["tflops"] == 989.0
    assert bench.assumed_peak("NVIDIA L4", "bfloat16", None)["tflops"] is None
    assert bench.assumed_peak("NVIDIA L4", "bfloat16", 121.0)["tflops"] == 121.0
    assert bench.device_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
