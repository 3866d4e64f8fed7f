"""The demonstration codec's recipe: synthetic tones in the batch, a second stage that starts from an
export (run.init_from) with the encoder frozen (model.freeze_encoder), through the real `fit` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from stemforge.train.checkpoint import export_checkpoint
from stemforge.train.config import ConfigError, TrainConfig
from stemforge.train.tasks.codec import CodecTask, latent_roughness, synthetic_tones, with_tones

ROOT = Path(__file__).resolve().parents[3]
FIXTURE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"


def test_synthetic_tones_have_their_pitch_level_and_fades():
    tones = synthetic_tones(64, 16000, 16000, torch.Generator().manual_seed(3))
    again = synthetic_tones(64, 16000, 16000, torch.Generator().manual_seed(3))
    assert torch.equal(tones, again)
    peak = tones.abs().amax(-1)
    assert bool((peak <= 10 ** (-6 / 20) + 1e-6).all()) and bool((peak >= 10 ** (-26 / 20) - 1e-6).all())
    # Every tone fades in and out (the end samples are quieter than the peak).
    assert bool((tones[:, 0].abs() < 0.01 * peak + 1e-6).all())
    # The strongest bin is a fundamental between 40 Hz and 4 kHz (1 Hz bins over one second).
    dominant = torch.fft.rfft(tones).abs().argmax(-1)
    assert bool(((dominant >= 39) & (dominant <= 4001)).all())
    batch = torch.randn(8, 16000)
    mixed = with_tones(batch, 0.25, 16000, torch.Generator().manual_seed(0))
    assert torch.equal(mixed[2:], batch[2:]) and not torch.equal(mixed[:2], batch[:2])


def _config(**data) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "task": "waveform_ae",
            "model": {"preset": "tiny", **data.pop("model", {})},
            "data": {"stems": ["bass"], **data},
        }
    )


def test_tone_and_freeze_options_are_checked():
    with pytest.raises(ConfigError, match=r"data.tone_fraction must be in \[0, 1\)"):
        CodecTask(_config(tone_fraction=1.0))
    with pytest.raises(ConfigError, match=r"model\.freeze_encoder must be true or false"):
        CodecTask(_config(model={"freeze_encoder": "yes"}))
    with pytest.raises(ConfigError, match=r"model\.mel_weight must be a number >= 0"):
        CodecTask(_config(model={"mel_weight": -1}))
    with pytest.raises(ConfigError, match=r"model\.mel_weight adds a log-mel L1 term"):
        CodecTask(_config(model={"mel_weight": 1.0, "adversarial": True}))
    model = CodecTask(_config(model={"freeze_encoder": True})).build_model()
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in model.decoder.parameters())


def test_mel_weight_adds_the_log_mel_l1_of_msgld_front_end_to_the_loss():
    from stemforge.codec import MelConfig, MelFrontEnd

    plain, with_mel = CodecTask(_config()), CodecTask(_config(model={"mel_weight": 0.5}))
    model = plain.build_model().eval()
    wave = torch.from_numpy(sf.read(FIXTURE / "bass.flac", dtype="float32")[0][:8192])[None]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        base, base_terms = plain.loss(model, wave, generator)
        total, terms = with_mel.loss(model, wave, generator)
        mel = MelFrontEnd(MelConfig.from_name("msgld"))
        expected = (mel(model(wave)[..., : wave.shape[-1]]) - mel(wave)).abs().mean()
    assert "mel_l1" not in base_terms
    assert terms["mel_l1"] == pytest.approx(float(expected), rel=1e-5)
    assert float(total - base) == pytest.approx(0.5 * terms["mel_l1"], rel=1e-4)


def _fit(*sets: str) -> subprocess.CompletedProcess:
    base = [
        f"data.train_tracks=[{FIXTURE}]",
        f"data.val_tracks=[{FIXTURE}]",
        "data.segment_seconds=0.256",
        "data.tone_fraction=0.25",
        "run.batch_size=1",
        "run.max_steps=2",
        "run.log_every=1",
        "run.val_every=0",
        "run.ckpt_every=2",
        "run.progress=false",
        "dist.devices=1",
    ]
    return subprocess.run(
        [sys.executable, "-m", "stemforge.train.cli", "fit", str(ROOT / "configs" / "tiny-waveform-ae.yaml")]
        + [a for s in (*base, *sets) for a in ("--set", s)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_second_stage_trains_the_decoder_only_from_the_first_stage_export(tmp_path):
    first = _fit(f"run.out_dir={tmp_path / 'stage1'}")
    assert first.returncode == 0, first.stderr[-3000:]
    stage1 = export_checkpoint(tmp_path / "stage1", tmp_path / "stage1-export", weights="raw")
    second = _fit(
        f"run.out_dir={tmp_path / 'stage2'}",
        f"run.init_from={stage1}",
        "model.freeze_encoder=true",
        "model.mel_weight=1.0",
        "optim.warmup_steps=1",
        "optim.decay=cosine",
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "mel_l1=" in (tmp_path / "stage2" / "metrics.csv").read_text()
    stage2 = export_checkpoint(tmp_path / "stage2", tmp_path / "stage2-export", weights="raw")
    before, after = load_file(stage1 / "model.safetensors"), load_file(stage2 / "model.safetensors")
    assert before.keys() == after.keys()
    encoder = [k for k in before if k.startswith("encoder.")]
    decoder = [k for k in before if k.startswith("decoder.") and before[k].is_floating_point()]
    assert encoder and decoder
    assert all(torch.equal(before[k], after[k]) for k in encoder)
    assert any(not torch.equal(before[k], after[k]) for k in decoder)
    # A folder that does not fit the model is refused before training, naming the file.
    wrong = _fit(f"run.out_dir={tmp_path / 'wrong'}", f"run.init_from={tmp_path}")
    assert wrong.returncode != 0 and "no model.safetensors there" in wrong.stderr


SHIPPED_CODEC = (
    ROOT / "apps" / "insert" / "src" / "stemforge" / "insert" / "checkpoints" / "demo-audio" / "codec"
)
SHIPPED_SIZE = (
    "model.channels=16",
    "model.max_channels=64",
    "model.strides=[2,4,8]",
    "model.latent_dim=16",
    "model.kernel_size=7",
)


def _shipped_and_trained(run: Path, export: Path) -> tuple[dict, dict]:
    """The shipped codec's autoencoder weights and the run's exported ones, under the same keys."""
    shipped = {
        k.removeprefix("autoencoder."): v
        for k, v in load_file(SHIPPED_CODEC / "model.safetensors").items()
        if k.startswith("autoencoder.")
    }
    return shipped, load_file(export_checkpoint(run, export, weights="raw") / "model.safetensors")


def _assert_only_the_decoder_moved(run: Path, export: Path) -> None:
    """The run's exported weights keep the shipped codec's encoder exactly and moved its decoder."""
    shipped, trained = _shipped_and_trained(run, export)
    assert shipped.keys() == trained.keys()
    encoder = [k for k in shipped if k.startswith("encoder.")]
    decoder = [k for k in shipped if k.startswith("decoder.") and shipped[k].is_floating_point()]
    assert encoder and decoder
    assert all(torch.equal(shipped[k], trained[k]) for k in encoder)
    assert any(not torch.equal(shipped[k], trained[k]) for k in decoder)


def test_decoder_trains_on_noisy_latents_from_a_shipped_codec_folder(tmp_path):
    """``run.init_from`` takes a waveform codec folder, and ``model.latent_noise`` trains the decoder
    on noisy latents with the encoder frozen: the encoder's weights stay those of the folder."""
    run = _fit(
        f"run.out_dir={tmp_path / 'noise'}",
        f"run.init_from={SHIPPED_CODEC}",
        *SHIPPED_SIZE,
        "model.freeze_encoder=true",
        "model.latent_noise=0.3",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    _assert_only_the_decoder_moved(tmp_path / "noise", tmp_path / "export")


def test_noise_bottleneck_trains_the_encoder_too(tmp_path):
    """``model.latent_noise`` without ``model.freeze_encoder`` is a noise bottleneck: the encoder learns
    under the decoder's noisy latents, so its weights move away from the folder's."""
    run = _fit(
        f"run.out_dir={tmp_path / 'bottleneck'}",
        f"run.init_from={SHIPPED_CODEC}",
        *SHIPPED_SIZE,
        "model.latent_noise=0.5",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    shipped, trained = _shipped_and_trained(tmp_path / "bottleneck", tmp_path / "export")
    encoder = [k for k in shipped if k.startswith("encoder.") and shipped[k].is_floating_point()]
    assert encoder and any(not torch.equal(shipped[k], trained[k]) for k in encoder)
    # With the GAN objective the option is refused before training, naming the conflict.
    gan = _fit(
        f"run.out_dir={tmp_path / 'gan'}", *SHIPPED_SIZE, "model.latent_noise=0.3", "model.adversarial=true"
    )
    assert gan.returncode == 2 and "model.adversarial" in gan.stderr


def _tiny_task(**model) -> CodecTask:
    """The tiny waveform autoencoder's task with the given training keys of ``model``."""
    return CodecTask(
        TrainConfig.from_dict(
            {
                "task": "waveform_ae",
                "model": {"preset": "tiny", **model},
                "data": {"train_tracks": [str(FIXTURE)]},
            }
        )
    )


def test_noisy_decoding_draws_its_noise_from_the_step_generator():
    task = _tiny_task(freeze_encoder=True, latent_noise=0.5)
    model = task.build_model().eval()
    wave = torch.randn(3, 4096) * 0.1
    with torch.no_grad():
        clean = model(wave)
        first = task._decode_noisy(model, wave, torch.Generator().manual_seed(5))
        again = task._decode_noisy(model, wave, torch.Generator().manual_seed(5))
        other = task._decode_noisy(model, wave, torch.Generator().manual_seed(6))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.allclose(first, clean)


@pytest.mark.parametrize("frozen", [True, False])
def test_noisy_decoding_trains_the_encoder_only_without_freeze_encoder(frozen):
    """Through the noisy latents the loss reaches the encoder (the noise bottleneck) unless it is frozen."""
    task = _tiny_task(freeze_encoder=frozen, latent_noise=0.5)
    model = task.build_model().train()
    wave = torch.randn(2, 4096) * 0.1
    task._decode_noisy(model, wave, torch.Generator().manual_seed(0)).square().mean().backward()
    encoder_grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is None for g in encoder_grads) == frozen
    assert all(p.grad is not None for p in model.decoder.parameters())


SHIPPED_PIPELINE = SHIPPED_CODEC.parent


def _denoiser_config(**model) -> TrainConfig:
    return TrainConfig.from_dict(
        {
            "task": "waveform_ae",
            "model": {
                "channels": 16,
                "max_channels": 64,
                "strides": [2, 4, 8],
                "latent_dim": 16,
                "kernel_size": 7,
                "freeze_encoder": True,
                "latent_denoiser": str(SHIPPED_PIPELINE),
                **model,
            },
            "data": {"stems": ["soprano", "alto", "tenor", "bass"], "train_tracks": [str(FIXTURE)]},
        }
    )


def test_latent_denoiser_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.latent_denoiser trains the waveform_ae decoder"):
        CodecTask(_denoiser_config(freeze_encoder=False))
    with pytest.raises(ConfigError, match=r"without model\.latent_noise"):
        CodecTask(_denoiser_config(latent_noise=0.3))
    with pytest.raises(ConfigError, match=r"is not a pipeline folder \(no pipeline.json\)"):
        CodecTask(_denoiser_config(latent_denoiser=str(SHIPPED_CODEC)))
    with pytest.raises(ConfigError, match=r"model\.latent_denoiser_max_step must be a timestep >= 0"):
        CodecTask(_denoiser_config(latent_denoiser_max_step=-1))
    # A decoder trained on another latent space's errors would be useless: refused at first use.
    task = CodecTask(_denoiser_config())
    with pytest.raises(ConfigError, match=r"codec encoder differs from this run's"):
        task.denoised_latents(task.build_model(), torch.zeros(4, 8192), torch.Generator())


def _fixture_segments(count: int, samples: int) -> torch.Tensor:
    """(count * 4, samples): consecutive segments of the held-out chorale, the four stems of a segment
    in consecutive rows (the collated codec batch)."""
    stems = torch.stack(
        [
            torch.from_numpy(sf.read(FIXTURE / f"{s}.flac", dtype="float32")[0])
            for s in ("soprano", "alto", "tenor", "bass")
        ]
    )
    return torch.cat([stems[:, k * samples : (k + 1) * samples] for k in range(count)])


def test_denoised_latents_are_the_unets_x0_prediction_of_the_true_latents():
    """The decoder's inputs are the shipped U-Net's x0-predictions of the true latents, computed in the
    pipeline's own layout and scale: at the last timestep they are the true latents within the
    schedule's first noise level; at timestep 100 they keep an error of about the noise added (the
    U-Net cannot predict the latents' fine detail, which is why the decoder must learn it)."""
    from stemforge.codec import load_codec

    codec = load_codec(SHIPPED_CODEC)
    autoencoder = codec.autoencoder
    task = CodecTask(_denoiser_config(latent_denoiser_max_step=100))
    wave = _fixture_segments(2, 8192)
    with torch.no_grad():
        clean = autoencoder.encode(wave)
        expected = codec.encode(wave.reshape(2, 4, -1))
    assert torch.allclose(task.unet_latents(autoencoder, wave), expected, atol=1e-5)
    scale = float(codec.scale_factor)
    schedule = task._denoiser_parts(autoencoder).schedule

    def error(step: int) -> float:
        latent, target = task.denoised_latents(
            autoencoder, wave, torch.Generator().manual_seed(0), steps=torch.full((2,), step)
        )
        assert torch.equal(target, wave)
        return float((latent - clean).std()) * scale

    alpha_bar = float(schedule.alphas_cumprod[100])
    added = ((1 - alpha_bar) / alpha_bar) ** 0.5  # the noise of timestep 100 in units of x0
    assert error(0) < 0.1
    assert 0.5 * added < error(100) < 1.5 * added
    # Drawn timesteps come from the step generator; tones replace the first rows, with clean latents.
    toned = CodecTask(_denoiser_config(latent_denoiser_max_step=100))
    toned.tone_fraction = 0.25
    first = toned.denoised_latents(autoencoder, wave, torch.Generator().manual_seed(3))
    again = toned.denoised_latents(autoencoder, wave, torch.Generator().manual_seed(3))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    latent, target = first
    assert not torch.equal(target[:2], wave[:2]) and torch.equal(target[2:], wave[2:])
    with torch.no_grad():
        assert torch.allclose(latent[:2], autoencoder.encode(target[:2]), atol=1e-5)


def test_decoder_trains_on_the_unets_predictions_through_fit(tmp_path):
    """`fit` with model.latent_denoiser from the shipped codec folder: the encoder stays the
    folder's (so the pipeline's latents stay valid), the decoder moves."""
    run = _fit(
        f"run.out_dir={tmp_path / 'denoised'}",
        f"run.init_from={SHIPPED_CODEC}",
        *SHIPPED_SIZE,
        "model.freeze_encoder=true",
        f"model.latent_denoiser={SHIPPED_PIPELINE}",
    )
    assert run.returncode == 0, run.stderr[-3000:]
    _assert_only_the_decoder_moved(tmp_path / "denoised", tmp_path / "export")


def test_latent_roughness_tells_a_white_latent_from_a_slow_one():
    white = torch.randn(2, 8, 4000, generator=torch.Generator().manual_seed(0))
    slow = torch.sin(torch.linspace(0, 12.0, 4000)).expand(2, 8, -1) + 0.01 * white
    assert abs(float(latent_roughness(white)) - 2.0) < 0.1
    assert float(latent_roughness(slow)) < 0.01
    # Scale-free: the encoder cannot lower it by shrinking its latent.
    assert torch.allclose(latent_roughness(white * 1e-3), latent_roughness(white), rtol=1e-4)


def test_latent_smoothness_adds_its_term_and_trains_the_encoder():
    task = _tiny_task(latent_smoothness=1.0)
    model = task.build_model().train()
    wave = _fixture_segments(2, 4096)
    loss, metrics = task.loss(model, wave, torch.Generator().manual_seed(0))
    latent = model.encode(wave).detach()
    assert metrics["roughness"] == pytest.approx(float(latent_roughness(latent)), rel=1e-4)
    plain = task._reconstruction(model(wave), wave)["loss"].detach()
    assert float(loss.detach()) == pytest.approx(float(plain) + metrics["roughness"], rel=1e-4)
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    with pytest.raises(ConfigError, match=r"model\.latent_smoothness .* encoder must train"):
        _tiny_task(latent_smoothness=1.0, freeze_encoder=True)
    with pytest.raises(ConfigError, match=r"model\.latent_smoothness must be a number >= 0"):
        _tiny_task(latent_smoothness=-1.0)
