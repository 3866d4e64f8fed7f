"""One generator per batch row: every continuous sampler then draws, for row i, exactly the noise a
one-row run with generator i draws, so a sample does not depend on how rows were batched (what a
chunked long-audio app needs for ``--batch-size`` not to change its result). Checked bit for bit
against one-row runs on the exact denoiser of independent Gaussian stems, whose arithmetic is
elementwise, so batching cannot change a rounding."""

from __future__ import annotations

import pytest
import torch

from stemforge.samplers import (
    DiagonalGaussianDenoiser,
    NoiseSchedule,
    ddim_sample,
    ddpm_sample,
    dpm_solver_pp_2m_sample,
    dpm_solver_pp_3m_sample,
    inpaint_sample,
    msdm_dirac_separate,
    msdm_gaussian_separate,
)

SHAPE = (3, 4, 2, 6, 3)  # (B, S, C, T, F)
STEPS = 8


def run_ddim(model, schedule, x_T, rows, gen):
    return ddim_sample(model, x_T, schedule, num_steps=STEPS, eta=1.0, generator=gen)


def run_ddpm(model, schedule, x_T, rows, gen):
    return ddpm_sample(model, x_T, schedule, num_steps=STEPS, generator=gen)


def run_dpm(model, schedule, x_T, rows, gen):
    return dpm_solver_pp_2m_sample(model, x_T, schedule, num_steps=STEPS, generator=gen)


def run_dpm3(model, schedule, x_T, rows, gen):
    return dpm_solver_pp_3m_sample(model, x_T, schedule, num_steps=STEPS, generator=gen)


def run_inpaint(model, schedule, x_T, rows, gen):
    """Stem mask on rows 0 and 2, a time-frame mask on row 1: both kinds at once, per row."""
    mask = torch.zeros(SHAPE[0], SHAPE[1], 1, SHAPE[3], 1, dtype=torch.bool)
    mask[0, [0, 2]] = True
    mask[1, :, :, :3] = True
    mask[2, 3] = True
    return inpaint_sample(
        model,
        x_T,
        schedule,
        rows["given"],
        mask[rows["index"]],
        num_steps=STEPS,
        jump_length=2,
        jump_n_sample=2,
        generator=gen,
    )


def run_dirac(model, schedule, x_T, rows, gen):
    return msdm_dirac_separate(
        model, rows["mixture"], x_T, schedule, num_steps=STEPS, num_resamples=2, generator=gen
    )


def run_gaussian(model, schedule, x_T, rows, gen):
    return msdm_gaussian_separate(
        model, rows["mixture"], x_T, schedule, num_steps=STEPS, num_resamples=2, generator=gen
    )


@pytest.mark.parametrize("run", [run_ddim, run_ddpm, run_dpm, run_dpm3, run_inpaint, run_dirac, run_gaussian])
def test_per_row_generators_make_rows_independent_of_batching(run):
    schedule = NoiseSchedule.from_name("msgld")
    gen = torch.Generator().manual_seed(0)
    model = DiagonalGaussianDenoiser(
        torch.randn(SHAPE[1:], generator=gen), 0.2 + torch.rand(SHAPE[1:], generator=gen), schedule
    )
    x_T = torch.randn(SHAPE, generator=gen)
    inputs = {
        "given": torch.randn(SHAPE, generator=gen),
        "mixture": torch.randn(SHAPE[0], *SHAPE[2:], generator=gen),
        "index": torch.arange(SHAPE[0]),
    }
    seeds = [11, 12, 13]
    batched = run(model, schedule, x_T, inputs, [torch.Generator().manual_seed(s) for s in seeds])
    for i, seed in enumerate(seeds):
        row = {key: value[i : i + 1] for key, value in inputs.items()}
        alone = run(model, schedule, x_T[i : i + 1], row, torch.Generator().manual_seed(seed))
        assert torch.equal(batched[i : i + 1], alone), f"row {i} differs from its one-row run"


def test_a_wrong_number_of_generators_is_refused():
    schedule = NoiseSchedule.from_name("msgld")
    model = DiagonalGaussianDenoiser(torch.zeros(2, 3), torch.ones(2, 3), schedule)
    x_T = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match="3 generators for a batch of 4 rows"):
        ddim_sample(
            model, x_T, schedule, num_steps=5, eta=1.0, generator=[torch.Generator() for _ in range(3)]
        )
