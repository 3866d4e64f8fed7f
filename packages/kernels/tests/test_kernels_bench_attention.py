"""benchmarks/attention/bench_attention.py runs on CPU at small sizes and writes its JSON."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "attention" / "bench_attention.py"


@pytest.fixture(scope="module")
def bench():
    # Imported by name from its folder, so that the spawned measurement processes can import it too.
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        yield importlib.import_module("bench_attention")
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_flop_count_formula(bench) -> None:
    # q k^T and P v: 2 matmuls of 2 L^2 D multiply-adds per head; backward is 2.5x forward.
    assert bench.attention_flops(1, 8, 8192, 32, "fwd") == 4 * 8 * 8192**2 * 32
    assert bench.attention_flops(2, 1, 10, 4, "fwd+bwd") == 3.5 * 4 * 2 * 100 * 4


@pytest.mark.parametrize("variant", ["sdpa-nobias", "sdpa-bias", "reference-bias"])
@pytest.mark.parametrize("mode", ["fwd", "fwd+bwd"])
def test_measure_in_process(bench, variant: str, mode: str) -> None:
    backend, bias = bench.VARIANTS[variant]
    spec = {"device": "cpu", "dtype": "float32", "batch": 1, "heads": 2, "tokens": 64, "head_dim": 32, "mode": mode,
            "backend": backend, "bias": bias, "warmup": 1, "repeats": 2}  # fmt: skip
    result = bench.measure(spec)
    assert len(result["times_ms"]) == 2 and result["median_ms"] > 0
    assert result["peak_mem_mib"] >= 0


@pytest.mark.slow  # spawns a measurement process (a few s of imports)
def test_main_writes_json_with_machine_and_ratios(bench, tmp_path) -> None:
    out = tmp_path / "attention.json"
    report = bench.main(["--sizes", "64:2", "--variants", "sdpa-bias,sdpa-nobias", "--modes", "fwd",
                         "--warmup", "0", "--repeats", "1", "--out", str(out)])  # fmt: skip
    saved = json.loads(out.read_text())
    assert saved["results"] == json.loads(json.dumps(report["results"]))
    assert {r["variant"] for r in saved["results"]} == {"sdpa-bias", "sdpa-nobias"}
    baseline = next(r for r in saved["results"] if r["variant"] == "sdpa-bias")
    assert baseline["speedup_vs_baseline"] == 1.0
    assert saved["machine"]["torch"] and saved["results"][0]["flops"] == 4 * 2 * 64**2 * 32


def test_memory_guard_skips_the_reference_above_its_limit(bench, tmp_path) -> None:
    report = bench.main(["--sizes", "64:2", "--variants", "reference-bias", "--modes", "fwd",
                         "--max-reference-gib", "0", "--out", str(tmp_path / "a.json")])  # fmt: skip
    (row,) = report["results"]
    assert "skipped" in row and "median_ms" not in row
