"""Classifier-free guidance: arithmetic against separate calls, one batched call, MSG-LD's w semantics
checked by sampling the known conditional and unconditional mixtures, and CFG rescale."""

from __future__ import annotations

import pytest
import torch

from stemforge.samplers import ClassifierFreeGuidance, cfg_rescale, ddim_sample


class Recorder:
    def __init__(self, model) -> None:
        self.model = model
        self.batches: list[int] = []

    def __call__(self, x, t, cond):
        self.batches.append(x.shape[0])
        return self.model(x, t, cond)


def test_guidance_matches_separate_calls(mixture) -> None:
    gen = torch.Generator().manual_seed(0)
    model = mixture.model()
    x = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    t = torch.full((64,), 400.0)
    cond = {"component": torch.randint(0, 3, (64,), generator=gen)}
    eps_c = model(x, t, {**cond, "drop": torch.zeros(64, dtype=torch.bool)})
    eps_u = model(x, t, {**cond, "drop": torch.ones(64, dtype=torch.bool)})
    assert not torch.allclose(eps_c, eps_u)
    for w in (0.0, 1.0, 0.5, 2.0, 4.5):
        recorder = Recorder(model)
        guided = ClassifierFreeGuidance(recorder, w)(x, t, cond)
        assert torch.allclose(guided, w * eps_c + (1 - w) * eps_u, atol=1e-12)
        # one call per evaluation; both branches only when both are needed
        assert recorder.batches == ([64] if w in (0.0, 1.0) else [128])


def test_cfg_rescale_formula() -> None:
    gen = torch.Generator().manual_seed(1)
    guided = torch.randn(5, 3, 7, generator=gen, dtype=torch.float64) * 3
    cond = torch.randn(5, 3, 7, generator=gen, dtype=torch.float64)
    for phi in (0.0, 0.7, 1.0):
        out = cfg_rescale(guided, cond, phi)
        for b in range(5):  # Lin et al. eq. 15-16, one sample at a time
            rescaled = guided[b] * cond[b].std() / guided[b].std()
            assert torch.allclose(out[b], phi * rescaled + (1 - phi) * guided[b])
    assert torch.allclose(cfg_rescale(guided, cond, 1.0).std(dim=(1, 2)), cond.std(dim=(1, 2)))


def test_rescale_is_applied_by_the_wrapper(mixture) -> None:
    model = mixture.model()
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    t = torch.full((16,), 300.0)
    cond = {"component": torch.zeros(16, dtype=torch.long)}
    plain = ClassifierFreeGuidance(model, 3.0)(x, t, cond)
    eps_c = model(x, t, {**cond, "drop": torch.zeros(16, dtype=torch.bool)})
    rescaled = ClassifierFreeGuidance(model, 3.0, rescale=0.7)(x, t, cond)
    assert torch.allclose(rescaled, cfg_rescale(plain, eps_c, 0.7))


@pytest.mark.parametrize("w", [0.0, 1.0])
def test_w_semantics_by_sampling(mixture, stats, w: float) -> None:
    """w = 1 samples the conditional (component 1 alone), w = 0 the unconditional mixture (MSG-LD)."""
    gen = torch.Generator().manual_seed(3)
    n = 4000
    cond = {"component": torch.ones(n, dtype=torch.long)}
    guided = ClassifierFreeGuidance(mixture.model(), w)
    samples = ddim_sample(
        guided, torch.randn(n, 2, generator=gen), mixture.schedule, num_steps=200, cond=cond, generator=gen
    )
    if w == 1.0:
        mean, cov = mixture.means[1], mixture.covariances[1]
        reference = mixture.model().sample(
            40000, torch.Generator().manual_seed(4), component=torch.ones(40000, dtype=torch.long)
        )
    else:
        mean, cov, reference = mixture.mean, mixture.covariance, mixture.reference
    stats.assert_mean(samples.double(), mean, cov)
    stats.assert_cov(samples.double(), reference, cov)
    stats.assert_same_distribution(samples.double(), reference)


def test_strong_guidance_sharpens_the_condition(msgld_schedule) -> None:
    """w > 1 extrapolates past the conditional. With a narrow conditional N(0, 0.1 I) inside a wide
    unconditional mixture (N(0, 0.1 I) and N(0, 2 I)), the guided score has a higher precision than
    the conditional one, so guided samples are narrower than the conditional's (CFG trades
    diversity for adherence)."""
    from stemforge.samplers import GaussianMixtureDenoiser

    model = GaussianMixtureDenoiser(
        torch.zeros(2, 2),
        torch.stack([0.1 * torch.eye(2), 2.0 * torch.eye(2)]),
        torch.tensor([0.5, 0.5]),
        msgld_schedule,
    )
    cond = {"component": torch.zeros(3000, dtype=torch.long)}
    x_T = torch.randn(3000, 2, generator=torch.Generator().manual_seed(5))
    spread = {}
    for w in (1.0, 3.0):
        out = ddim_sample(
            ClassifierFreeGuidance(model, w), x_T, msgld_schedule, num_steps=100, eta=0.0, cond=cond
        )
        spread[w] = out.double().var(0).mean().item()
    # w = 1 reproduces the conditional variance 0.1 (SE of a variance at n = 3000: 0.1 * sqrt(2 / 3000))
    assert abs(spread[1.0] - 0.1) < 5 * 0.1 * (2 / 3000) ** 0.5 + 0.005
    assert spread[3.0] < 0.8 * spread[1.0]


def test_null_condition_errors() -> None:
    def model(x, t, cond):
        return x

    with pytest.raises(ValueError, match="same keys"):
        ClassifierFreeGuidance(model, 2.0, uncond={"text": torch.zeros(2, 3)})(
            torch.zeros(2, 4), torch.zeros(2), {"mix_latent": torch.zeros(2, 4)}
        )
    with pytest.raises(ValueError, match="rescale"):
        ClassifierFreeGuidance(model, 2.0, rescale=1.5)
