"""Long generation and arrangement as one continuous piece: chunk k continues chunk k - 1 by
inpainting over time, so the frames they share are chunk k - 1's latents exactly, which the old
independent chunks are not. Real components throughout: the embedded demonstration checkpoint
(tiny MSG-LD U-Net and mel VAE codec), the rendered chorale fixture, the real CLI."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.insert.cli import main
from stemforge.insert.embedded import demo_audio_checkpoint
from stemforge.insert.progress import Reporter
from stemforge.pipelines.arrange import arrange_chunk
from stemforge.pipelines.chunked import ChunkOptions, encode, plan_chunks, sample_in_chunks
from stemforge.pipelines.chunking import chunk_plan, run_continued
from stemforge.pipelines.generate import generate_chunk
from stemforge.pipelines.loading import AudioModel, load_audio_model
from stemforge.pipelines.sampling import SamplingOptions

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
STEMS = ("soprano", "alto", "tenor", "bass")
SAMPLING = SamplingOptions(steps=2, seed=5)
# 0.64 s chunks of 16 latent frames overlapping by 8 at 25 frames/s: 1.6 s is 40 frames in 4 chunks.
CHUNKING = ChunkOptions(chunk_seconds=0.64, overlap=0.5)
SECONDS = 1.6


@pytest.fixture(scope="module")
def model() -> AudioModel:
    return load_audio_model(demo_audio_checkpoint(), torch.device("cpu"))


@pytest.fixture(autouse=True)
def _one_thread():
    """Small convolutions on a shared machine: one thread is faster than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reference_stitch(
    chunks: list[torch.Tensor], bounds: list[tuple[int, int]], num_frames: int
) -> torch.Tensor:
    """Frame by frame: the value of the first chunk that covers the frame (NaN where none does)."""
    out = torch.full((*chunks[0].shape[:-2], num_frames, chunks[0].shape[-1]), float("nan"))
    for frame in range(num_frames):
        covering = [i for i, (start, end) in enumerate(bounds) if start <= frame < end]
        if covering:
            out[..., frame, :] = chunks[covering[0]][..., frame - bounds[covering[0]][0], :]
    return out


@pytest.mark.parametrize(("frames", "chunk", "overlap"), [(80, 32, 16), (93, 16, 4), (70, 24, 0)])
def test_run_continued_passes_the_generated_frames_on_and_stitches_them(frames, chunk, overlap):
    torch.manual_seed(0)
    padded, bounds = chunk_plan(frames, chunk, overlap, 2)
    mix = torch.randn(1, 3, padded, 5)
    fresh = [torch.randn(1, 2, 3, end - start, 5) for start, end in bounds]
    returned = []

    def sample(inputs, indices):
        (k,) = indices
        start, end = bounds[k]
        torch.testing.assert_close(inputs["mix"], mix[..., start:end, :], rtol=0, atol=0)
        known = inputs["known"][0, 0, 0, :, 0]
        shared = max(0, max((e for _, e in bounds[:k]), default=0) - start)
        assert known.tolist() == [True] * shared + [False] * (end - start - shared)
        if k == 0:
            assert "context" not in inputs
            result = fresh[0]
        else:  # the context over the shared frames is what earlier chunks returned there
            expected = reference_stitch(returned, bounds[:k], padded)[..., start : start + shared, :]
            torch.testing.assert_close(inputs["context"][..., :shared, :], expected, rtol=0, atol=0)
            result = torch.where(inputs["known"], inputs["context"], fresh[k])
        returned.append(result)
        return result

    out = run_continued(sample, {"mix": mix}, bounds, padded)
    assert len(returned) == len(bounds)
    torch.testing.assert_close(out, reference_stitch(returned, bounds, padded), rtol=0, atol=0)


def record(sample):
    """Wrap a chunk sampler so that every chunk's result is kept, before any stitching or crossfade."""
    results: list[torch.Tensor] = []

    def wrapped(c, x_T, gen, prog):
        result = sample(c, x_T, gen, prog)
        results.extend(result.detach().clone()[:, None])
        return result

    return wrapped, results


def generate_latents(model: AudioModel, continued: bool, seed: int = 5) -> tuple[torch.Tensor, list]:
    sample, chunks = record(
        lambda c, x_T, gen, prog: generate_chunk(
            model,
            x_T,
            options=SamplingOptions(steps=SAMPLING.steps, seed=seed),
            generator=gen,
            context=c.get("context"),
            known=c.get("known"),
        )
    )
    latents = sample_in_chunks(
        model,
        round(SECONDS * model.sample_rate),
        {},
        len(STEMS),
        sample,
        SamplingOptions(steps=SAMPLING.steps, seed=seed),
        CHUNKING,
        Reporter(enabled=False),
        continued=continued,
    )
    return latents, chunks


def overlap_gaps(chunks: list[torch.Tensor], bounds: list[tuple[int, int]]) -> list[float]:
    """Largest |chunk k - chunk k-1| over the frames they share, for every k > 0."""
    gaps = []
    for (prev, (p_start, p_end)), (this, (start, _)) in itertools.pairwise(zip(chunks, bounds)):
        shared = p_end - start
        assert shared > 0
        gaps.append(float((this[..., :shared, :] - prev[..., start - p_start :, :]).abs().max()))
    return gaps


def test_generated_chunks_continue_each_other_exactly_and_independent_ones_do_not(model):
    _, _, bounds = plan_chunks(model, round(SECONDS * model.sample_rate), CHUNKING)
    assert len(bounds) == 4
    latents, chunks = generate_latents(model, continued=True)
    assert len(chunks) == len(bounds)
    assert overlap_gaps(chunks, bounds) == [0.0] * (len(bounds) - 1)
    # the stitched result holds every chunk's frames unchanged
    for chunk, (start, end) in zip(chunks, bounds):
        torch.testing.assert_close(latents[0, ..., start:end, :], chunk[0], rtol=0, atol=0)
    # new frames are generated, not copies of the context: they move away from it
    assert float(latents.std()) > 0.1

    independent, separate = generate_latents(model, continued=False)
    assert min(overlap_gaps(separate, bounds)) > 0.1  # unrelated chunks disagree where they meet
    # chunk 0 is the same draw in both (same seed, same noise), so the difference is the continuation
    torch.testing.assert_close(chunks[0], separate[0], rtol=0, atol=0)
    assert not torch.equal(latents, independent)


def test_continued_generation_is_seeded(model):
    a, _ = generate_latents(model, continued=True, seed=11)
    b, _ = generate_latents(model, continued=True, seed=11)
    c, _ = generate_latents(model, continued=True, seed=12)
    assert torch.equal(a, b)
    assert float((a - c).abs().max()) > 0.1


def test_arranged_chunks_keep_the_given_stems_everywhere_and_continue_the_missing_ones(model):
    from stemforge.data import read_audio

    num_samples = round(SECONDS * model.sample_rate)
    waves = torch.zeros(len(STEMS), num_samples)
    given = {"soprano": 0, "bass": 3}
    for name, index in given.items():
        waves[index] = read_audio(CHORALE / f"{name}.flac", sample_rate=model.sample_rate)[0][:num_samples]
    given_latent = encode(model, waves)
    stem_mask = torch.tensor([[True, False, False, True]])
    sample, chunks = record(
        lambda c, x_T, gen, prog: arrange_chunk(
            model,
            c["given"],
            stem_mask,
            x_T,
            options=SAMPLING,
            generator=gen,
            context=c.get("context"),
            known=c.get("known"),
        )
    )
    latents = sample_in_chunks(
        model,
        num_samples,
        {"given": given_latent},
        len(STEMS),
        sample,
        SAMPLING,
        CHUNKING,
        Reporter(enabled=False),
        continued=True,
    )
    frames = given_latent.shape[-2]
    torch.testing.assert_close(latents[:, [0, 3]], given_latent[:, [0, 3], ..., :frames, :], rtol=0, atol=0)
    _, _, bounds = plan_chunks(model, num_samples, CHUNKING)
    assert overlap_gaps([c[:, [1, 2]] for c in chunks], bounds) == [0.0] * (len(bounds) - 1)


def test_continuation_refuses_a_non_ddim_sampler_before_writing(tmp_path, capsys):
    out = tmp_path / "gen"
    rc = main(
        ["generate", "--seconds", "1.5", "--sampler", "dpm", "--steps", "1", "--quiet", "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "--sampler dpm" in err and "--independent-chunks" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.iterdir())
    fast = ["--steps", "1", "--quiet", "--allow-degenerate", "--out", str(out)]
    rc = main(["generate", "--seconds", "1.5", "--sampler", "dpm", "--independent-chunks", *fast])
    assert rc == 0 and sf.info(str(out / "mix.wav")).frames == 24000


def test_batch_size_is_reported_as_unused_when_chunks_continue(tmp_path, capsys):
    rc = main(
        [
            "generate",
            "--seconds",
            "1.5",
            "--steps",
            "1",
            "--batch-size",
            "3",
            "--allow-degenerate",
            "--out",
            str(tmp_path / "g"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0 and "--batch-size has no effect" in err


def cli(capsys, *args: str) -> int:
    rc = main([*args, "--quiet", "--allow-degenerate"])
    capsys.readouterr()
    return rc


@pytest.mark.slow
def test_generate_37_3_seconds_end_to_end(tmp_path, capsys):
    out = tmp_path / "gen"
    rc = cli(
        capsys, "generate", "--seconds", "37.3", "--steps", "2", "--sample-rate", "22050", "--out", str(out)
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.wav" for s in (*STEMS, "mix"))
    for name in (*STEMS, "mix"):
        info = sf.info(str(out / f"{name}.wav"))
        assert info.samplerate == 22050 and info.frames == round(37.3 * 22050) and info.channels == 1
        wave, _ = sf.read(str(out / f"{name}.wav"))
        assert np.isfinite(wave).all() and np.abs(wave[-22050:]).max() > 0  # the end is generated too


@pytest.mark.slow
def test_arrange_37_3_seconds_at_44_1_khz_end_to_end(tmp_path, capsys):
    from stemforge.data import read_audio, write_audio

    paths = {}
    for name in ("soprano", "bass"):
        wave, _ = read_audio(CHORALE / f"{name}.flac", sample_rate=44100)
        n = round(37.3 * 44100)
        paths[name] = write_audio(
            tmp_path / "in" / f"{name}.wav", wave.repeat(-(-n // wave.shape[0]))[:n], 44100
        )
    out = tmp_path / "arr"
    given = ",".join(f"{k}={v}" for k, v in paths.items())
    rc = cli(capsys, "arrange", "--given", given, "--steps", "2", "--out", str(out))
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["alto.wav", "mix.wav", "tenor.wav"]
    for name in ("alto", "tenor", "mix"):
        info = sf.info(str(out / f"{name}.wav"))
        assert info.samplerate == 44100 and info.frames == round(37.3 * 44100)


def test_batch_size_does_not_change_a_stochastic_result(tmp_path, capsys):
    """Independent chunks (separation) sampled 1 or 3 at a time with DDIM eta = 1: every chunk's
    in-sampler noise comes from its own generator, so the result is the same up to float rounding of
    batched convolutions (measured ~1e-7; before per-chunk generators it differed by ~6e-3)."""
    from stemforge.data import read_audio, write_audio

    wave, _ = read_audio(CHORALE / "mix.flac")
    mix = write_audio(tmp_path / "mix.wav", wave[:32000], 16000)
    results = []
    for batch in ("1", "3"):
        out = tmp_path / f"b{batch}"
        options = [
            "--steps",
            "4",
            "--eta",
            "1",
            "--batch-size",
            batch,
            "--chunk-seconds",
            "0.64",
            "--quiet",
            "--allow-degenerate",
        ]
        rc = main(["separate", str(mix), *options, "--out", str(out)])
        assert rc == 0
        results.append(np.stack([sf.read(str(out / f"{s}.wav"))[0] for s in STEMS]))
    np.testing.assert_allclose(results[0], results[1], rtol=0, atol=1e-5)
    assert np.abs(results[0]).max() > 1e-3  # not silence
