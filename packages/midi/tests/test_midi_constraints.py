"""The no-parallels decoding constraint against a slow, textbook check on random voices (its use in
insertion with the shipped model is tested in stemforge-pipelines' voice pipeline tests)."""

from __future__ import annotations

import torch

from stemforge.midi import REST, NoParallelsModel, parallel_ban


def moves_in_parallel(a0: int, a1: int, b0: int, b1: int) -> bool:
    """Voices a and b go from (a0, b0) to (a1, b1): same direction, both a fifth or both an octave."""
    if REST in (a0, a1, b0, b1) or a1 == a0 or b1 == b0 or (a1 > a0) != (b1 > b0):
        return False
    before, after = abs(a0 - b0) % 12, abs(a1 - b1) % 12
    return before == after and before in (0, 7)


def reference_ban(x: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    b, s, t = x.shape
    ban = torch.zeros(b, s, t, 129, dtype=torch.bool)
    known = visible & (x < REST)
    for i in range(b):
        for v in range(s):
            for step in range(t):
                if visible[i, v, step]:
                    continue
                for p in range(128):
                    for other in (step - 1, step + 1):
                        if not 0 <= other < t or not known[i, v, other]:
                            continue
                        early, late = min(step, other), max(step, other)
                        for j in range(s):
                            if j == v or not (known[i, j, early] and known[i, j, late]):
                                continue
                            pv = {step: p, other: int(x[i, v, other])}
                            if moves_in_parallel(
                                pv[early], pv[late], int(x[i, j, early]), int(x[i, j, late])
                            ):
                                ban[i, v, step, p] = True
    return ban


def test_parallel_ban_matches_the_textbook_rule_on_random_voices():
    gen = torch.Generator().manual_seed(0)
    # Small pitch range so that fifths and octaves are frequent; some rests.
    x = torch.randint(55, 68, (4, 4, 20), generator=gen)
    x[torch.rand(x.shape, generator=gen) < 0.08] = REST
    visible = torch.rand(x.shape, generator=gen) < 0.6
    x = torch.where(visible, x, torch.zeros_like(x))  # hidden entries carry no value (samplers' contract)
    ban = parallel_ban(x, visible)
    expected = reference_ban(x, visible)
    assert int(expected.sum()) > 40  # the check is exercised
    assert torch.equal(ban, expected)


def test_wrapped_model_masks_only_banned_pitches():
    torch.manual_seed(0)

    def uniform(x, visible, cond=None):
        return torch.randn(*x.shape, 129)

    x = torch.tensor([[[60, 62, 0], [53, 55, 0]]])  # soprano and alto a fifth apart, moving up a step
    visible = torch.tensor([[[True, True, False], [True, True, True]]])
    x[0, 1, 2] = 57  # alto rises again to 57: a soprano 64 would be parallel fifths
    logits = NoParallelsModel(uniform)(x, visible)
    assert torch.isinf(logits[0, 0, 2, 64]) and torch.isfinite(logits[0, 0, 2, 65])
    assert torch.isfinite(logits[0, 0, 2, REST])
    assert torch.isfinite(logits[0, 1]).all()  # known tokens are left alone
