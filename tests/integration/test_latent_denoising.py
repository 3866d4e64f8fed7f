"""benchmarks/insert/latent_denoising.py: its band powers on signals whose answer is known, and the
script end to end on the embedded demonstration pipeline with a real held-out chorale (the fixture
laid out as a Slakh track)."""

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
SCRIPT = ROOT / "benchmarks" / "insert" / "latent_denoising.py"
FIXTURE = ROOT / "tests" / "fixtures" / "audio" / "chorale_demo_16k"
STEMS = ("soprano", "alto", "tenor", "bass")


def _script():
    """The script as a module (its folder holds the eval_demo_audio.py it imports)."""
    if str(SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(SCRIPT.parent))
    return importlib.import_module("latent_denoising")


def test_band_powers_of_white_noise_and_of_a_slow_wave():
    script = _script()
    white = torch.randn(64, 4, 4, 512, 4, generator=torch.Generator().manual_seed(0))
    share = script.band_powers(white)
    share = share / share.sum()
    widths = torch.tensor(script.BAND_EDGES[1:]) - torch.tensor(script.BAND_EDGES[:-1])
    assert torch.allclose(share, widths, atol=0.01)
    slow = torch.sin(torch.arange(512) * 2 * torch.pi * 4 / 512)[:, None].expand(512, 4)
    share = script.band_powers(slow)
    assert float(share[0] / share.sum()) > 0.99


def test_script_on_the_embedded_pipeline_with_a_real_chorale(tmp_path):
    from stemforge.insert.embedded import demo_audio_checkpoint

    track = tmp_path / "test" / "Track00001"
    (track / "stems").mkdir(parents=True)
    lines = ["stems:"]
    for i, stem in enumerate(STEMS):
        data, rate = sf.read(FIXTURE / f"{stem}.flac", dtype="float32")
        sf.write(track / "stems" / f"S0{i}.flac", data, rate)
        lines += [f"  S0{i}:", f"    stem_name: {stem}"]
    (track / "metadata.yaml").write_text("\n".join(lines) + "\n")
    out = tmp_path / "denoising.json"
    subprocess.run(
        [sys.executable, str(SCRIPT), "--checkpoint", str(demo_audio_checkpoint()), "--corpus",
         str(tmp_path / "test"), "--tracks", "1", "--seconds", "2.56", "--offset", "0",
         "--timesteps", "0", "100", "--out", str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert len(result["true_latent_power_share"]) == 5
    assert sum(result["true_latent_power_share"]) == pytest.approx(1.0, abs=1e-3)
    clean, noisy = result["timesteps"]["0"], result["timesteps"]["100"]
    assert all(v == 0.0 for v in clean["x0_error_std"].values())
    # The codec's round trip keeps every stem nearest its own profile (the reference is the stem).
    assert all(clean["decoded"][s]["closest_to_own_stem"] == "1/1" for s in STEMS)
    # The U-Net removes part of the noise of timestep 100, not all of it (its latents' fine detail).
    assert all(0.0 < r < 1.0 for r in noisy["error_over_noise_power_by_band"])
    assert all(0.1 < e < 1.0 for e in noisy["x0_error_std"].values())
    assert all(noisy["decoded"][s]["rms_db"] > -60.0 for s in STEMS)
