"""benchmarks/insert/latent_stats.py: the per-stem latent statistics it reports, on latents whose
answer is known, and the script end to end on the embedded demonstration pipeline with real latents
(the held-out chorale fixture encoded by the pipeline's own codec, as ``stemforge-train cache``
stores them: scaled, (N, S, C, T, F))."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "insert" / "latent_stats.py"
FIXTURE = ROOT / "tests" / "fixtures" / "audio" / "chorale_demo_16k"
STEMS = ("soprano", "alto", "tenor", "bass")


def _script():
    spec = importlib.util.spec_from_file_location("latent_stats", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_stem_stats_reads_level_rests_and_channel_means():
    gen = torch.Generator().manual_seed(0)
    latents = torch.randn(16, 2, 4, 64, 4, generator=gen)
    latents[:, 0, :, 32:] = 0.0  # stem 0 rests for half of every item
    latents[:, 1] = 3.0 * latents[:, 1] + 0.5  # stem 1: three times louder, offset by 0.5
    stats = _script().stem_stats(latents, ("a", "b"))
    assert stats["a"]["rest_fraction"] == pytest.approx(0.5)
    assert stats["b"]["rest_fraction"] == pytest.approx(0.0, abs=0.02)
    assert stats["b"]["std"] == pytest.approx(3.0, rel=0.05)
    assert stats["a"]["std"] == pytest.approx(0.5**0.5, rel=0.05)  # zeros in half of the frames
    assert stats["b"]["channel_mean"] == pytest.approx([0.5] * 4, abs=0.1)


def test_script_on_the_embedded_pipeline_with_real_latents(tmp_path):
    from safetensors.torch import save_file

    from stemforge.insert.embedded import demo_audio_checkpoint
    from stemforge.pipelines import MultiTrackPipeline

    pipe = MultiTrackPipeline.from_pretrained(demo_audio_checkpoint())
    assert tuple(pipe.stems) == STEMS
    wave = torch.stack([torch.from_numpy(sf.read(FIXTURE / f"{s}.flac", dtype="float32")[0]) for s in STEMS])
    segment = round(1.28 * 16000)
    items = torch.stack([wave[:, i * segment : (i + 1) * segment] for i in range(4)])
    with torch.no_grad():
        latents = pipe.codec.encode(items, sample_rate=16000)
    (tmp_path / "cache" / "val").mkdir(parents=True)
    save_file({"stems": latents.contiguous()}, str(tmp_path / "cache" / "val" / "shard-00000.safetensors"))
    out = tmp_path / "stats.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--checkpoint", str(demo_audio_checkpoint()), "--latents",
         str(tmp_path / "cache"), "--samples", "2", "--steps", "3", "--eta", "1", "0", "--out", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert result["latent_shape"] == list(latents.shape[1:]) and result["real"]["items"] == 4
    real = result["real"]["stems"]
    # The codec's latents of real stems are about unit scale (its scale factor is 1 / latent std).
    assert all(0.3 < real[s]["std"] < 3.0 for s in STEMS)
    assert set(result["generated"]) == {"eta 1", "eta 0"}
    for block in result["generated"].values():
        assert set(block["stems"]) == set(STEMS)
        assert all(0.0 < block["stems"][s]["std"] < 10.0 for s in STEMS)


def test_script_names_a_missing_cache(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--checkpoint", str(tmp_path), "--latents", str(tmp_path),
         "--out", str(tmp_path / "x.json")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and "stemforge-train cache" in done.stderr
    assert not (tmp_path / "x.json").exists()
