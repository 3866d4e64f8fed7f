"""Arrangement by inpainting: the given stems come back exactly, and the generated stems follow
their conditional distribution given the given ones.

For independent stems the conditional is the marginal, and MSG-LD's replacement scheme is exact
(the optimal denoiser factorises over stems): mean within 5 SE, variance within 5 SE of a variance
(v sqrt(2 / n)). For correlated stems replacement is known to be approximate (Lugmayr et al. 2022,
section 4.2): with correlation 0.8 it recovers a regression slope of 0.50 instead of 0.80
(measured), and RePaint resampling moves it toward the truth (0.71 with 5 resamples per step)."""

from __future__ import annotations

import torch

from stemforge.samplers import (
    DiagonalGaussianDenoiser,
    GaussianMixtureDenoiser,
    inpaint_sample,
    repaint_moves,
)


def test_repaint_walk() -> None:
    assert repaint_moves(4, 1, 1) == [1, 2, 3, 4]
    assert repaint_moves(4, 1, 2) == [1, 0, 1, 2, 1, 2, 3, 2, 3, 4]
    assert repaint_moves(6, 2, 2) == [1, 2, 1, 0, 1, 2, 3, 4, 3, 2, 3, 4, 5, 6]
    walk = repaint_moves(20, 3, 4)
    assert walk[-1] == 20 and all(abs(b - a) == 1 for a, b in zip([0, *walk], walk))
    assert (
        sum(1 for a, b in zip([0, *walk], walk) if b < a) == 3 * 3 * 6
    )  # 6 jump points, 3 extra passes of 3


def test_independent_stems_are_exactly_conditioned(msgld_schedule) -> None:
    gen = torch.Generator().manual_seed(0)
    n, shape = 3000, (4, 2, 3)  # (S, C, T)
    mean = torch.randn(shape, generator=gen, dtype=torch.float64)
    var = 0.2 + torch.rand(shape, generator=gen, dtype=torch.float64)
    oracle = DiagonalGaussianDenoiser(mean, var, msgld_schedule)
    given = oracle.sample(n, gen).float()
    mask = torch.zeros(n, 4, dtype=torch.bool)
    mask[:, [0, 2]] = True  # bass and guitar given, drums and piano generated
    out = inpaint_sample(
        oracle,
        torch.randn(n, *shape, generator=gen),
        msgld_schedule,
        given,
        mask,
        num_steps=250,
        generator=gen,
    )
    assert torch.equal(out[:, [0, 2]], given[:, [0, 2]])
    generated = out[:, [1, 3]].double()
    m, v = mean[[1, 3]], var[[1, 3]]
    assert bool(((generated.mean(0) - m).abs() < 5 * (v / n).sqrt()).all())
    # 5 SE of a variance, plus 5% for the discretisation: DDIM with eta = 1 shrinks the variance by a
    # first-order amount, measured 3.6% at 250 steps (8.5% at 100) on a unit Gaussian
    assert bool(((generated.var(0) - v).abs() < 5 * v * (2 / n) ** 0.5 + 0.05 * v).all())


def slope_and_residual(out: torch.Tensor, mean: torch.Tensor, rho: float) -> tuple[float, float]:
    x1, x2 = out[:, 0, 0].double(), out[:, 1, 0].double()
    slope = torch.cov(torch.stack([x1, x2]))[0, 1].item() / x1.var().item()
    resid = x2 - (mean[1] + rho * (x1 - mean[0]))
    return slope, resid.mean().item()


def test_correlated_stems_repaint_improves_on_replacement(msgld_schedule) -> None:
    rho = 0.8
    means = torch.tensor([[0.5, -0.5]], dtype=torch.float64)
    oracle = GaussianMixtureDenoiser(
        means, torch.tensor([[[1.0, rho], [rho, 1.0]]]), torch.ones(1), msgld_schedule
    )
    gen = torch.Generator().manual_seed(1)
    n = 3000
    given = oracle.sample(n, gen).reshape(n, 2, 1).float()
    mask = torch.zeros(n, 2, dtype=torch.bool)
    mask[:, 0] = True
    x_T = torch.randn(n, 2, 1, generator=gen)
    plain = inpaint_sample(oracle, x_T, msgld_schedule, given, mask, num_steps=100, generator=gen)
    repaint = inpaint_sample(
        oracle, x_T, msgld_schedule, given, mask, num_steps=100, jump_n_sample=5, generator=gen
    )
    assert torch.equal(plain[:, 0], given[:, 0]) and torch.equal(repaint[:, 0], given[:, 0])
    slope_plain, bias_plain = slope_and_residual(plain, means[0], rho)
    slope_repaint, bias_repaint = slope_and_residual(repaint, means[0], rho)
    assert abs(slope_plain - 0.5) < 0.08  # replacement's known shortfall (SE of a slope ~0.02)
    assert abs(slope_repaint - rho) < 0.5 * abs(slope_plain - rho)
    # the conditional mean's offset is right in both (residual mean within 5 SE, SE ~ 0.6 / sqrt(n))
    assert abs(bias_plain) < 5 * 0.8 / n**0.5 and abs(bias_repaint) < 5 * 0.8 / n**0.5


def test_element_mask_equal_to_a_stem_mask_gives_the_same_sample(msgld_schedule) -> None:
    """An element mask (B, S, 1, 1) or fully expanded (B, S, C, T) is the stem mask (B, S) itself."""
    gen = torch.Generator().manual_seed(2)
    n, shape = 64, (3, 2, 5)
    oracle = DiagonalGaussianDenoiser(
        torch.randn(shape, generator=gen, dtype=torch.float64),
        0.2 + torch.rand(shape, generator=gen, dtype=torch.float64),
        msgld_schedule,
    )
    given = oracle.sample(n, gen).float()
    x_T = torch.randn(n, *shape, generator=gen)
    stem_mask = torch.rand(n, 3, generator=gen) < 0.5

    def run(mask: torch.Tensor) -> torch.Tensor:
        return inpaint_sample(
            oracle,
            x_T,
            msgld_schedule,
            given,
            mask,
            num_steps=20,
            jump_n_sample=2,
            generator=torch.Generator().manual_seed(7),
        )

    reference = run(stem_mask)
    assert torch.equal(run(stem_mask[:, :, None, None]), reference)
    assert torch.equal(run(stem_mask[:, :, None, None].expand(n, *shape).clone()), reference)


def test_time_frame_mask_keeps_known_frames_and_samples_the_rest_exactly(msgld_schedule) -> None:
    """Frames 0..2 of every stem given (a continuation's overlap), frames 3..5 generated. For a
    factorised (diagonal) prior the conditional is the marginal: same tolerances as above."""
    gen = torch.Generator().manual_seed(3)
    n, shape = 3000, (2, 1, 6)  # (S, C, T)
    mean = torch.randn(shape, generator=gen, dtype=torch.float64)
    var = 0.2 + torch.rand(shape, generator=gen, dtype=torch.float64)
    oracle = DiagonalGaussianDenoiser(mean, var, msgld_schedule)
    given = oracle.sample(n, gen).float()
    frames = torch.zeros(1, 1, 1, 6, dtype=torch.bool)
    frames[..., :3] = True
    out = inpaint_sample(
        oracle,
        torch.randn(n, *shape, generator=gen),
        msgld_schedule,
        given,
        frames,
        num_steps=250,
        generator=gen,
    )
    assert torch.equal(out[..., :3], given[..., :3])
    generated = out[..., 3:].double()
    m, v = mean[..., 3:], var[..., 3:]
    assert bool(((generated.mean(0) - m).abs() < 5 * (v / n).sqrt()).all())
    assert bool(((generated.var(0) - v).abs() < 5 * v * (2 / n) ** 0.5 + 0.05 * v).all())


def test_masks_of_the_wrong_shape_or_type_are_refused(msgld_schedule) -> None:
    import pytest

    oracle = DiagonalGaussianDenoiser(torch.zeros(2, 3), torch.ones(2, 3), msgld_schedule)
    x = torch.randn(4, 2, 3)
    for mask, words in (
        (torch.ones(4, 2), "bool"),
        (torch.ones(4, 3, dtype=torch.bool), "(B, S) = (4, 2)"),
        (torch.ones(4, 2, 2, dtype=torch.bool), "broadcast"),
        (torch.ones(1, 1, 1, 3, dtype=torch.bool), "broadcast"),
    ):
        with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
            inpaint_sample(oracle, x, msgld_schedule, x, mask, num_steps=2)


def test_explicit_grid_and_final_level_as_ddim_sample(msgld_schedule) -> None:
    """With nothing given and eta = 0, inpainting is DDIM: under the same explicit grid and final
    level (MSG-LD's original: 996, 946, ..., 46 then abar_0) both give the same samples, which
    differ from the default grid's; a grid that is not descending is refused."""
    from stemforge.samplers import ddim_sample

    gen = torch.Generator().manual_seed(1)
    shape = (4, 2, 3)
    oracle = DiagonalGaussianDenoiser(
        torch.randn(shape, generator=gen, dtype=torch.float64),
        0.5 + torch.zeros(shape, dtype=torch.float64),
        msgld_schedule,
    )
    x_T = torch.randn(8, *shape, generator=gen)
    nothing = torch.zeros(8, 4, dtype=torch.bool)
    grid = [float(t) for t in range(996, 0, -50)]
    common = {"eta": 0.0, "grid": grid, "final_timestep": 0}
    inpainted = inpaint_sample(
        oracle, x_T, msgld_schedule, torch.zeros_like(x_T), nothing, num_steps=len(grid), **common
    )
    sampled = ddim_sample(oracle, x_T, msgld_schedule, num_steps=len(grid), **common)
    assert torch.allclose(inpainted, sampled, atol=1e-6)
    default = inpaint_sample(
        oracle, x_T, msgld_schedule, torch.zeros_like(x_T), nothing, num_steps=len(grid), eta=0.0
    )
    assert not torch.allclose(default, inpainted, atol=1e-4)
    import pytest

    with pytest.raises(ValueError, match="strictly descending"):
        inpaint_sample(oracle, x_T, msgld_schedule, x_T, nothing, grid=[10.0, 20.0])
