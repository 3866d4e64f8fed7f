"""Degenerate-audio checks on real rendered audio and on the failures they exist to catch."""

from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch

from stemforge.codec import DegenerateAudioError, audio_problems, check_audio

CHORALE = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "audio" / "chorale_16k"
STEMS = ("soprano", "alto", "tenor", "bass")


@pytest.fixture(scope="module")
def stems() -> torch.Tensor:
    return torch.stack([torch.from_numpy(sf.read(CHORALE / f"{s}.flac", dtype="float32")[0]) for s in STEMS])


def test_rendered_stems_pass(stems: torch.Tensor) -> None:
    assert audio_problems(stems, names=STEMS, reference=stems.sum(0)) == []


def test_collapsed_decoder_output_is_constant(stems: torch.Tensor) -> None:
    # What the collapsed HiFi-GAN wrote: 0.344 with std 1e-4 whatever the input.
    collapsed = 0.344 + 1e-5 * torch.randn(4, stems.shape[-1], generator=torch.Generator().manual_seed(0))
    problems = audio_problems(collapsed, names=STEMS, reference=stems.sum(0))
    assert len(problems) == 4 and all("constant at 0.344" in p for p in problems)
    with pytest.raises(DegenerateAudioError, match="the codec produced degenerate audio: soprano: constant"):
        check_audio(collapsed, "the codec", names=STEMS)


def test_dc_offset_clipping_nan_and_silence(stems: torch.Tensor) -> None:
    music = stems[0]
    (dc,) = audio_problems(music + 0.2, names=["s"])
    assert dc.startswith("s: DC offset +0.19")
    # A small DC bias under loud music is not flagged (a quarter of the standard deviation).
    assert audio_problems(music + 0.1 * float(music.std()), names=["s"]) == []
    loud = (music * 20).clamp(-1, 1)
    assert any("clipped" in p for p in audio_problems(loud, names=["s"]))
    broken = music.clone()
    broken[100:110] = float("nan")
    assert audio_problems(broken, names=["s"]) == ["s: 10 NaN/inf samples"]
    silent = torch.zeros(2, music.shape[-1])
    assert audio_problems(silent, names=["a", "b"], reference=music)[0].startswith("a: silent")
    # Without an audible input, one resting stem is fine; every stem silent is not.
    assert audio_problems(torch.stack([music, silent[0]])) == []
    assert audio_problems(silent) == ["every output is silent"]


def test_names_must_match_rows() -> None:
    with pytest.raises(ValueError, match="2 names for 3 rows"):
        audio_problems(torch.zeros(3, 10), names=["a", "b"])
