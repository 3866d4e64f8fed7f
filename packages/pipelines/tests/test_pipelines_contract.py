"""Every pipeline kind passes the same checks: save/load round trip, determinism under a seed,
any length and any sample rate in and out, and errors for bad input before any work."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, ClassVar

import pytest
import soundfile as sf
import torch

from stemforge.pipelines import FORMAT, MultiTrackPipeline, PipelineError

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_demo_16k"
DEMO = ROOT / "apps" / "insert" / "src" / "stemforge" / "insert" / "checkpoints" / "demo-audio"
FIXTURES = ROOT / "tests" / "fixtures" / "checkpoints"
FAST: dict[str, Any] = {"steps": 2, "allow_degenerate": True}


def chorale(name: str, seconds: float, rate: int = 16000) -> torch.Tensor:
    wave = torch.from_numpy(sf.read(CHORALE / f"{name}.flac", dtype="float32")[0])[: round(seconds * 16000)]
    if rate != 16000:
        from stemforge.data import resample

        wave = resample(wave, 16000, rate)
    return wave


class PipelineContract:
    folder: ClassVar[Path]

    @pytest.fixture(scope="class")
    @classmethod
    def pipe(cls) -> MultiTrackPipeline:
        return MultiTrackPipeline.from_pretrained(cls.folder)

    def run(
        self, pipe: MultiTrackPipeline, mix: torch.Tensor, rate: int, **options: Any
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def test_save_load_round_trip(self, pipe, tmp_path):
        saved = pipe.save_pretrained(tmp_path / "pipe")
        manifest = json.loads((saved / "pipeline.json").read_text())
        assert manifest["format"] == FORMAT and manifest["kind"] == "multitrack"
        assert manifest["stems"] == list(pipe.stems) and manifest["sample_rate"] == pipe.sample_rate
        assert {p.name for p in saved.iterdir()} >= {"pipeline.json", "unet", "codec"}
        again = MultiTrackPipeline.from_pretrained(saved)
        for name, value in pipe.unet.state_dict().items():
            assert torch.equal(value, again.unet.state_dict()[name])
        assert (again.mode, again.target, again.insert_stems) == (pipe.mode, pipe.target, pipe.insert_stems)
        mix = chorale("mix", 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first, second = self.run(pipe, mix, 16000, seed=3), self.run(again, mix, 16000, seed=3)
        assert first.keys() == second.keys()
        for name in first:
            assert torch.equal(first[name], second[name])

    def test_seeded_and_deterministic(self, pipe):
        mix = chorale("mix", 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a, b, c = (self.run(pipe, mix, 16000, seed=s) for s in (1, 1, 2))
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert any(not torch.equal(a[k], c[k]) for k in a)

    def test_any_length_and_rate(self, pipe):
        # 2.3 s at 22.05 kHz in 1.28 s chunks: three chunks, crossfaded; out at the input's rate and length.
        mix = chorale("mix", 2.3, rate=22050)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self.run(pipe, mix, 22050, seed=0, chunk_seconds=1.28, batch_size=2)
        for wave in out.values():
            assert wave.shape == mix.shape and bool(torch.isfinite(wave).all())

    def test_bad_input_is_refused_before_work(self, pipe):
        with pytest.raises(PipelineError, match=r"expected a mono waveform tensor \(N,\), got \(2, 100\)"):
            self.run(pipe, torch.zeros(2, 100), 16000)
        with pytest.raises(PipelineError, match="--steps 0: give at least 1"):
            self.run(pipe, chorale("mix", 0.5), 16000, steps=0)


class TestJointPipeline(PipelineContract):
    folder = DEMO

    def run(self, pipe, mix, rate, **options):
        return pipe.separate(mix, rate, **{**FAST, **options})

    def test_generate_and_arrange(self, pipe):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stems = pipe.generate(1.5, sample_rate=8000, seed=0, **FAST)
            assert list(stems) == list(pipe.stems) and all(w.shape == (12000,) for w in stems.values())
            given = {"bass": chorale("bass", 1.5), "soprano": chorale("soprano", 1.5)}
            missing = pipe.arrange(given, 16000, seed=0, **FAST)
        assert sorted(missing) == ["alto", "tenor"] and all(w.shape == (24000,) for w in missing.values())
        with pytest.raises(PipelineError, match="--method magic: choose one of cfg, dirac, gaussian"):
            pipe.separate(chorale("mix", 0.5), 16000, method="magic")

    def test_third_order_solver_is_a_sampler_option(self, pipe):
        """``sampler="dpm3"`` (DPM-Solver++(3M)) is deterministic, equals 2M while the history allows
        at most second order (2 steps: one update, then the clean estimate) and differs from it once
        the third-order update runs (4 steps)."""
        mix = chorale("mix", 1.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")

            def separate(sampler: str, steps: int) -> dict[str, torch.Tensor]:
                return pipe.separate(mix, 16000, sampler=sampler, steps=steps, seed=0, allow_degenerate=True)

            short_2m, short_3m = separate("dpm", 2), separate("dpm3", 2)
            long_2m, long_3m, again = separate("dpm", 4), separate("dpm3", 4), separate("dpm3", 4)
        assert all(torch.equal(short_2m[k], short_3m[k]) for k in short_2m)
        assert all(torch.equal(long_3m[k], again[k]) for k in long_3m)
        assert any(not torch.equal(long_2m[k], long_3m[k]) for k in long_2m)
        assert all(bool(torch.isfinite(w).all()) for w in long_3m.values())


class TestSubtractivePipeline(PipelineContract):
    folder = FIXTURES / "tiny-subtractive"

    def run(self, pipe, mix, rate, **options):
        return {
            "alto": pipe.insert(mix, rate, "alto", instruction="a gentle oboe line", **{**FAST, **options})
        }


class TestAccompanimentPipeline(PipelineContract):
    folder = FIXTURES / "tiny-accompaniment"

    def run(self, pipe, mix, rate, **options):
        style = chorale("bass", 1.5, rate=rate)
        return {"bass": pipe.accompany(mix, rate, "bass", style=style, **{**FAST, **options})}
