"""The tiny LDM and the tiny MIDI insertion model trained by two real CPU processes (gloo) with
DeepSpeed ZeRO-2, then exported and reloaded.

The LDM trains from a latent cache written by ``stemforge-train cache`` with a real tiny mel VAE
codec (seeded initialisation, saved with stemforge-codec's ``save_codec``; an untrained codec is
enough to exercise the cache and the diffusion loop, not to judge audio quality).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stemforge.train.cli", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def rows(out_dir: Path) -> list[dict[str, str]]:
    with (out_dir / "metrics.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_tiny_ldm_two_processes_from_latent_cache(tmp_path):
    from stemforge.codec import MelVAECodec, MelVAECodecConfig, save_codec

    torch.manual_seed(0)
    codec_dir = save_codec(MelVAECodec(MelVAECodecConfig.from_name("tiny")), tmp_path / "codec")
    cache = tmp_path / "latents"
    proc = run_cli(
        "cache",
        str(ROOT / "configs" / "tiny-ldm.yaml"),
        "--codec",
        str(codec_dir),
        "--out",
        str(cache),
        "--set",
        f"data.train_tracks=[{FIXTURE}]",
        "--set",
        f"data.val_tracks=[{FIXTURE}]",
        "--set",
        "data.hop_fraction=1.0",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    index = json.loads((cache / "index.json").read_text())
    assert index["stem_names"] == ["soprano", "alto", "tenor", "bass"]
    assert index["items"]["train"] == 9  # 11.9 s of audio in 1.28 s segments

    out = tmp_path / "run"
    proc = run_cli(
        "fit",
        str(ROOT / "configs" / "tiny-ldm.yaml"),
        "--set",
        f"data.latent_cache={cache}",
        "--set",
        f"run.out_dir={out}",
        "--set",
        "run.max_steps=3",
        "--set",
        "run.log_every=1",
        "--set",
        "run.val_every=3",
        "--set",
        "run.ckpt_every=3",
        "--set",
        "run.progress=false",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = rows(out)
    train = [float(r["loss"]) for r in metrics if r["split"] == "train"]
    val = [float(r["loss"]) for r in metrics if r["split"] == "val"]
    # Epsilon-prediction MSE of an untrained network is near the noise variance, 1.
    assert len(train) == 3 and all(0.5 < v < 2.0 for v in train), train
    assert len(val) == 1 and 0.5 < val[0] < 2.0
    meta = json.loads((out / "checkpoints" / "step-00000003" / "meta.json").read_text())
    assert meta["world_size"] == 2
    assert meta["export"]["model_class"] == "stemforge.unet3d.UNet3D"

    export = tmp_path / "export"
    proc = run_cli("export", str(out), str(export), "--format", "flat")
    assert proc.returncode == 0, proc.stderr[-4000:]
    from safetensors.torch import load_file

    from stemforge.train.checkpoint import load_exported

    model, config = load_exported(export)
    assert config["stem_names"] == ["soprano", "alto", "tenor", "bass"]
    ema = load_file(out / "checkpoints" / "step-00000003" / "ema.safetensors")
    for name, param in model.named_parameters():
        assert torch.equal(param.detach(), ema[f"ema.{name}"]), name

    # By default a pipeline folder with its codec (the one the latent cache records): the same U-Net,
    # the same codec, and it separates a mix.
    from stemforge.pipelines import MultiTrackPipeline

    pipeline_dir = tmp_path / "pipeline"
    proc = run_cli("export", str(out), str(pipeline_dir))
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"with the codec {codec_dir}" in proc.stdout
    pipe = MultiTrackPipeline.from_pretrained(pipeline_dir)
    for name, param in pipe.unet.named_parameters():
        assert torch.equal(param.detach(), ema[f"ema.{name}"]), name
    codec_weights, copied = (
        load_file(codec_dir / "model.safetensors"),
        load_file(pipeline_dir / "codec" / "model.safetensors"),
    )
    assert copied.keys() == codec_weights.keys()
    assert all(torch.equal(copied[k], v) for k, v in codec_weights.items())
    mix = torch.randn(16000) * 0.1
    # An untrained 3-step model: the output checks would rightly refuse its audio.
    stems = pipe.separate(mix, 16000, steps=2, seed=0, allow_degenerate=True)
    assert list(stems) == ["soprano", "alto", "tenor", "bass"]
    assert all(s.shape == mix.shape and bool(torch.isfinite(s).all()) for s in stems.values())
    codec_run = run_cli(
        "export", str(out), str(tmp_path / "no-codec"), "--format", "pipeline", "--codec", str(tmp_path)
    )
    assert codec_run.returncode == 2 and f"--codec {tmp_path}: no config.json there" in codec_run.stderr


def test_tiny_midi_two_processes_then_chain_rule_nll(tmp_path):
    out = tmp_path / "run"
    proc = run_cli(
        "fit",
        str(ROOT / "configs" / "tiny-midi.yaml"),
        "--set",
        f"run.out_dir={out}",
        "--set",
        "run.max_steps=4",
        "--set",
        "run.val_every=4",
        "--set",
        "run.ckpt_every=4",
        "--set",
        "run.progress=false",
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = rows(out)
    train = [float(r["loss"]) for r in metrics if r["split"] == "train"]
    # At initialisation the categorical loss is near ln(129) nats per variable.
    assert len(train) == 4 and all(3.0 < v < 6.0 for v in train), train
    export = tmp_path / "export"
    proc = run_cli("export", str(out), str(export), "--weights", "raw", "--format", "flat")
    assert proc.returncode == 0, proc.stderr[-4000:]

    from stemforge.samplers.discrete_nll import chain_rule_nll
    from stemforge.train.midi_eval import jsb_windows, load_midi_model

    model, config = load_midi_model(export)
    assert config["stem_names"] == ["soprano", "alto", "tenor", "bass"]
    x = jsb_windows("valid", 16, "first")[:3]
    nll = chain_rule_nll(model, x, kind="categorical", generator=torch.Generator().manual_seed(0))
    # 4 voices x 16 frames of a nearly untrained model: close to 64 ln(129) in total.
    assert nll.shape == (3,)
    assert torch.all((nll > 0.5 * 64 * 4.86) & (nll < 1.5 * 64 * 4.86)), nll

    # The same checkpoint exported by default, a stemforge-pipelines folder, scores the same windows
    # identically.
    from stemforge.pipelines import VoiceInsertionPipeline, folder_kind

    pipeline_dir = tmp_path / "pipeline"
    proc = run_cli("export", str(out), str(pipeline_dir), "--weights", "raw")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert folder_kind(pipeline_dir) == "voice-insertion"
    pipe = VoiceInsertionPipeline.from_pretrained(pipeline_dir)
    per_frame = pipe.nll(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(per_frame * 16, nll, rtol=1e-5, atol=1e-4)
    # A second export into the same folder, and --codec for a MIDI run or a flat export, are refused.
    again = run_cli("export", str(out), str(pipeline_dir), "--format", "pipeline")
    assert again.returncode != 0 and "already exists" in again.stderr
    stray = run_cli("export", str(out), str(tmp_path / "flat2"), "--codec", str(tmp_path))
    assert stray.returncode != 0 and "'midi' run, whose pipeline holds no codec" in stray.stderr
    stray = run_cli("export", str(out), str(tmp_path / "flat2"), "--format", "flat", "--codec", str(tmp_path))
    assert stray.returncode != 0 and "--codec with --format flat" in stray.stderr
    assert not (tmp_path / "flat2").exists()
