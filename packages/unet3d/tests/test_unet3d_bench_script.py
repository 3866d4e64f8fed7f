"""benchmarks/unet3d/bench_unet3d.py runs on CPU with the tiny preset and writes its JSON."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "unet3d" / "bench_unet3d.py"


@pytest.fixture(scope="module")
def bench():
    # Imported by name from its folder, so that the spawned measurement processes can import it too.
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        yield importlib.import_module("bench_unet3d")
    finally:
        sys.path.remove(str(SCRIPT.parent))


def test_paper_flop_count(bench) -> None:
    flops = bench.count_flops("msgld-slakh", 256)
    # Attention matmuls alone: 4 L^2 D H per layer; 5 layers at each of 8192 / 2048 tokens and 6 at 512.
    attention = sum(
        n * 4 * tokens**2 * 32 * heads for tokens, heads, n in [(8192, 8, 5), (2048, 12, 5), (512, 20, 6)]
    )
    assert attention == 379_836_170_240
    assert 1.8e12 < flops["forward"] < 1.9e12
    assert 2.5 < flops["fwd+bwd"] / flops["forward"] < 3.5


def test_measure_in_process_with_tiny_preset(bench) -> None:
    spec = {"preset": "tiny", "device": "cpu", "dtype": "float32", "batch": 1, "frames": 8, "mode": "fwd+bwd",
            "backend": "auto", "checkpointing": False, "warmup": 0, "repeats": 1}  # fmt: skip
    result = bench.measure(spec)
    assert result["batch"] == 1 and result["median_s"] > 0 and result["parameters"] == 1_776_740


@pytest.mark.slow  # spawns a measurement process (a few s of imports)
def test_main_writes_json_with_sampling_limit(bench, tmp_path) -> None:
    out = tmp_path / "unet3d.json"
    bench.main(
        [
            "--preset",
            "tiny",
            "--frames",
            "16",
            "--modes",
            "fwd",
            "--warmup",
            "0",
            "--repeats",
            "1",
            "--out",
            str(out),
        ]
    )
    saved = json.loads(out.read_text())
    limit = saved["sampling_limit"]
    assert limit["sample_flops"] == 200 * 2 * limit["forward_flops_batch1"]
    assert limit["seconds_at_peak"] == pytest.approx(limit["sample_flops"] / 790e12)
    assert saved["results"][0]["median_s"] > 0


def test_auto_batch_is_refused_on_cpu(bench) -> None:
    with pytest.raises(SystemExit):
        bench.main(["--batch", "auto"])
