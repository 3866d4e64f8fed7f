"""Parity of ``load_msgld_checkpoint`` with the original MSG-LD code (karchkha/MSG-LD at cf6ad1e).

The fixture (``shared/fixtures/msgld-parity``, see its README) is a tiny MSG-LD Lightning
checkpoint in the original key layout, its YAML and HiFi-GAN JSON, and ``reference.safetensors``:
fixed inputs and what the original code computed from them (float32, CPU, one thread).

Tolerances: float32 on CPU, rtol = atol = 1e-5 (the README measured <= 3e-6 between 1 and 2
threads for eps with |eps| <= 1.7; raw vs EMA weights move eps by 0.088, the wrong QKV head order
by 0.24). ``pred_x0`` is eps times sqrt((1 - a) / a) = 15.6 at t = 801 (values up to 78), so its
atol is 1e-4. The mel front end's log compresses low-energy bins near the 1e-5 clamp, where an FFT
and the original's conv1d DFT differ most; it gets atol 1e-4 on values of magnitude ~10.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
from pathlib import Path

import pytest
import torch

from stemforge.pipelines import MultiTrackPipeline, PipelineError, load_msgld_checkpoint
from stemforge.pipelines.msgld import (
    SCHEDULE_BUFFERS,
    msgld_ddim_parameters,
    msgld_ddim_timesteps,
    msgld_log_mel,
    msgld_schedule_buffers,
    read_msgld_config,
)
from stemforge.pipelines.progress import SilentReporter

ROOT = Path(__file__).resolve().parents[3]
_CANDIDATES = [
    os.environ.get("STEMFORGE_MSGLD_FIXTURES", ""),
    ROOT / "shared" / "fixtures" / "msgld-parity",
    ROOT.parent / "shared" / "fixtures" / "msgld-parity",
]
FIXTURE = next((Path(p) for p in _CANDIDATES if p and (Path(p) / "checkpoint.ckpt").is_file()), None)
pytestmark = pytest.mark.skipif(FIXTURE is None, reason="the msgld-parity fixture is not available")

RTOL = ATOL = 1e-5


def _files() -> tuple[Path, Path, Path]:
    assert FIXTURE is not None
    return FIXTURE / "checkpoint.ckpt", FIXTURE / "config.yaml", FIXTURE / "hifigan_config_16k_64.json"


def close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = RTOL, atol: float = ATOL) -> None:
    torch.testing.assert_close(actual.to(expected.dtype), expected, rtol=rtol, atol=atol)


@pytest.fixture(scope="module", autouse=True)
def _deterministic() -> None:
    torch.set_grad_enabled(False)
    yield
    torch.set_grad_enabled(True)


@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    assert FIXTURE is not None
    return load_file(str(FIXTURE / "reference.safetensors"))


@pytest.fixture(scope="module")
def pipes() -> dict[str, MultiTrackPipeline]:
    ckpt, config, vocoder = _files()
    return {w: load_msgld_checkpoint(ckpt, config, vocoder_config=vocoder, weights=w) for w in ("ema", "raw")}


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    ckpt, _, _ = _files()
    return dict(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])


# ---- the loaded pipeline -------------------------------------------------------------------


def test_pipeline_fields(pipes: dict[str, MultiTrackPipeline]) -> None:
    pipe = pipes["ema"]
    assert isinstance(pipe, MultiTrackPipeline)
    assert pipe.stems == ("bass", "drums", "guitar", "piano")
    assert pipe.mode == "msgld" and pipe.prediction == "epsilon" and pipe.target is None
    assert pipe.sample_rate == 16000
    # latent_t_size 16 x VAE compression 4 x hop 160 / 16 kHz
    assert pipe.segment_seconds == pytest.approx(0.64)
    assert float(pipe.codec.scale_factor) == pytest.approx(0.7311)
    cfg = pipe.unet.config
    assert (cfg.model_channels, cfg.channel_mult, cfg.num_res_blocks, cfg.head_channels) == (
        32,
        (1, 1, 1, 1),
        1,
        16,
    )
    assert cfg.attention_downsample == (2, 4, 8)
    assert pipe.codec.config.vocoder.upsample_initial_channel == 32


def test_yaml_reader_matches_pyyaml() -> None:
    yaml = pytest.importorskip("yaml")
    _, config, _ = _files()
    assert read_msgld_config(config) == yaml.safe_load(config.read_text())


def test_yaml_reader_rejects_unsupported_constructs(tmp_path: Path) -> None:
    bad = tmp_path / "anchors.yaml"
    bad.write_text("model:\n  params: &p\n    timesteps: 1000\nother: *p\n")
    with pytest.raises(PipelineError, match=r"anchors\.yaml line 2: .*PyYAML"):
        read_msgld_config(bad)


# ---- U-Net -----------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", ["ema", "raw"])
def test_unet_eps_with_and_without_mixture(
    pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor], weights: str
) -> None:
    # Row 0 has the mixture latent, row 1 an all-zero mixture (the unconditional branch).
    unet = pipes[weights].unet
    eps = unet(ref["unet.z_t"], ref["unet.t"], {"mix_latent": ref["unet.mix_latent"]})
    close(eps, ref[f"unet.eps_{weights}"])
    # The zero-mixture row equals the model called without a mixture at all.
    alone = unet(ref["unet.z_t"][1:], ref["unet.t"][1:])
    close(alone, ref[f"unet.eps_{weights}"][1:])
    # What DiffusionWrapper fed the original U-Net: cat(z_t, mixture over the stems) on dim 2.
    close(
        torch.cat([ref["unet.z_t"], ref["unet.mix_latent"][:, None].expand_as(ref["unet.z_t"])], 2),
        ref["unet.unet_input"],
        0,
        0,
    )


@pytest.mark.parametrize("weights", ["ema", "raw"])
def test_unet_time_embedding(
    pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor], weights: str
) -> None:
    from stemforge.unet3d import timestep_embedding

    sinusoid = timestep_embedding(ref["unet.t"], 32)
    close(sinusoid, ref[f"unet_{weights}.timestep_embedding"])
    close(pipes[weights].unet.embedder.time_embed(sinusoid), ref[f"unet_{weights}.time_embed"])


@pytest.mark.parametrize("weights", ["ema", "raw"])
def test_unet_groupnorm_input_means(
    pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor], weights: str
) -> None:
    # Every GroupNorm's input mean per (batch, channel): observes per-channel constants (timestep
    # embedding, conv biases) that the 32-group norm removes before eps.
    unet = pipes[weights].unet
    means, hooks = {}, []
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.GroupNorm):
            original = name.replace(".skip.", ".skip_connection.")

            def hook(
                _m: torch.nn.Module, args: tuple[torch.Tensor], _out: torch.Tensor, key: str = original
            ) -> None:
                means[key] = args[0].float().mean(dim=tuple(range(2, args[0].ndim)))

            hooks.append(module.register_forward_hook(hook))
    try:
        unet(ref["unet.z_t"], ref["unet.t"], {"mix_latent": ref["unet.mix_latent"]})
    finally:
        for handle in hooks:
            handle.remove()
    prefix = f"gn_in_mean.unet_{weights}."
    expected = {k.removeprefix(prefix): v for k, v in ref.items() if k.startswith(prefix)}
    assert set(means) == set(expected) and len(expected) == 39
    for key, value in expected.items():
        close(means[key], value)


def test_guided_ddim_step(pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor]) -> None:
    """``p_sample_ddim`` at index 160 of 200 (t = 801 -> 796), guidance 2, eta 1, EMA weights,
    reproduced with stemforge's ``x0_and_eps`` and ``ddim_step``."""
    from stemforge.samplers import ddim_step, x0_and_eps

    pipe = pipes["ema"]
    x, mix = ref["unet.z_t"], ref["cond.c_concat"][:, 0]
    t = ref["ddim_step.t"]
    assert int(ref["ddim_step.index"]) == 160 and t.tolist() == [801, 801]
    # The original's batch order: [unconditional (zero mixture); conditional].
    output = pipe.unet(
        torch.cat([x, x]), torch.cat([t, t]), {"mix_latent": torch.cat([torch.zeros_like(mix), mix])}
    )
    close(output, ref["ddim_step.model_output"])
    e_u, e_c = output.chunk(2)
    eps = e_u + 2.0 * (e_c - e_u)
    steps = msgld_ddim_timesteps(200)
    t_now, t_prev = int(steps[160]), int(steps[159])
    assert t_now == 801
    alpha_bar = pipe.schedule.alpha_bar(torch.tensor([t_now, t_prev]))
    x0, eps = x0_and_eps(eps, x, alpha_bar[0].sqrt().float(), (1 - alpha_bar[0]).sqrt().float(), "epsilon")
    close(x0, ref["ddim_step.pred_x0"], atol=1e-4)
    x_prev = ddim_step(x0, eps, alpha_bar[0], alpha_bar[1], 1.0, ref["ddim_step.noise"])
    close(x_prev, ref["ddim_step.x_prev"])


# ---- codec -----------------------------------------------------------------------------------


def test_vae_encode(pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor]) -> None:
    codec = pipes["ema"].codec
    posterior = codec.vae.encode(ref["vae.input_mel"][:, 0])
    close(posterior.mean, ref["vae.posterior_mean"])
    close(posterior.logvar, ref["vae.posterior_logvar"])
    close(posterior.std, ref["vae.posterior_std"])
    # get_first_stage_encoding: scale_factor * posterior.sample()
    scaled = codec.scale_factor * (posterior.mean + posterior.std * ref["vae.sample_eps"])
    close(scaled, ref["vae.scaled_latent"])


def test_mixture_conditioning_latent(
    pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor]
) -> None:
    # Patch_Cond_Model: the scaled posterior *sample* of the mixture, repeated over the 4 stem slots.
    codec = pipes["ema"].codec
    posterior = codec.vae.encode(ref["cond.input_mix_mel"][:, 0])
    scaled = codec.scale_factor * (posterior.mean + posterior.std * ref["cond.sample_eps"])
    close(scaled[:, None].expand(-1, 4, -1, -1, -1), ref["cond.c_concat"])


def test_vae_decode(pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor]) -> None:
    codec = pipes["ema"].codec
    mel = codec.vae.decode(ref["ddim_step.pred_x0"][0] / codec.scale_factor)
    close(mel, ref["decode.mel"][:, 0])


@pytest.mark.parametrize("stage", ["vae_encoder", "vae_decoder"])
def test_vae_groupnorm_input_means(
    pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor], stage: str
) -> None:
    codec = pipes["ema"].codec
    module = codec.vae.encoder if stage == "vae_encoder" else codec.vae.decoder
    means, hooks = {}, []
    for name, sub in module.named_modules():
        if isinstance(sub, torch.nn.GroupNorm):

            def hook(
                _m: torch.nn.Module, args: tuple[torch.Tensor], _out: torch.Tensor, key: str = name
            ) -> None:
                means[key] = args[0].mean(dim=(2, 3))

            hooks.append(sub.register_forward_hook(hook))
    try:
        if stage == "vae_encoder":
            codec.vae.encode(ref["vae.input_mel"][:, 0])
        else:
            codec.vae.decode(ref["ddim_step.pred_x0"][0] / codec.scale_factor)
    finally:
        for handle in hooks:
            handle.remove()
    prefix = f"gn_in_mean.{stage}."
    expected = {k.removeprefix(prefix): v for k, v in ref.items() if k.startswith(prefix)}
    assert set(means) == set(expected)
    for key, value in expected.items():
        close(means[key], value)


def test_vocoder(pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor]) -> None:
    # The original returns 160 x frames + 32 samples (odd kernel - stride of the first upsample);
    # stemforge's HiFiGAN trims to 160 x frames. Compare those.
    wave = pipes["ema"].codec.vocoder(ref["vocoder.input_mel"].transpose(1, 2))
    expected = ref["vocoder.waveform"][:, 0]
    assert wave.shape == (1, 32 * 160) and expected.shape == (1, 32 * 160 + 32)
    close(wave, expected[:, : wave.shape[1]])


def test_mel_front_end(pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor]) -> None:
    codec = pipes["ema"].codec
    close(codec.front_end.filters, ref["frontend.mel_basis"], rtol=1e-5, atol=1e-7)
    fbank = msgld_log_mel(ref["frontend.waveform"], codec.config.mel)
    assert fbank.shape == (101, 64)
    close(fbank, ref["frontend.fbank"], atol=1e-4)
    close(
        msgld_log_mel(ref["frontend.waveform"][None], codec.config.mel).transpose(1, 2),
        ref["frontend.logmel"],
        atol=1e-4,
    )
    # The imported codec's own front end (framing "tacotron") gives the original's frames, the last
    # one cut as the original cuts its fbank to the target length; the default framing does not.
    assert codec.config.mel.framing == "tacotron"
    close(codec.mel(ref["frontend.waveform"]), ref["frontend.fbank"][:100], atol=1e-4)
    from stemforge.codec import MelConfig, MelFrontEnd

    default = MelFrontEnd(dataclasses.replace(codec.config.mel, framing="hifigan"))(ref["frontend.waveform"])
    assert default.shape == (100, 64) and float((default - ref["frontend.fbank"][:100]).abs().max()) > 0.1
    with pytest.raises(ValueError, match="framing='centre'"):
        MelConfig(framing="centre")


# ---- schedule and DDIM conventions ------------------------------------------------------------


def test_schedule_buffers(
    pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> None:
    schedule = pipes["ema"].schedule
    assert schedule.config.kind == "sqrt_linear" and schedule.num_steps == 1000
    assert (schedule.config.beta_start, schedule.config.beta_end) == (0.0015, 0.0195)
    close(schedule.betas, ref["schedule.betas_float64"], rtol=1e-12, atol=0)
    ours = msgld_schedule_buffers(schedule)
    for name in SCHEDULE_BUFFERS:
        close(ours[name], ref[f"schedule.{name}"], rtol=1e-6, atol=0)
        close(state[name], ref[f"schedule.{name}"], rtol=0, atol=0)


@pytest.mark.parametrize("num_steps", [20, 200])
def test_ddim_timesteps_and_parameters(
    pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor], num_steps: int
) -> None:
    from stemforge.samplers import timesteps

    expected = ref[f"ddim{num_steps}.timesteps"]
    assert msgld_ddim_timesteps(num_steps).tolist() == expected.tolist()
    assert expected[0] == 1 and expected[-1] == 1000 - 1000 // num_steps + 1
    # stemforge's "leading" spacing is the same grid, descending; its default "linspace" is not.
    schedule = pipes["ema"].schedule
    assert timesteps(schedule, num_steps, "leading")[::-1] == [float(t) for t in expected]
    assert timesteps(schedule, num_steps) != timesteps(schedule, num_steps, "leading")
    params = msgld_ddim_parameters(msgld_schedule_buffers(schedule)["alphas_cumprod"], num_steps, eta=1.0)
    for name in ("alphas", "alphas_prev", "sigmas", "sqrt_one_minus_alphas"):
        assert params[name].dtype == ref[f"ddim{num_steps}.{name}"].dtype
        close(params[name], ref[f"ddim{num_steps}.{name}"], rtol=1e-6, atol=0)


# ---- the recorded sampler conventions -----------------------------------------------------------


@pytest.fixture(scope="module")
def saved(
    pipes: dict[str, MultiTrackPipeline], tmp_path_factory: pytest.TempPathFactory
) -> MultiTrackPipeline:
    """The EMA pipeline written with save_pretrained and read back: the conventions come from
    its pipeline.json."""
    folder = pipes["ema"].save_pretrained(tmp_path_factory.mktemp("conventions") / "msgld")
    return MultiTrackPipeline.from_pretrained(folder)


def test_conventions_recorded_in_pipeline_json(saved: MultiTrackPipeline) -> None:
    import json

    from stemforge.pipelines.sampling import SamplerDefaults, default_eta, default_separation_guidance

    manifest = json.loads((saved.path / "pipeline.json").read_text())
    assert manifest["sampler_defaults"] == {
        "ddim_timesteps": "msgld",
        "eta": 1.0,
        "unconditional": "zero_mix",
        "guidance": {"separate": 1.0, "generate": 0.0, "arrange": 0.0},
    }
    assert saved.sampler_defaults == SamplerDefaults.msgld(1.0)
    assert default_eta(saved) == 1.0 and default_separation_guidance(saved) == 1.0


@pytest.mark.parametrize("num_steps", [20, 200])
def test_recorded_ddim_timesteps(
    saved: MultiTrackPipeline, ref: dict[str, torch.Tensor], num_steps: int
) -> None:
    from stemforge.pipelines.sampling import ddim_grid

    plan = ddim_grid(saved, num_steps)
    assert plan is not None
    grid, final = plan
    assert grid[::-1] == [float(t) for t in ref[f"ddim{num_steps}.timesteps"]] and final == 0.0
    # S not dividing 1000 gives the original's longer grid.
    assert len(ddim_grid(saved, 300)[0]) == 334  # type: ignore[index]


def test_sampling_under_recorded_conventions_visits_the_original_levels(
    saved: MultiTrackPipeline, ref: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole 20-step DDIM run through the pipelines' sampler wiring calls the U-Net at the
    original's timesteps and steps between the original's alphas / alphas_prev, the last step to
    alphas_cumprod[0] (not the clean sample), with eta 1."""
    import dataclasses

    import stemforge.samplers.ddim as ddim_module
    from stemforge.pipelines.sampling import SamplingOptions, default_eta, sample_model

    called: list[float] = []
    levels: list[tuple[float, float, float]] = []
    real_step = ddim_module.ddim_step

    def spy_step(x0, eps, abar_t, abar_next, eta, noise):  # type: ignore[no-untyped-def]
        levels.append((float(abar_t), float(abar_next), eta))
        return real_step(x0, eps, abar_t, abar_next, eta, noise)

    def unet(x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor] | None) -> torch.Tensor:
        called.append(float(t[0]))
        return torch.zeros_like(x)  # the levels do not depend on the prediction

    monkeypatch.setattr(ddim_module, "ddim_step", spy_step)
    model = dataclasses.replace(saved, unet=unet)
    x_T = ref["unet.z_t"][:1]
    options = SamplingOptions(steps=20, eta=default_eta(saved))
    sample_model(
        model, x_T, options, cond={"mix_latent": ref["unet.mix_latent"][:1]}, guidance=1.0, generator=None
    )
    assert called == [float(t) for t in ref["ddim20.timesteps"].flip(0)]
    close(torch.tensor([a for a, _, _ in levels]), ref["ddim20.alphas"].flip(0).double(), rtol=1e-6, atol=0)
    close(torch.tensor([b for _, b, _ in levels]), ref["ddim20.alphas_prev"].flip(0), rtol=1e-6, atol=0)
    assert levels[-1][1] == pytest.approx(float(ref["schedule.alphas_cumprod"][0]), rel=1e-6)
    assert {eta for _, _, eta in levels} == {1.0}


def test_arrangement_under_recorded_conventions_visits_the_original_timesteps(
    saved: MultiTrackPipeline, ref: dict[str, torch.Tensor]
) -> None:
    """Arrangement (inpainting) of the imported pipeline calls the U-Net at the original's 20
    timesteps (996 ... 46) and ends at alphas_cumprod[0]'s level, as its DDIM sampling does."""
    import dataclasses

    from stemforge.pipelines.generate import inpaint_latents
    from stemforge.pipelines.sampling import SamplingOptions

    called: list[float] = []

    def unet(x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor] | None) -> torch.Tensor:
        called.append(float(t[0]))
        return torch.zeros_like(x)

    model = dataclasses.replace(saved, unet=unet)
    x_T = ref["unet.z_t"][:1]
    mask = torch.tensor([[True, False, True, False]])
    out = inpaint_latents(
        model, x_T, x_T.clone(), mask, {}, options=SamplingOptions(steps=20, eta=0.0), generator=None
    )
    assert called == [float(t) for t in ref["ddim20.timesteps"].flip(0)]
    assert torch.equal(out[:, [0, 2]], x_T[:, [0, 2]]) and bool(torch.isfinite(out).all())


def test_guided_ddim_step_under_recorded_conventions(
    saved: MultiTrackPipeline, ref: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ddim_step.x_prev`` from the pipelines' own wiring: the recorded grid (step 160 of 200,
    t = 801 -> 796), the recorded unconditional branch (zero mixture) and eta, guidance 2 (the
    reference's w), through stemforge-samplers' ``ddim_sample``."""
    import stemforge.samplers.ddim as ddim_module
    from stemforge.pipelines.sampling import ddim_grid, default_eta, guided, unconditional
    from stemforge.samplers import ddim_sample

    x, mix = ref["unet.z_t"], ref["cond.c_concat"][:, 0]
    grid, _ = ddim_grid(saved, 200)  # type: ignore[misc]
    position = 199 - int(ref["ddim_step.index"])
    assert (grid[position], grid[position + 1]) == (801.0, 796.0)
    null = unconditional(saved, x)
    assert not bool(null["drop"].any()) and not bool(null["mix_latent"].any())
    calls: list[dict[str, torch.Tensor]] = []
    unet = saved.unet

    def recording(x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor] | None) -> torch.Tensor:
        assert cond is not None
        calls.append(cond)
        return unet(x, t, cond)

    model = guided(saved, 2.0, {"mix_latent": mix}, x)
    model.model = recording  # type: ignore[attr-defined]
    monkeypatch.setattr(ddim_module, "randn_like", lambda like, generator: ref["ddim_step.noise"])
    x_prev = ddim_sample(
        model,
        x,
        saved.schedule,
        eta=default_eta(saved),
        cond={"mix_latent": mix},
        grid=[grid[position]],
        final_timestep=grid[position + 1],
    )
    # One batched call: the unconditional rows see an all-zero mixture, nothing dropped.
    (cond,) = calls
    assert not bool(cond["drop"].any())
    assert torch.equal(cond["mix_latent"][2:], torch.zeros_like(mix))
    close(x_prev, ref["ddim_step.x_prev"])


def test_folders_without_conventions_keep_stemforge_defaults(
    pipes: dict[str, MultiTrackPipeline], tmp_path: Path
) -> None:
    import dataclasses
    import json

    from stemforge.pipelines.generate import null_condition
    from stemforge.pipelines.sampling import ddim_grid, ddim_spacing, default_eta, default_separation_guidance

    plain = dataclasses.replace(pipes["ema"], sampler_defaults=None)
    folder = plain.save_pretrained(tmp_path / "plain")
    assert "sampler_defaults" not in json.loads((folder / "pipeline.json").read_text())
    again = MultiTrackPipeline.from_pretrained(folder)
    assert again.sampler_defaults is None
    assert ddim_grid(again, 200) is None and ddim_spacing(again) == {}
    assert default_eta(again) == 1.0 and default_separation_guidance(again) == 2.0
    assert bool(null_condition(again, torch.zeros(2, 4, 8, 4, 16))["drop"].all())


def test_bad_sampler_defaults_entry(pipes: dict[str, MultiTrackPipeline], tmp_path: Path) -> None:
    import json

    folder = pipes["ema"].save_pretrained(tmp_path / "bad")
    manifest = json.loads((folder / "pipeline.json").read_text())
    for entry, message in (
        ({"ddim_timesteps": "karras"}, r"ddim_timesteps 'karras'"),
        ({"guidance": {"generate": 2.0}}, r"guidance\.generate 2\.0: generate runs the unconditional model"),
        ({"schedule": 1}, r"unknown entries \['schedule'\]"),
        ({"steps": {"generate": 10}}, r"unknown entries \['steps\.generate'\]"),
        ({"steps": {"separate": {"cfg": 0}}}, r"steps\.separate\.cfg 0: give a whole number >= 1"),
        ({"steps": {"separate": {"cfg": 2.5}}}, r"steps\.separate\.cfg 2\.5: give a whole number >= 1"),
        ({"steps": {"separate": {"karras": 5}}}, r"steps\.separate\.karras: unknown method"),
        ({"steps": {"separate": 10}}, r"steps\.separate must be a JSON object by method"),
        ({"steps": 10}, r"sampler_defaults\.steps must be a JSON object"),
        ({"task_eta": {"mix": 0.0}}, r"task_eta\.mix: unknown task"),
        ({"task_eta": {"generate": -1.0}}, r"task_eta\.generate -1\.0: give a number >= 0"),
        ({"task_eta": {"generate": "0"}}, r"task_eta\.generate '0': give a number >= 0"),
        ({"task_eta": 0.0}, r"sampler_defaults\.task_eta must be a JSON object"),
    ):
        (folder / "pipeline.json").write_text(json.dumps({**manifest, "sampler_defaults": entry}))
        with pytest.raises(PipelineError, match=r"pipeline\.json: .*" + message):
            MultiTrackPipeline.from_pretrained(folder)


class _CountingReporter(SilentReporter):
    """Counts the sampler steps a task runs."""

    def __init__(self) -> None:
        self.count = 0

    def steps(self, iterable):  # type: ignore[no-untyped-def]
        for step in iterable:
            self.count += 1
            yield step


@pytest.mark.filterwarnings("ignore:warning. the diffusion model")
def test_recorded_separation_steps(pipes: dict[str, MultiTrackPipeline], tmp_path: Path) -> None:
    """``steps.separate`` is written, read back and used by ``separate`` for the recorded method when
    no steps are given; other methods, other tasks and an explicit ``steps`` are not affected."""
    import json

    from stemforge.pipelines.sampling import SamplerDefaults, default_steps

    recorded = dataclasses.replace(SamplerDefaults(), separate_steps={"cfg": 3})
    folder = dataclasses.replace(pipes["ema"], sampler_defaults=recorded).save_pretrained(tmp_path / "steps")
    manifest = json.loads((folder / "pipeline.json").read_text())
    assert manifest["sampler_defaults"]["steps"] == {"separate": {"cfg": 3}}
    again = MultiTrackPipeline.from_pretrained(folder)
    assert again.sampler_defaults == recorded
    assert default_steps(again, "separate", "cfg") == 3 and default_steps(again, "separate", "dirac") == 50
    assert default_steps(again, "generate") == 50
    assert default_steps(dataclasses.replace(again, sampler_defaults=None), "separate", "cfg") == 50
    mix = 0.1 * torch.randn(4000, generator=torch.Generator().manual_seed(0))
    for options, expected in (({}, 3), ({"steps": 2}, 2), ({"method": "dirac", "guidance": 0.0}, 50)):
        reporter = _CountingReporter()
        again.separate(mix, 16000, reporter=reporter, allow_degenerate=True, **options)
        assert reporter.count == expected, options


# ---- round trip through the stemforge pipeline format ------------------------------------------


def test_save_pretrained_round_trip(
    pipes: dict[str, MultiTrackPipeline], ref: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    pipes["ema"].save_pretrained(tmp_path / "msgld")
    again = MultiTrackPipeline.from_pretrained(tmp_path / "msgld")
    eps = again.unet(ref["unet.z_t"], ref["unet.t"], {"mix_latent": ref["unet.mix_latent"]})
    close(eps, ref["unet.eps_ema"])
    assert float(again.codec.scale_factor) == pytest.approx(0.7311)
    assert again.stems == pipes["ema"].stems and again.segment_seconds == pytest.approx(0.64)


# ---- bad input ---------------------------------------------------------------------------------


def _write(tmp_path: Path, state: dict[str, torch.Tensor], name: str = "edited.ckpt") -> Path:
    path = tmp_path / name
    torch.save({"state_dict": state, "epoch": 0}, path)
    return path


def _load(path: Path, **kwargs: object) -> MultiTrackPipeline:
    _, config, vocoder = _files()
    return load_msgld_checkpoint(path, config, vocoder_config=vocoder, **kwargs)  # type: ignore[arg-type]


def test_missing_tensor(state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    edited = dict(state)
    del edited["model_ema.diffusion_modelinput_blocks31qkvweight"]
    with pytest.raises(
        PipelineError, match=r"edited\.ckpt.*1 missing \(model_ema\.diffusion_modelinput_blocks31qkvweight\)"
    ) as err:
        _load(_write(tmp_path, edited))
    assert "\n" not in str(err.value)


def test_surplus_tensor(state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    edited = dict(state)
    edited["cond_stage_model.proj.weight"] = torch.zeros(3)
    with pytest.raises(PipelineError, match=r"edited\.ckpt.*1 surplus \(cond_stage_model\.proj\.weight\)"):
        _load(_write(tmp_path, edited))


def test_wrong_shape(state: dict[str, torch.Tensor], tmp_path: Path) -> None:
    edited = dict(state)
    edited["first_stage_model.vocoder.conv_pre.weight"] = torch.zeros(64, 64, 7)
    with pytest.raises(
        PipelineError,
        match=r"1 with another shape \(first_stage_model\.vocoder\.conv_pre\.weight \(64, 64, 7\)",
    ):
        _load(_write(tmp_path, edited))


def test_released_vocoder_default_does_not_fit_the_tiny_one() -> None:
    ckpt, config, _ = _files()
    with pytest.raises(PipelineError, match=r"checkpoint\.ckpt.*another shape.*vocoder"):
        load_msgld_checkpoint(ckpt, config)


def test_schedule_mismatch(tmp_path: Path) -> None:
    ckpt, config, vocoder = _files()
    data = read_msgld_config(config)
    data["model"]["params"]["linear_end"] = 0.012
    with pytest.raises(PipelineError, match=r"schedule buffer 'betas' differs"):
        load_msgld_checkpoint(ckpt, data, vocoder_config=vocoder)


def test_ema_missing_needs_raw(
    state: dict[str, torch.Tensor], tmp_path: Path, ref: dict[str, torch.Tensor]
) -> None:
    path = _write(tmp_path, {k: v for k, v in state.items() if not k.startswith("model_ema.")})
    with pytest.raises(PipelineError, match=r"no EMA weights.*weights='raw'"):
        _load(path)
    pipe = _load(path, weights="raw")
    close(
        pipe.unet(ref["unet.z_t"], ref["unet.t"], {"mix_latent": ref["unet.mix_latent"]}), ref["unet.eps_raw"]
    )


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.ckpt"
    path.write_text("not a checkpoint\n")
    with pytest.raises(
        PipelineError, match=r"notes\.ckpt: not a PyTorch checkpoint \(neither a torch\.save zip"
    ) as err:
        _load(path)
    assert "\n" not in str(err.value)


class _NeedsCode:
    """Unpickling this needs code (a class from this module): weights_only refuses it."""


def test_pickle_that_needs_code(tmp_path: Path) -> None:
    path = tmp_path / "code.ckpt"
    torch.save({"state_dict": collections.OrderedDict(), "hyper_parameters": _NeedsCode()}, path)
    with pytest.raises(
        PipelineError,
        match=r"code\.ckpt: not a checkpoint that loads with torch\.load\(weights_only=True\).*"
        r"\(UnpicklingError: .*Unsupported global: GLOBAL .*_NeedsCode",
    ) as err:
        _load(path)
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)
    # A truncated zip archive is refused the same way, in one line.
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(_files()[0].read_bytes()[:4096])
    with pytest.raises(PipelineError, match=r"truncated\.ckpt: not a checkpoint that loads") as err:
        _load(truncated)
    assert "\n" not in str(err.value)


def test_missing_file_and_bad_weights_option(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match=r"nothing\.ckpt: no such file"):
        _load(tmp_path / "nothing.ckpt")
    ckpt, _, _ = _files()
    with pytest.raises(PipelineError, match=r"weights='best'"):
        _load(ckpt, weights="best")


# ---- the released models' key sets (full size, on the meta device) ------------------------------


@pytest.mark.parametrize(
    ("config_name", "preset"),
    [
        ("config/MSG-LD/multichannel_musicldm_slakh_3d_eval.yaml", "msgld-slakh"),
        ("config/MSG-LD/multichannel_musicldm_slakh_3d_eval_inpaint.yaml", "msgld-slakh-192"),
    ],
)
def test_released_key_sets(config_name: str, preset: str) -> None:
    """The keys and shapes the loader requires for the released 128- and 192-channel configs are
    exactly the released ``MusicLDM.state_dict()`` (minus the VAE's training loss), and the U-Net
    config is stemforge's preset."""
    import copy
    import json

    from stemforge.pipelines.msgld import _settings, msgld_state_dict_shapes

    assert FIXTURE is not None
    released = json.loads((FIXTURE / "released_config_keys.json").read_text())
    info = released["configs"][config_name]
    config = copy.deepcopy(read_msgld_config(_files()[1]))
    params = config["model"]["params"]
    # What the fixture README lists as the released values of the settings the tiny model changed.
    params["unet_config"]["params"].update(
        model_channels=info["model_channels"],
        channel_mult=[1, 2, 3, 5],
        num_res_blocks=2,
        num_head_channels=32,
    )
    params["first_stage_config"]["params"]["ddconfig"].update(ch=128, ch_mult=[1, 2, 4], num_res_blocks=2)
    params["latent_t_size"] = 256
    assert _settings(config, config_name).unet.name == preset
    shapes = msgld_state_dict_shapes(config)  # default vocoder: the released config_16k_64.json
    expected = {
        key: tuple(shape)
        for key, shape in zip(released["keys"], info["shapes"])
        if not key.startswith("first_stage_model.loss.")
    }
    assert shapes == expected
    unet_parameters = sum(math.prod(s) for k, s in shapes.items() if k.startswith("model.diffusion_model."))
    assert unet_parameters == info["unet_parameters"]


@pytest.mark.filterwarnings("ignore:warning. the diffusion model")
def test_recorded_task_eta(pipes: dict[str, MultiTrackPipeline], tmp_path: Path) -> None:
    """``task_eta`` is written, read back and used by the task it names when no eta is given
    (generation here: deterministic DDIM); the other tasks keep the common eta (ancestral) and an
    explicit eta wins."""
    import json

    from stemforge.pipelines.sampling import SamplerDefaults, default_eta

    recorded = dataclasses.replace(SamplerDefaults(), task_eta={"generate": 0.0, "arrange": 0.0})
    folder = dataclasses.replace(pipes["ema"], sampler_defaults=recorded).save_pretrained(tmp_path / "eta")
    manifest = json.loads((folder / "pipeline.json").read_text())
    assert manifest["sampler_defaults"]["eta"] == 1.0
    assert manifest["sampler_defaults"]["task_eta"] == {"generate": 0.0, "arrange": 0.0}
    again = MultiTrackPipeline.from_pretrained(folder)
    assert again.sampler_defaults == recorded
    assert [default_eta(again, task) for task in ("generate", "arrange", "separate", None)] == [
        0.0,
        0.0,
        1.0,
        1.0,
    ]

    def generated(**options: object) -> torch.Tensor:
        stems = again.generate(0.5, steps=4, allow_degenerate=True, **options)
        return torch.stack(list(stems.values()))

    # The same starting noise (seed) with eta 0 and with the recorded default: the same stems.
    assert torch.equal(generated(seed=1), generated(seed=1, eta=0.0))
    assert not torch.equal(generated(seed=1), generated(seed=1, eta=1.0))
    mix = 0.1 * torch.randn(4000, generator=torch.Generator().manual_seed(0))

    def separated(**options: object) -> torch.Tensor:
        stems = again.separate(mix, 16000, steps=3, allow_degenerate=True, **options)
        return torch.stack(list(stems.values()))

    assert torch.equal(separated(seed=1), separated(seed=1, eta=1.0))
    assert not torch.equal(separated(seed=1), separated(seed=1, eta=0.0))
