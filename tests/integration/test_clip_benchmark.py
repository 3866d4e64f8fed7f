"""benchmarks/pipelines/bench_clip_cpu.py, the end-to-end clip benchmark, at its tiny size.

The paper-size run takes minutes per clip; the tiny one takes the same code path (the pipeline a
user calls, the stage hooks, the JSON) so that it cannot rot between runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "pipelines" / "bench_clip_cpu.py"


def test_tiny_clip_and_song_have_a_consistent_stage_breakdown(tmp_path: Path) -> None:
    out = tmp_path / "clip.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--preset", "tiny", "--runs", "ddim:4:1", "dpm:3:2",
         "--song-seconds", "3", "--out", str(out)],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {(r["input"], r["sampler"]): r for r in report["runs"]}
    assert set(rows) == {("clip", "ddim"), ("clip", "dpm"), ("song", "ddim"), ("song", "dpm")}
    # One U-Net call per step: w = 1 runs the conditional row only, w = 2 both rows in one batch.
    assert rows["clip", "ddim"]["unet_calls"] == 4
    assert rows["clip", "dpm"]["unet_calls"] == 3
    # The 3 s song spans several 0.64 s chunks, each sampled with the same number of steps.
    song = rows["song", "ddim"]["unet_calls"]
    assert song > 4 and song % 4 == 0
    for row in report["runs"]:
        parts = [row[k] for k in ("encode_s", "unet_s", "sampler_s", "vae_decode_s", "vocode_s", "other_s")]
        # No stage is counted twice: what is left of the wall time after the timed stages is >= 0.
        assert all(p >= 0 for p in parts), row
        # Most of a separation is the U-Net and the codec, not the bookkeeping around them.
        assert row["unet_s"] + row["vae_decode_s"] + row["vocode_s"] > 0.5 * row["wall_s"], row
    assert report["peak_rss_mib"] > 0 and report["machine"]["cpu_count"] >= 1


def test_efficiency_script_counts_attention_and_checks_the_layouts_agree(tmp_path: Path) -> None:
    """benchmarks/unet3d/efficiency.py at the tiny preset: the FLOP count includes attention (more
    than FlopCounterMode sees of a CPU forward through SDPA's flash kernel) and the channels-last
    forward matched the plain one before anything was timed."""
    out = tmp_path / "eff.json"
    script = ROOT / "benchmarks" / "unet3d" / "efficiency.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--preset", "tiny", "--frames", "16", "--repeats", "1", "--out", str(out)],
        cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["channels_last_relative_error"] < 1e-4
    rates = report["median_gflops_per_s"]
    assert set(rates) == {"matmul", "unet", "unet_channels_last"} and all(v > 0 for v in rates.values())

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from stemforge.unet3d import UNet3D, UNet3DConfig

    # On CPU tensors, SDPA runs a flash kernel that FlopCounterMode does not see: fewer FLOPs.
    model = UNet3D(UNet3DConfig.from_name("tiny", attention_backend="sdpa"))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(report["latent"]), torch.zeros(1), {"mix_latent": torch.randn(1, 8, 16, 16)})
    assert report["forward_tflop"] * 1e12 > counter.get_total_flops()
