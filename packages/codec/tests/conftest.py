"""Shared inputs of the codec tests: the rendered chorale fixture and small codecs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

REPO_ROOT = Path(__file__).resolve().parents[3]
CHORALE_DIR = REPO_ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
CHORALE_STEMS = ("soprano", "alto", "tenor", "bass")


@pytest.fixture(scope="session")
def chorale_stems() -> torch.Tensor:
    """The rendered 16 kHz chorale fixture as (1, 4, N) float32, stems soprano/alto/tenor/bass."""
    stems = []
    for name in CHORALE_STEMS:
        data, rate = sf.read(CHORALE_DIR / f"{name}.flac", dtype="float32", always_2d=True)
        assert rate == 16000, f"{name}.flac is at {rate} Hz"
        stems.append(data.mean(axis=1))
    length = min(len(s) for s in stems)
    return torch.from_numpy(np.stack([s[:length] for s in stems]))[None]
