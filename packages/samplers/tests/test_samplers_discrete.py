"""Masked (absorbing-state) discrete diffusion with the exact model of a known Markov chain.

Tolerances: a transition probability estimated from m transitions has SE sqrt(p (1 - p) / m); a
mean NLL over n sequences has SE sd / sqrt(n); both are checked within 5 SE. The exact model's
conditionals are themselves checked against brute-force enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from stemforge.samplers import (
    MarkovChainOracle,
    chain_rule_nll,
    gibbs_sample,
    masked_diffusion_loss,
    nats_per_frame,
    unmask_sample,
)

P = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]], dtype=torch.float64)


@pytest.fixture
def chain() -> MarkovChainOracle:
    stationary = MarkovChainOracle(torch.ones(3), P).stationary()
    return MarkovChainOracle(stationary, P)


def brute_force_conditionals(
    oracle: MarkovChainOracle, x: torch.Tensor, visible: torch.Tensor
) -> torch.Tensor:
    """p(x_i = k | visible others) by enumerating every sequence of one chain (T,)."""
    length, k = x.shape[0], oracle.num_classes
    out = torch.zeros(length, k, dtype=torch.float64)
    for seq in itertools.product(range(k), repeat=length):
        s = torch.tensor(seq)
        p = oracle.log_prob(s.reshape(1, 1, -1)).exp().item()
        for i in range(length):
            others = visible.clone()
            others[i] = False
            if bool((s[others] == x[others]).all()):
                out[i, seq[i]] += p
    return out / out.sum(-1, keepdim=True)


def test_oracle_conditionals_match_enumeration(chain) -> None:
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        x = chain.sample((1, 1, 6), gen)
        visible = torch.rand(1, 1, 6, generator=gen) < 0.5
        logits = chain(x, visible)
        expected = brute_force_conditionals(chain, x[0, 0], visible[0, 0])
        assert torch.allclose(torch.softmax(logits[0, 0].double(), -1), expected, atol=1e-6)
    bern = MarkovChainOracle(
        torch.tensor([0.4, 0.6]), torch.tensor([[0.9, 0.1], [0.2, 0.8]]), kind="bernoulli"
    )
    x = bern.sample((1, 1, 6), gen)
    visible = torch.tensor([[[True, False, False, True, False, True]]])
    expected = brute_force_conditionals(bern, x[0, 0].long(), visible[0, 0])
    assert torch.allclose(torch.sigmoid(bern(x, visible)[0, 0].double()), expected[:, 1], atol=1e-6)


def test_chain_rule_nll_is_exact(chain) -> None:
    gen = torch.Generator().manual_seed(1)
    n, voices, frames = 600, 2, 10
    x = chain.sample((n, voices, frames), gen)
    nll = chain_rule_nll(chain, x, generator=gen)
    assert torch.allclose(nll, -chain.log_prob(x), atol=1e-4)  # any order gives -log p(x) exactly
    entropy = voices * chain.entropy(frames)
    assert abs(nll.mean().item() - entropy) < 5 * nll.std().item() / n**0.5
    per_frame = nats_per_frame(nll, frames).mean().item()
    # the entropy rate per frame summed over voices: H(x_1) / T + (T - 1) / T * rate
    assert abs(per_frame - entropy / frames) < 5 * nll.std().item() / n**0.5 / frames
    assert chain.entropy_rate() < entropy / frames / voices < math.log(3)


def test_chain_rule_nll_scores_only_free_variables(chain) -> None:
    x = chain.sample((50, 1, 8), torch.Generator().manual_seed(2))
    given = torch.zeros_like(x, dtype=torch.bool)
    given[..., :4] = True
    nll = chain_rule_nll(chain, x, given=given, generator=torch.Generator().manual_seed(3))
    # -log p(x_5..8 | x_1..4) = -log P(x_4 -> x_5) - ... for a Markov chain
    expected = -torch.log(P[x[..., 3:-1], x[..., 4:]]).sum((-1, -2))
    assert torch.allclose(nll, expected, atol=1e-4)


def test_chain_rule_nll_under_a_given_order(chain) -> None:
    """Any explicit order gives -log p(x) exactly (the chain rule), left to right or frame-major;
    an order that does not rank the free variables 0, 1, ... once each is refused."""
    x = chain.sample((8, 2, 6), torch.Generator().manual_seed(4))
    left_to_right = (torch.arange(6) * 2 + torch.arange(2)[:, None]).expand(8, 2, 6).contiguous()
    reverse = 11 - left_to_right
    for ranks in (left_to_right, reverse):
        assert torch.allclose(chain_rule_nll(chain, x, ranks=ranks), -chain.log_prob(x), atol=1e-4)
    given = torch.zeros_like(x, dtype=torch.bool)
    given[..., :3] = True
    free_ranks = torch.where(given, torch.zeros_like(x), left_to_right - 6)
    expected = -torch.log(P[x[..., 2:-1], x[..., 3:]]).sum((-1, -2))
    assert torch.allclose(chain_rule_nll(chain, x, given=given, ranks=free_ranks), expected, atol=1e-4)
    with pytest.raises(ValueError, match=r"ranked 0 \.\. 11, once each"):
        chain_rule_nll(chain, x, ranks=torch.zeros_like(x))


def test_uniform_model_scores_log_k(chain) -> None:
    def uniform(x, visible, cond):
        return torch.zeros(*x.shape, 3)

    x = chain.sample((20, 1, 5), torch.Generator().manual_seed(2))
    assert torch.allclose(chain_rule_nll(uniform, x), torch.full((20,), 5 * math.log(3), dtype=torch.float64))
    loss = masked_diffusion_loss(uniform, x, generator=torch.Generator().manual_seed(0))
    assert loss.item() == pytest.approx(math.log(3), rel=1e-6)


def test_training_loss_estimates_the_nll_per_variable(chain) -> None:
    """The orderless-NADE loss is unbiased for the NLL per variable: averaged over 40 batches of 256
    the exact model's loss equals the entropy per variable within 5 SE."""
    gen = torch.Generator().manual_seed(4)
    frames = 8
    losses = torch.tensor(
        [
            masked_diffusion_loss(chain, chain.sample((256, 1, frames), gen), generator=gen).item()
            for _ in range(40)
        ]
    )
    assert abs(losses.mean().item() - chain.entropy(frames) / frames) < 5 * losses.std().item() / 40**0.5
    mean_loss = masked_diffusion_loss(
        chain, chain.sample((256, 1, frames), gen), weighting="mean", generator=gen
    )
    assert 0 < mean_loss.item() < math.log(3)


def test_loss_trains_a_real_model() -> None:
    """A bigram table trained with the loss moves toward the chain (the loss is differentiable)."""
    torch.manual_seed(0)
    oracle = MarkovChainOracle(torch.ones(3), P)
    table = torch.nn.Parameter(torch.zeros(4, 3))  # previous token (or 3 = unknown) -> logits

    def model(x, visible, cond):
        prev = torch.cat(
            [torch.full_like(x[..., :1], 3), torch.where(visible, x, torch.full_like(x, 3))[..., :-1]], -1
        )
        return table[prev]

    opt = torch.optim.Adam([table], lr=0.1)
    gen = torch.Generator().manual_seed(5)
    first = None
    for _ in range(60):
        loss = masked_diffusion_loss(model, oracle.sample((128, 1, 8), gen), generator=gen)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.05
    assert torch.allclose(torch.softmax(table[:3].detach().double(), -1), P, atol=0.1)


def transition_frequencies(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    counts = torch.zeros(3, 3, dtype=torch.float64)
    a, b = x[..., :-1].reshape(-1).long(), x[..., 1:].reshape(-1).long()
    counts.index_put_((a, b), torch.ones_like(a, dtype=torch.float64), accumulate=True)
    return counts / counts.sum(1, keepdim=True), counts.sum(1)


def assert_chain_statistics(x: torch.Tensor, chain: MarkovChainOracle, slack: float = 0.0) -> None:
    freq, rows = transition_frequencies(x)
    se = (P * (1 - P) / rows[:, None]).sqrt()
    assert bool(((freq - P).abs() < 5 * se + slack).all()), f"transition error {(freq - P).abs().max():.4f}"
    first = torch.bincount(x[..., 0].reshape(-1).long(), minlength=3).double() / x[..., 0].numel()
    pi = chain.initial
    assert bool(((first - pi).abs() < 5 * (pi * (1 - pi) / x[..., 0].numel()).sqrt() + slack).all())


def test_random_order_unmasking_samples_the_chain(chain) -> None:
    gen = torch.Generator().manual_seed(6)
    shape = (800, 2, 10)
    x = unmask_sample(
        chain, torch.zeros(shape, dtype=torch.long), torch.zeros(shape, dtype=torch.bool), generator=gen
    )
    assert_chain_statistics(x, chain)


def test_inpainting_keeps_the_joint(chain) -> None:
    """Hide the middle of true chains and refill it: the completed chains are again the chain."""
    gen = torch.Generator().manual_seed(7)
    truth = chain.sample((800, 2, 10), gen)
    visible = torch.ones_like(truth, dtype=torch.bool)
    visible[..., 3:8] = False
    visible[:, 1, :] = False  # the second voice (stem) is generated whole
    out = unmask_sample(chain, truth, visible, generator=gen)
    assert torch.equal(out[visible], truth[visible])
    assert_chain_statistics(out, chain)
    out_gibbs = gibbs_sample(chain, truth, visible, num_steps=60, generator=gen)
    assert torch.equal(out_gibbs[visible], truth[visible])


def test_parallel_and_confident_unmasking(chain) -> None:
    gen = torch.Generator().manual_seed(8)
    shape = (800, 1, 12)
    start, hidden = torch.zeros(shape, dtype=torch.long), torch.zeros(shape, dtype=torch.bool)
    calls = []

    def counted(x, visible, cond):
        calls.append(int((~visible).sum()))
        return chain(x, visible, cond)

    few = unmask_sample(counted, start, hidden, num_steps=4, schedule="cosine", generator=gen)
    assert len(calls) == 4 and not bool((few < 0).any())
    random = unmask_sample(chain, start, hidden, generator=gen)
    confident = unmask_sample(chain, start, hidden, order="confidence", generator=gen)
    # confidence ordering seeks likely sequences: lower NLL than exact sampling
    assert chain.log_prob(confident).mean() > chain.log_prob(random).mean() + 1.0


def test_annealed_gibbs_approximates_the_chain(chain) -> None:
    """Blocked Gibbs with exact conditionals is approximate while blocks hold neighbours; after 60
    annealed steps the transition frequencies are within 5 SE plus 0.03 (measured max error 0.009)."""
    gen = torch.Generator().manual_seed(9)
    shape = (800, 2, 10)
    x = gibbs_sample(
        chain,
        torch.zeros(shape, dtype=torch.long),
        torch.zeros(shape, dtype=torch.bool),
        num_steps=60,
        generator=gen,
    )
    assert_chain_statistics(x, chain, slack=0.03)


def test_bernoulli_variables() -> None:
    bern = MarkovChainOracle(
        torch.tensor([2 / 3, 1 / 3]), torch.tensor([[0.9, 0.1], [0.2, 0.8]]), kind="bernoulli"
    )
    gen = torch.Generator().manual_seed(10)
    x = bern.sample((500, 3, 8), gen)
    assert x.dtype == torch.float32
    assert torch.allclose(
        chain_rule_nll(bern, x, kind="bernoulli", generator=gen), -bern.log_prob(x), atol=1e-4
    )
    out = unmask_sample(
        bern, torch.zeros_like(x), torch.zeros_like(x, dtype=torch.bool), kind="bernoulli", generator=gen
    )
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    ones = out.mean().item()  # stationary P(1) = 1/3; SE of a proportion of 12000 correlated draws < 0.01
    assert abs(ones - 1 / 3) < 0.04
    loss = masked_diffusion_loss(bern, x, kind="bernoulli", generator=gen)
    assert 0 < loss.item() < math.log(2)


def test_contract_errors(chain) -> None:
    x = torch.zeros(2, 1, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="logits of shape"):
        unmask_sample(lambda x, v, c: torch.zeros(2, 1, 4), x, torch.zeros_like(x, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        chain_rule_nll(chain, x, given=torch.zeros(2, 1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="kind"):
        masked_diffusion_loss(chain, x, kind="gaussian")  # type: ignore[arg-type]
