"""The contract of the discrete samplers and the NLL evaluator: shapes and dtypes, given variables
untouched, seeded determinism, and the number of model calls."""

from __future__ import annotations

import pytest
import torch

from stemforge.samplers import MarkovChainOracle, chain_rule_nll, gibbs_sample, unmask_sample

P = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6]])


class Counting:
    def __init__(self, model) -> None:
        self.model = model
        self.calls = 0

    def __call__(self, x, visible, cond):
        self.calls += 1
        assert bool((x[~visible] == 0).all())  # hidden values never reach the model
        return self.model(x, visible, cond)


class DiscreteContract:
    kind = "categorical"
    expected_calls = 6

    @pytest.fixture
    def oracle(self):
        if self.kind == "bernoulli":
            return MarkovChainOracle(
                torch.tensor([0.5, 0.5]), torch.tensor([[0.9, 0.1], [0.3, 0.7]]), kind="bernoulli"
            )
        return MarkovChainOracle(torch.ones(3), P)

    def run(self, model, x, visible, gen):
        raise NotImplementedError

    def test_shape_dtype_given_and_calls(self, oracle) -> None:
        x = oracle.sample((4, 2, 12), torch.Generator().manual_seed(0))
        visible = torch.zeros_like(x, dtype=torch.bool)
        visible[:, 0, :6] = True
        model = Counting(oracle)
        out = self.run(model, x.clone(), visible, torch.Generator().manual_seed(1))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert torch.equal(out[visible], x[visible])
        assert model.calls == self.expected_calls

    def test_seeded_determinism(self, oracle) -> None:
        x = oracle.sample((4, 2, 12), torch.Generator().manual_seed(0))
        visible = torch.zeros_like(x, dtype=torch.bool)
        a = self.run(oracle, x, visible, torch.Generator().manual_seed(3))
        b = self.run(oracle, x, visible, torch.Generator().manual_seed(3))
        c = self.run(oracle, x, visible, torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)


class TestUnmaskRandom(DiscreteContract):
    def run(self, model, x, visible, gen):
        return unmask_sample(model, x, visible, kind=self.kind, num_steps=6, generator=gen)


class TestUnmaskConfidence(DiscreteContract):
    def run(self, model, x, visible, gen):
        return unmask_sample(
            model, x, visible, kind=self.kind, num_steps=6, order="confidence", generator=gen
        )


class TestUnmaskBernoulli(DiscreteContract):
    kind = "bernoulli"

    def run(self, model, x, visible, gen):
        return unmask_sample(model, x, visible, kind=self.kind, num_steps=6, schedule="cosine", generator=gen)


class TestGibbs(DiscreteContract):
    def run(self, model, x, visible, gen):
        return gibbs_sample(model, x, visible, kind=self.kind, num_steps=6, generator=gen)


class TestGibbsBernoulli(TestGibbs):
    kind = "bernoulli"


def test_chain_rule_nll_calls_once_per_free_variable() -> None:
    oracle = MarkovChainOracle(torch.ones(3), P)
    x = oracle.sample((5, 2, 7), torch.Generator().manual_seed(0))
    given = torch.zeros_like(x, dtype=torch.bool)
    given[:, 1] = True
    model = Counting(oracle)
    nll = chain_rule_nll(model, x, given=given, generator=torch.Generator().manual_seed(1))
    assert model.calls == 7 and nll.shape == (5,) and nll.dtype == torch.float64
