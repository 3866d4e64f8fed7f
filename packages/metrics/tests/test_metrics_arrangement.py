"""MSG-LD's arrangement protocol: the 14 subsets and sub-mixtures, on the real chorale stems."""

from pathlib import Path

import pytest
import soundfile as sf
import torch

from stemforge.metrics import FrechetAudioDistance, SubMixtureFAD, arrangement_subsets, submixture
from stemforge.metrics.embedder import Embedder

AUDIO = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "audio" / "chorale_16k"
SATB = ("soprano", "alto", "tenor", "bass")


class BandEnergy(Embedder):
    """A small real embedder: log energies of 8 FFT bands per 2048-sample window (fast, deterministic)."""

    name = "band-energy-8"
    sample_rate = 16000
    window_samples = 2048
    hop_samples = 2048
    embedding_dim = 8

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        wave = self._check_wave(wave)
        frames = wave.unfold(-1, 2048, 2048)
        power = torch.fft.rfft(frames).abs().square()[..., :1024]
        return power.unflatten(-1, (8, 128)).sum(-1).add(1e-6).log()


def test_fourteen_subsets_for_four_stems():
    subsets = arrangement_subsets(("bass", "drums", "guitar", "piano"))
    assert len(subsets) == 14 and len(set(subsets)) == 14
    assert [len(s) for s in subsets] == [1] * 4 + [2] * 6 + [3] * 4
    assert ("bass", "drums", "guitar", "piano") not in subsets


def _stems() -> torch.Tensor:
    return torch.stack(
        [torch.from_numpy(sf.read(AUDIO / f"{n}.flac", dtype="float32")[0]) for n in SATB]
    ).unsqueeze(0)


def test_submixture_takes_generated_stems_only_in_the_subset():
    originals = _stems()
    generated = torch.randn_like(originals) * 0.1
    mix = submixture(generated, originals, ("alto", "bass"), SATB)
    expected = originals[:, 0] + generated[:, 1] + originals[:, 2] + generated[:, 3]
    torch.testing.assert_close(mix, expected)
    with pytest.raises(ValueError, match="unknown stems"):
        submixture(generated, originals, ("drums",), SATB)


def test_submixture_fad_is_zero_for_originals_and_grows_with_replaced_stems():
    originals = torch.cat(_stems().split(16000 * 3, dim=-1)[:3])  # three 3 s excerpts of the real chorale
    noise = torch.randn(originals.shape, generator=torch.Generator().manual_seed(0)) * 0.05
    one = SubMixtureFAD(BandEnergy(), ("bass",), SATB)
    one.update(originals, originals)
    assert abs(one.compute().value) < 1e-8  # generated == original: identical sets
    scores = []
    for subset in (("bass",), ("alto", "bass"), ("alto", "tenor", "bass")):
        metric = SubMixtureFAD(BandEnergy(), subset, SATB)
        metric.update(noise.expand_as(originals).clone(), originals)
        scores.append(metric.compute())
    assert (
        scores[0].embedder == "band-energy-8" and scores[0].num_reference == scores[0].num_evaluated == 3 * 23
    )
    assert scores[0].value < scores[1].value < scores[2].value
    # Same value as a plain FAD of the mixtures.
    plain = FrechetAudioDistance(BandEnergy())
    plain.update(originals.sum(1), real=True)
    plain.update(submixture(noise.expand_as(originals).clone(), originals, ("bass",), SATB), real=False)
    assert plain.compute().value == pytest.approx(scores[0].value, rel=1e-9)
    with pytest.raises(ValueError, match="expects 16000 Hz"):
        plain.update(originals.sum(1), real=True, sample_rate=44100)
