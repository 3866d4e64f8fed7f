"""``--steps``, ``--sampler``, ``--seed``, ``--device`` and ``--batch-size`` on every audio command
(issue 8): each is accepted, and each does what it says, through the real CLI and the embedded
demonstration checkpoint on real rendered audio (two 0.64 s chunks, so chunking is exercised)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.insert.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
SECONDS = 1.0
CHUNKS = ("--chunk-seconds", "0.64")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    from stemforge.data import read_audio, write_audio

    folder = tmp_path_factory.mktemp("inputs")
    n = round(SECONDS * 16000)
    return {
        name: str(write_audio(folder / f"{name}.wav", read_audio(CHORALE / f"{name}.flac")[0][:n], 16000))
        for name in ("mix", "bass", "soprano")
    }


COMMANDS = {
    "separate": lambda f: ["separate", f["mix"]],
    "generate": lambda f: ["generate", "--seconds", str(SECONDS)],
    "arrange": lambda f: ["arrange", "--given", f"bass={f['bass']},soprano={f['soprano']}"],
    "audio": lambda f: ["audio", f["mix"], "--stem", "bass"],
    "accompany": lambda f: ["accompany", f["mix"], "--stem", "bass", "--style", f["bass"]],
}
OPTIONS = {"--steps": "3", "--sampler": "ddim", "--seed": "4", "--device": "cpu", "--batch-size": "2"}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_audio_command_takes_the_sampling_options(command):
    args = build_parser().parse_args(
        [*COMMANDS[command]({"mix": "m.wav", "bass": "b.wav", "soprano": "s.wav"}), "--out", "o"]
        + [item for pair in OPTIONS.items() for item in pair]
    )
    assert (args.steps, args.sampler, args.seed, args.device, args.batch_size) == (3, "ddim", 4, "cpu", 2)


def run(inputs, command: str, out: Path, *options: str) -> dict[str, np.ndarray]:
    rc = main(
        [
            *COMMANDS[command](inputs),
            *CHUNKS,
            "--steps",
            "2",
            "--quiet",
            "--allow-degenerate",
            *options,
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    return {p.stem: sf.read(str(p))[0] for p in sorted(out.glob("*.wav"))}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_seed_reproduces_and_seed_and_steps_change_every_command(tmp_path, inputs, command):
    a = run(inputs, command, tmp_path / "a", "--seed", "3")
    b = run(inputs, command, tmp_path / "b", "--seed", "3")
    c = run(inputs, command, tmp_path / "c", "--seed", "4")
    d = run(inputs, command, tmp_path / "d", "--seed", "3", "--steps", "1")
    assert a.keys() == b.keys() == c.keys() == d.keys() and a
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
        assert a[name].shape == (round(SECONDS * 16000),)
    assert any(not np.array_equal(a[name], c[name]) for name in a)
    assert any(not np.array_equal(a[name], d[name]) for name in a)


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("sampler", ["dpm", "dpm3", "ddpm"])
def test_sampler_runs_or_is_refused_with_the_reason(tmp_path, capsys, inputs, command, sampler):
    """Samplers written for DDIM only (inpainting, MSDM, continuation) refuse the others by name;
    everywhere else the sampler runs and its result differs from DDIM's."""
    out = tmp_path / sampler
    rc = main(
        [
            *COMMANDS[command](inputs),
            *CHUNKS,
            "--steps",
            "2",
            "--quiet",
            "--allow-degenerate",
            "--sampler",
            sampler,
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    ddim_only = {"arrange", "audio", "generate"}  # inpainting, MSDM Dirac, continuation over 2 chunks
    if command in ddim_only:
        assert rc == 2 and f"--sampler {sampler}" in err and "DDIM only" in err and "--sampler ddim" in err
        assert not out.exists()
        return
    assert rc == 0
    ddim = run(inputs, command, tmp_path / "ddim", "--sampler", "ddim")
    other = {p.stem: sf.read(str(p))[0] for p in sorted(out.glob("*.wav"))}
    assert other.keys() == ddim.keys()
    assert any(not np.array_equal(other[name], ddim[name]) for name in ddim)


@pytest.mark.parametrize("command", ["separate", "audio", "accompany"])
def test_batch_size_leaves_independent_chunks_unchanged(tmp_path, inputs, command):
    """Chunks sampled one or two at a time; per-chunk generators keep the result (float rounding of
    batched convolutions only)."""
    # 12 steps: with one or two, the latents of this small model explode and amplify the rounding.
    one = run(inputs, command, tmp_path / "one", "--batch-size", "1", "--steps", "12")
    two = run(inputs, command, tmp_path / "two", "--batch-size", "2", "--steps", "12")
    for name in one:
        np.testing.assert_allclose(one[name], two[name], rtol=0, atol=1e-5)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_device_is_checked_before_any_work(tmp_path, capsys, inputs, command):
    if torch.cuda.is_available():
        pytest.skip("a CUDA machine accepts --device cuda")
    out = tmp_path / "o"
    rc = main([*COMMANDS[command](inputs), "--device", "cuda", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "--device cuda: no CUDA device is available here; use --device cpu" in err
    assert not out.exists()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("command", list(COMMANDS))
def test_cuda_runs_every_command(tmp_path, inputs, command):
    result = run(inputs, command, tmp_path / "cuda", "--device", "cuda")
    assert result and all(
        np.isfinite(w).all() and w.shape == (round(SECONDS * 16000),) for w in result.values()
    )
