"""The combined GAN loss gives each parameter group exactly its own gradient, and the tiny vocoder
GAN trains, checkpoints and resumes with two processes and ZeRO-2.

Reference: the two losses of the alternating HiFi-GAN update computed the textbook way (the
discriminators called with their live parameters) and differentiated separately with
``torch.autograd.grad``: the discriminator loss w.r.t. the discriminators, the generator loss w.r.t.
the generator. One backward pass of the combined loss must reproduce both, and each half of it must
send nothing to the other group. float64, so the tolerance (1e-10 relative) only absorbs summation
order. The modules are in eval mode so that the spectral norm's power iteration (which updates its
vectors on every training-mode call) is the same in the combined and the reference computation.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from stemforge.codec import (
    HiFiGAN,
    HiFiGANConfig,
    MelConfig,
    MelFrontEnd,
    MultiPeriodDiscriminator,
    MultiScaleDiscriminator,
    discriminator_adversarial_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from stemforge.train.checkpoint import check_checkpoint_files, export_checkpoint, load_exported, read_meta
from stemforge.train.tasks.adversarial import AdversarialCodec, simultaneous_gan_losses

ROOT = Path(__file__).resolve().parents[3]


def _tiny_gan() -> tuple[AdversarialCodec, MelFrontEnd]:
    torch.manual_seed(0)
    mel = MelFrontEnd(MelConfig.from_name("msgld")).double()

    def reconstruction(fake: torch.Tensor, real: torch.Tensor) -> dict[str, torch.Tensor]:
        l1 = F.l1_loss(mel(fake), mel(real))
        return {"loss": 45.0 * l1, "mel_l1": l1}

    generator = HiFiGAN(HiFiGANConfig.from_name("tiny"))
    discriminators = [MultiPeriodDiscriminator((2, 3), channels=0.05), MultiScaleDiscriminator(channels=0.05)]
    model = AdversarialCodec(generator, discriminators, reconstruction, adversarial_weight=1.0)
    return model.double().eval(), mel


def _grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def test_combined_loss_gives_each_group_only_its_own_gradient():
    model, mel = _tiny_gan()
    real = 0.3 * torch.randn(2, 1600, dtype=torch.float64)  # 10 mel frames of hop 160
    inputs = mel(real)
    g_params = list(model.generator.parameters())
    d_params = list(model.discriminators.parameters())

    terms = model(inputs, real, adversarial=True)
    combined_g = _grads(terms["loss"], g_params)
    combined_d = _grads(terms["loss"], d_params)

    # Textbook reference: live discriminators, separate gradients.
    fake = model.generator(inputs)[..., : real.shape[-1]]
    real_scores, real_maps, fake_scores, fake_maps, det_scores = [], [], [], [], []
    for d in model.discriminators:
        s, f = d(real)
        real_scores += s
        real_maps += f
        s, f = d(fake)
        fake_scores += s
        fake_maps += f
        det_scores += d(fake.detach())[0]
    d_loss = discriminator_adversarial_loss(real_scores, det_scores)
    g_loss = (
        generator_adversarial_loss(fake_scores)
        + feature_matching_loss(real_maps, fake_maps)
        + 45.0 * F.l1_loss(mel(fake), mel(real))
    )
    reference_d = _grads(d_loss, d_params)
    reference_g = _grads(g_loss, g_params)

    torch.testing.assert_close(terms["d_loss"], d_loss, rtol=1e-10, atol=0)
    for got, want in zip(combined_d, reference_d, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
    for got, want in zip(combined_g, reference_g, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
    # Both groups do receive gradient (the test can fail in both directions).
    assert sum(float(g.abs().sum()) for g in combined_d) > 0
    assert sum(float(g.abs().sum()) for g in combined_g) > 0

    # Each half alone: the generator terms send nothing to D, the D loss nothing to G.
    g_terms = terms["g_adv"] + terms["fm"] + 45.0 * terms["mel_l1"]
    assert all(float(g.abs().max()) == 0 for g in _grads(g_terms, d_params))
    assert all(float(g.abs().max()) == 0 for g in _grads(terms["d_loss"], g_params))
    # ... while the textbook generator loss does reach D (what the detached call prevents).
    assert sum(float(g.abs().sum()) for g in _grads(g_loss, d_params)) > 0


def test_losses_match_the_codec_package_formulas_on_random_audio():
    model, _ = _tiny_gan()
    torch.manual_seed(1)
    real = 0.3 * torch.randn(3, 1200, dtype=torch.float64)
    fake = 0.3 * torch.randn(3, 1200, dtype=torch.float64)
    terms = simultaneous_gan_losses(list(model.discriminators), real, fake)
    real_scores, real_maps, fake_scores, fake_maps = [], [], [], []
    for d in model.discriminators:
        s, f = d(real)
        real_scores += s
        real_maps += f
        s, f = d(fake)
        fake_scores += s
        fake_maps += f
    # The batched real/fake pass equals separate passes (no batch statistics in the discriminators).
    torch.testing.assert_close(terms["d_loss"], discriminator_adversarial_loss(real_scores, fake_scores))
    torch.testing.assert_close(terms["g_adv"], generator_adversarial_loss(fake_scores))
    torch.testing.assert_close(terms["fm"], feature_matching_loss(real_maps, fake_maps))
    assert float(terms["d_loss"].detach()) > 0 and float(terms["fm"].detach()) > 0


def _fit(config: str, *sets: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "stemforge.train.cli",
            "fit",
            str(ROOT / "configs" / config),
            *[a for s in sets for a in ("--set", s)],
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _run(out_dir, *sets: str) -> subprocess.CompletedProcess:
    return _fit(
        "tiny-vocoder-gan.yaml",
        f"run.out_dir={out_dir}",
        "run.batch_size=1",
        "run.log_every=1",
        "run.val_every=0",
        "run.ckpt_every=1",
        "run.keep_last=5",
        "run.progress=false",
        "dist.devices=2",
        *sets,
    )


def _rows(out_dir) -> dict[int, dict[str, str]]:
    with (out_dir / "metrics.csv").open() as fh:
        return {int(r["step"]): r for r in csv.DictReader(fh) if r["split"] == "train"}


def _discriminator(ckpt) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(ckpt / "model.safetensors").items() if k.startswith("discriminators.")}


@pytest.mark.slow
def test_tiny_vocoder_gan_two_processes_zero2_trains_checkpoints_and_resumes(tmp_path):
    full = tmp_path / "full"
    proc = _run(full, "run.max_steps=4", "model.adversarial_start_step=2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = _rows(full)
    assert sorted(rows) == [1, 2, 3, 4]
    for step, row in rows.items():
        extras = dict(item.split("=") for item in row["extra"].split(";"))
        assert math.isfinite(float(row["loss"])) and math.isfinite(float(extras["mel_l1"]))
        # The discriminator and the adversarial terms are off before adversarial_start_step.
        assert ({"d_loss", "g_adv", "fm"} <= set(extras)) == (step > 2), (step, extras)
        for key in extras:
            assert math.isfinite(float(extras[key]))
    ckpts = full / "checkpoints"
    d1, d2, d3, d4 = (_discriminator(ckpts / f"step-{s:08d}") for s in (1, 2, 3, 4))
    assert d1 and all(torch.equal(d1[k], d2[k]) for k in d1)  # lr 0 before the start step
    assert any(not torch.equal(d2[k], d3[k]) for k in d2)  # then the discriminators train
    assert any(not torch.equal(d3[k], d4[k]) for k in d3)
    g = [load_file(ckpts / f"step-{s:08d}" / "model.safetensors") for s in (1, 2)]
    assert any(not torch.equal(g[0][k], g[1][k]) for k in g[0] if k.startswith("generator."))
    check_checkpoint_files(ckpts / "step-00000004")
    meta = read_meta(ckpts / "step-00000004")
    assert [group["name"] for group in meta["optimizer"]["groups"]] == ["generator", "discriminator"]
    assert meta["optimizer"]["groups"][1]["betas"] == [0.8, 0.99]
    assert meta["export_prefix"] == "generator."

    # Resume from step 2 (before the discriminator starts) in a new process: same losses after it.
    part = tmp_path / "part"
    (part / "checkpoints").mkdir(parents=True)
    shutil.copytree(ckpts / "step-00000002", part / "checkpoints" / "step-00000002")
    (part / "checkpoints" / "latest").write_text("step-00000002\n")
    proc = _run(part, "run.max_steps=4", "model.adversarial_start_step=2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resumed from" in proc.stderr
    resumed = _rows(part)
    for step in (3, 4):
        assert resumed[step]["loss"] == rows[step]["loss"], (step, resumed[step], rows[step])
    d4_resumed = _discriminator(part / "checkpoints" / "step-00000004")
    assert all(torch.equal(d4[k], d4_resumed[k]) for k in d4)

    # The export holds the generator only, loadable as a plain HiFiGAN.
    export = export_checkpoint(ckpts / "step-00000004", tmp_path / "export", weights="raw")
    vocoder, config = load_exported(export)
    assert isinstance(vocoder, HiFiGAN) and config["model_class"] == "stemforge.codec.HiFiGAN"
    raw = load_file(ckpts / "step-00000004" / "model.safetensors")
    for name, tensor in vocoder.state_dict().items():
        assert torch.equal(tensor, raw[f"generator.{name}"])


def _task(task: str = "vocoder", zero_stage: int = 2, **model):
    from stemforge.train.config import TrainConfig
    from stemforge.train.tasks.codec import CodecTask

    raw = {"task": task, "model": {"preset": "tiny", **model}, "dist": {"zero_stage": zero_stage}}
    return CodecTask(TrainConfig.from_dict(raw))


def test_gan_config_keys_are_checked_with_the_fix_in_the_message():
    from stemforge.train.config import ConfigError

    with pytest.raises(ConfigError, match="mel VAE"):
        _task("mel_vae", adversarial=True)
    with pytest.raises(ConfigError, match="zero_stage 0, 1 or 2"):
        _task(zero_stage=3, adversarial=True)
    with pytest.raises(ConfigError, match=r"model\.discriminator\.width"):
        _task(adversarial=True, discriminator={"width": 2})
    with pytest.raises(ConfigError, match="true or false"):
        _task(adversarial="yes")
    # Switching the GAN off keeps its keys valid (so one config serves both runs).
    assert isinstance(_task(adversarial=False, discriminator={"lr": 1e-3}).build_model(), HiFiGAN)


def test_gan_task_builds_two_parameter_groups_and_exports_the_generator():
    task = _task(
        adversarial=True,
        adversarial_start_step=5,
        discriminator={"periods": [2, 3], "channels": 0.05, "msd": False, "lr": 1e-3, "betas": [0.5, 0.9]},
    )
    model = task.build_model()
    assert isinstance(model, AdversarialCodec)
    assert [type(d).__name__ for d in model.discriminators] == ["MultiPeriodDiscriminator"]
    generator, discriminator = task.param_groups(model)
    assert generator["name"] == "generator" and "lr" not in generator  # the optim section's settings
    assert discriminator["lr"] == 1e-3 and discriminator["betas"] == (0.5, 0.9)
    assert discriminator["start_step"] == 5
    ids = {id(p) for p in generator["params"]} | {id(p) for p in discriminator["params"]}
    assert ids == {id(p) for p in model.parameters()}
    assert len(ids) == len(generator["params"]) + len(discriminator["params"])
    assert task.export_module(model) is model.generator
    task.on_step_start(4)
    assert not task._adversarial_on
    task.on_step_start(5)
    assert task._adversarial_on


@pytest.mark.slow
def test_waveform_autoencoder_gan_trains_with_spectral_and_adversarial_terms(tmp_path):
    fixture = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
    out = tmp_path / "wae"
    sets = [
        f"run.out_dir={out}",
        f"data.train_tracks=[{fixture}]",
        f"data.val_tracks=[{fixture}]",
        "data.segment_seconds=0.256",
        "model.adversarial=true",
        "model.discriminator={periods: [2, 3], channels: 0.0625}",
        "run.batch_size=1",
        "run.max_steps=3",
        "run.log_every=1",
        "run.val_every=3",
        "run.ckpt_every=3",
        "run.progress=false",
        "dist.devices=1",
    ]
    proc = _fit("tiny-waveform-ae.yaml", *sets)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    assert len(train) == 3 and len(val) == 1
    for row in train:
        extras = dict(item.split("=") for item in row["extra"].split(";"))
        assert {"d_loss", "g_adv", "fm", "convergence", "log_magnitude", "phase"} <= set(extras)
        assert all(math.isfinite(float(v)) for v in extras.values())
    # Validation scores the spectral reconstruction only.
    val_extras = dict(item.split("=") for item in val[0]["extra"].split(";"))
    assert set(val_extras) == {"convergence", "log_magnitude", "phase"}
    export = export_checkpoint(out, tmp_path / "export", weights="ema")
    autoencoder, config = load_exported(export)
    assert config["model_class"] == "stemforge.codec.WaveformAutoencoder"
    with torch.no_grad():
        assert autoencoder(0.1 * torch.randn(1, 4096)).shape == (1, 4096)
