"""Prediction conversions and the DDPM loss against float64 references on random inputs; the
given-stems (arrangement) loss and its mask."""

from __future__ import annotations

import pytest
import torch

from stemforge.samplers import (
    NoiseSchedule,
    add_noise,
    convert_prediction,
    ddpm_loss,
    given_stems_loss,
    prediction_from,
    random_given_mask,
    x0_and_eps,
)


@pytest.mark.parametrize("source", ["epsilon", "v", "x0"])
@pytest.mark.parametrize("target", ["epsilon", "v", "x0"])
def test_conversions_round_trip(source: str, target: str) -> None:
    gen = torch.Generator().manual_seed(0)
    schedule = NoiseSchedule.from_name("msgld")
    t = torch.randint(0, 1000, (16,), generator=gen)
    x0 = torch.randn(16, 3, 5, generator=gen, dtype=torch.float64)
    eps = torch.randn(16, 3, 5, generator=gen, dtype=torch.float64)
    alpha, sigma = schedule.alpha(t)[:, None, None], schedule.sigma(t)[:, None, None]
    x_t = alpha * x0 + sigma * eps
    # reference targets written out from the definitions
    ref = {"epsilon": eps, "x0": x0, "v": alpha * eps - sigma * x0}
    out = convert_prediction(ref[source], x_t, alpha, sigma, source, target)  # type: ignore[arg-type]
    # x0 from epsilon divides by alpha (0.012 at t=999): float64 keeps the error at ~1e-12
    assert torch.allclose(out, ref[target], atol=1e-9)
    back_x0, back_eps = x0_and_eps(ref[source], x_t, alpha, sigma, source)  # type: ignore[arg-type]
    assert torch.allclose(back_x0, x0, atol=1e-9) and torch.allclose(back_eps, eps, atol=1e-9)


def test_epsilon_at_zero_snr_is_refused() -> None:
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="zero terminal SNR"):
        x0_and_eps(x, x, torch.tensor(0.0), torch.tensor(1.0), "epsilon")
    x0, eps = x0_and_eps(x, x, torch.tensor(0.0), torch.tensor(1.0), "v")  # v works there
    assert torch.allclose(eps, x) and torch.allclose(x0, -x)


class LinearModel:
    """A real (if small) trainable model: one weight per timestep bucket plus a bias."""

    def __init__(self) -> None:
        self.weight = torch.nn.Parameter(torch.tensor(0.3))
        self.calls: list[dict | None] = []

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: dict | None) -> torch.Tensor:
        self.calls.append(cond)
        return self.weight * x_t + 0.001 * t[:, None, None]


def test_ddpm_loss_matches_manual_computation() -> None:
    gen = torch.Generator().manual_seed(3)
    schedule = NoiseSchedule.from_name("msgld")
    x0 = torch.randn(8, 4, 6, generator=gen)
    noise = torch.randn(8, 4, 6, generator=gen)
    t = torch.randint(0, 1000, (8,), generator=gen)
    model = LinearModel()
    for prediction in ("epsilon", "v", "x0"):
        loss = ddpm_loss(model, x0, schedule, prediction=prediction, t=t, noise=noise)
        alpha = schedule.alpha(t)[:, None, None].float()
        sigma = schedule.sigma(t)[:, None, None].float()
        x_t = alpha * x0 + sigma * noise
        target = prediction_from(x0, noise, alpha, sigma, prediction)  # type: ignore[arg-type]
        manual = ((model(x_t, t.float(), None) - target) ** 2).mean()
        assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
        loss.backward()
        assert model.weight.grad is not None and model.weight.grad.abs() > 0
    assert torch.allclose(add_noise(x0, noise, schedule, t), x_t, atol=1e-6)


def test_condition_dropout_is_per_sample_and_leaves_input_alone() -> None:
    gen = torch.Generator().manual_seed(4)
    schedule = NoiseSchedule.from_name("msgld")
    model = LinearModel()
    cond = {"mix_latent": torch.randn(4000, 2, 3)}
    ddpm_loss(model, torch.randn(4000, 2, 3), schedule, cond=cond, cond_drop_prob=0.1, generator=gen)
    drop = model.calls[-1]["drop"]
    assert drop.dtype == torch.bool and drop.shape == (4000,)
    # binomial(4000, 0.1): mean 400, sd 19; 5 sd either side
    assert 305 < int(drop.sum()) < 495
    assert "drop" not in cond
    already = {"mix_latent": cond["mix_latent"], "drop": torch.ones(4000, dtype=torch.bool)}
    ddpm_loss(model, torch.randn(4000, 2, 3), schedule, cond=already, cond_drop_prob=0.1, generator=gen)
    assert bool(model.calls[-1]["drop"].all())
    with pytest.raises(ValueError, match="cond_drop_prob"):
        ddpm_loss(model, torch.randn(2, 2, 3), schedule, cond=cond, cond_drop_prob=1.5)


def test_random_given_mask_never_gives_every_stem():
    masks = [random_given_mask(64, s, torch.Generator().manual_seed(s)) for s in (1, 2, 4)]
    for mask, stems in zip(masks, (1, 2, 4), strict=True):
        assert mask.dtype == torch.bool and mask.shape == (64, stems)
        assert not bool(mask.all(1).any())
    # With 4 stems every subset but the full one turns up, at about half of the stems given.
    assert 0.3 < float(masks[2].float().mean()) < 0.5
    assert torch.equal(masks[2], random_given_mask(64, 4, torch.Generator().manual_seed(4)))


def test_given_stems_loss_scores_the_missing_stems_of_a_clean_given_input():
    schedule = NoiseSchedule.from_name("msgld")
    x0 = torch.randn(3, 4, 2, 8, 4, generator=torch.Generator().manual_seed(0))
    given = torch.tensor([[True, False, False, True], [False] * 4, [True, True, True, False]])
    seen = {}

    def model(x_t, t, cond):
        seen.update(x_t=x_t, t=t, cond=cond)
        return torch.zeros_like(x_t)

    loss = given_stems_loss(
        model, x0, schedule, given, cond={"mix_latent": x0.sum(1)}, generator=torch.Generator().manual_seed(5)
    )
    # The same draws in the documented order: timesteps, noise, dropout.
    gen = torch.Generator().manual_seed(5)
    t = torch.randint(0, schedule.num_steps, (3,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    keep = given[:, :, None, None, None]
    # A zero epsilon prediction costs noise^2, averaged over the missing stems' elements.
    expected = (noise.square() * ~keep).sum() / ((~keep).sum() * x0[0, 0].numel())
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert torch.equal(seen["t"], t.float())
    assert torch.equal(seen["x_t"][given], x0[given])
    assert not torch.allclose(seen["x_t"][~given], x0[~given])
    assert torch.equal(seen["cond"]["stem_mask"], given) and seen["cond"]["drop"].shape == (3,)
    with pytest.raises(ValueError, match="at least one stem to generate"):
        given_stems_loss(model, x0, schedule, torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        given_stems_loss(model, x0, schedule, given.float())


def test_project_to_mixture_is_the_orthogonal_projection_onto_the_known_mixture():
    from stemforge.samplers import project_to_mixture

    gen = torch.Generator().manual_seed(1)
    x0, mixture = torch.randn(2, 4, 3, 5, generator=gen), torch.randn(2, 3, 5, generator=gen)
    out = project_to_mixture(x0, mixture, target=2)
    others = [0, 1, 3]
    torch.testing.assert_close(out[:, others].sum(1), mixture)
    assert torch.equal(out[:, 2], x0[:, 2])
    # The change is the same for every non-target stem: the shortest move onto the affine set.
    change = out[:, others] - x0[:, others]
    torch.testing.assert_close(change, change[:, :1].expand_as(change))
    # A point already on the set does not move.
    torch.testing.assert_close(project_to_mixture(out, mixture, target=2), out)
    with pytest.raises(ValueError, match="target 4"):
        project_to_mixture(x0, mixture, target=4)
