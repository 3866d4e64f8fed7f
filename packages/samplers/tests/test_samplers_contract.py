"""The contract every continuous sampler passes (diffusers' SchedulerCommonTest pattern): shapes,
dtypes (float32 and bfloat16 inputs), seeded determinism, the number of model calls, and one batched
call per step under classifier-free guidance. The model is the exact denoiser of independent
Gaussian stems on MSG-LD's latent layout (B, S, C, T, F), shrunk."""

from __future__ import annotations

import pytest
import torch

from stemforge.samplers import (
    ClassifierFreeGuidance,
    DiagonalGaussianDenoiser,
    NoiseSchedule,
    ddim_sample,
    ddpm_sample,
    dpm_solver_pp_2m_sample,
    dpm_solver_pp_3m_sample,
    inpaint_sample,
    msdm_dirac_separate,
    msdm_gaussian_separate,
    repaint_moves,
)

SHAPE = (2, 4, 2, 8, 4)  # (B, S, C, T, F)
STEPS = 10


class CountingModel:
    """Records every call's batch size, input dtype and condition keys."""

    def __init__(self, model) -> None:
        self.model = model
        self.calls: list[tuple[int, torch.dtype, tuple[str, ...]]] = []

    def __call__(self, x, t, cond):
        assert t.shape == (x.shape[0],) and t.dtype == torch.float32
        self.calls.append((x.shape[0], x.dtype, tuple(sorted(cond)) if cond else ()))
        return self.model(x, t, cond)


class SamplerContract:
    stochastic = True
    expected_calls = STEPS

    def sample(
        self, model, x_T: torch.Tensor, schedule: NoiseSchedule, gen: torch.Generator, cond
    ) -> torch.Tensor:
        raise NotImplementedError

    @pytest.fixture
    def setup(self):
        schedule = NoiseSchedule.from_name("msgld")
        gen = torch.Generator().manual_seed(0)
        mean = torch.randn(SHAPE[1:], generator=gen)
        var = 0.2 + torch.rand(SHAPE[1:], generator=gen)
        return schedule, DiagonalGaussianDenoiser(mean, var, schedule)

    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    def test_shape_dtype_and_model_dtype(self, setup, dtype) -> None:
        schedule, oracle = setup
        model = CountingModel(oracle)
        x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1)).to(dtype)
        out = self.sample(model, x_T, schedule, torch.Generator().manual_seed(2), None)
        assert out.shape == SHAPE and out.dtype == dtype and bool(torch.isfinite(out.float()).all())
        assert all(call_dtype == dtype for _, call_dtype, _ in model.calls)
        assert len(model.calls) == self.expected_calls

    def test_seeded_determinism(self, setup) -> None:
        schedule, oracle = setup
        x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
        a = self.sample(oracle, x_T, schedule, torch.Generator().manual_seed(7), None)
        b = self.sample(oracle, x_T, schedule, torch.Generator().manual_seed(7), None)
        c = self.sample(oracle, x_T, schedule, torch.Generator().manual_seed(8), None)
        assert torch.equal(a, b)
        assert torch.equal(a, c) != self.stochastic
        assert torch.equal(
            x_T, torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
        )  # input untouched

    def test_one_batched_call_per_step_with_cfg(self, setup) -> None:
        schedule, oracle = setup
        model = CountingModel(oracle)
        guided = ClassifierFreeGuidance(model, 2.0)
        cond = {"mix_latent": torch.randn(SHAPE[0], *SHAPE[2:])}
        x_T = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
        self.sample(guided, x_T, schedule, torch.Generator().manual_seed(2), cond)
        assert len(model.calls) == self.expected_calls
        assert all(batch == 2 * SHAPE[0] and keys == ("drop", "mix_latent") for batch, _, keys in model.calls)


class TestDDPM(SamplerContract):
    def sample(self, model, x_T, schedule, gen, cond):
        return ddpm_sample(model, x_T, schedule, num_steps=STEPS, cond=cond, generator=gen)


class TestDDIM(SamplerContract):
    def sample(self, model, x_T, schedule, gen, cond):
        return ddim_sample(model, x_T, schedule, num_steps=STEPS, eta=1.0, cond=cond, generator=gen)


class TestDDIMDeterministic(SamplerContract):
    stochastic = False

    def sample(self, model, x_T, schedule, gen, cond):
        return ddim_sample(model, x_T, schedule, num_steps=STEPS, eta=0.0, cond=cond, generator=gen)


class TestDPMSolver(SamplerContract):
    stochastic = False

    def sample(self, model, x_T, schedule, gen, cond):
        return dpm_solver_pp_2m_sample(model, x_T, schedule, num_steps=STEPS, cond=cond, generator=gen)


class TestDPMSolver3M(SamplerContract):
    stochastic = False

    def sample(self, model, x_T, schedule, gen, cond):
        return dpm_solver_pp_3m_sample(model, x_T, schedule, num_steps=STEPS, cond=cond, generator=gen)


class TestInpainting(SamplerContract):
    walk = repaint_moves(STEPS, 2, 3)
    expected_calls = sum(1 for a, b in zip([0, *walk], walk) if b > a)

    def sample(self, model, x_T, schedule, gen, cond):
        given = torch.randn(x_T.shape, generator=torch.Generator().manual_seed(3)).to(x_T.dtype)
        mask = torch.tensor([[True, False, True, False], [False, False, False, True]])
        out = inpaint_sample(
            model,
            x_T,
            schedule,
            given,
            mask,
            num_steps=STEPS,
            jump_length=2,
            jump_n_sample=3,
            cond=cond,
            generator=gen,
        )
        assert torch.equal(out[mask], given[mask])
        return out


class TestMSDMDirac(SamplerContract):
    expected_calls = 2 * STEPS

    def sample(self, model, x_T, schedule, gen, cond):
        mixture = torch.randn(x_T.shape[0], *x_T.shape[2:], generator=torch.Generator().manual_seed(3)).to(
            x_T.dtype
        )
        return msdm_dirac_separate(
            model, mixture, x_T, schedule, num_steps=STEPS, num_resamples=2, cond=cond, generator=gen
        )


class TestMSDMGaussian(SamplerContract):
    expected_calls = 2 * STEPS

    def sample(self, model, x_T, schedule, gen, cond):
        mixture = torch.randn(x_T.shape[0], *x_T.shape[2:], generator=torch.Generator().manual_seed(3)).to(
            x_T.dtype
        )
        return msdm_gaussian_separate(
            model, mixture, x_T, schedule, num_steps=STEPS, num_resamples=2, cond=cond, generator=gen
        )


def test_callbacks_and_progress_hooks() -> None:
    schedule = NoiseSchedule.from_name("msgld")
    oracle = DiagonalGaussianDenoiser(torch.zeros(3), torch.ones(3), schedule)
    seen, wrapped = [], []

    def progress(iterable):
        wrapped.append(True)
        return iterable

    ddim_sample(oracle, torch.randn(2, 3), schedule, num_steps=5, callback=seen.append, progress=progress)
    assert wrapped == [True] and [info.index for info in seen] == [0, 1, 2, 3, 4]
    assert [info.t for info in seen] == [999.0, 749.0, 500.0, 250.0, 0.0]
    assert seen[-1].x.shape == (2, 3) and seen[-1].denoised.shape == (2, 3)


def test_bad_inputs_get_clear_errors() -> None:
    schedule = NoiseSchedule.from_name("msgld")
    oracle = DiagonalGaussianDenoiser(torch.zeros(3), torch.ones(3), schedule)
    with pytest.raises(TypeError, match="floating"):
        ddim_sample(oracle, torch.zeros(2, 3, dtype=torch.long), schedule, num_steps=5)
    with pytest.raises(ValueError, match="eta"):
        ddim_sample(oracle, torch.zeros(2, 3), schedule, eta=-1.0)
    with pytest.raises(ValueError, match="returned shape"):
        ddim_sample(lambda x, t, c: x[:, :2], torch.zeros(2, 3), schedule, num_steps=5)
    with pytest.raises(ValueError, match="stem_mask"):
        inpaint_sample(
            oracle, torch.zeros(2, 3), schedule, torch.zeros(2, 3), torch.ones(2, 2, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="without the stem axis"):
        msdm_dirac_separate(oracle, torch.zeros(2, 3), torch.zeros(2, 3, 4), schedule)
    with pytest.raises(ValueError, match="NaN"):
        ddim_sample(oracle, torch.full((2, 3), float("nan")), schedule, num_steps=5)
    with pytest.raises(ValueError, match="NaN"):
        msdm_dirac_separate(oracle, torch.full((2, 4), float("nan")), torch.zeros(2, 3, 4), schedule)
    with pytest.raises(ValueError, match="linear mixing"):
        msdm_dirac_separate(
            oracle, torch.zeros(2, 4), torch.zeros(2, 3, 4), schedule, mixing=lambda s: s.sum(1)
        )
