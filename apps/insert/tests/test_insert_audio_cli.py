"""The audio commands end to end with the embedded demonstration checkpoint on real rendered audio
(the chorale fixture), any length and rate, and every bad audio input."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.insert.cli import main
from stemforge.insert.embedded import demo_audio_checkpoint

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
STEMS = ("soprano", "alto", "tenor", "bass")
#: One or two sampling steps of a small model give exploding latents, which the output checks
#: refuse; these plumbing tests pass --allow-degenerate (test_insert_audio_sound checks real sound).
FAST = ("--steps", "2", "--batch-size", "4", "--quiet", "--allow-degenerate")


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main([*args, *FAST])
    out = capsys.readouterr()
    return rc, out.out, out.err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def excerpt(tmp_path: Path, name: str, seconds: float, rate: int, source: str = "mix") -> Path:
    """A real excerpt of the rendered chorale, resampled to ``rate`` (looped for long files)."""
    from stemforge.data import read_audio, write_audio

    wave, _ = read_audio(CHORALE / f"{source}.flac", sample_rate=rate)
    n = round(seconds * rate)
    reps = -(-n // wave.shape[0])
    path = tmp_path / "inputs" / name
    write_audio(path, wave.repeat(reps)[:n], rate)
    return path


def test_separate_writes_every_stem_at_the_input_rate_and_length(tmp_path, capsys):
    mix = excerpt(tmp_path, "mix.wav", 2.5, 22050)
    before = digest(mix)
    out = tmp_path / "sep"
    rc, _, _ = run(capsys, "separate", str(mix), "--out", str(out))
    assert rc == 0 and digest(mix) == before
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.wav" for s in STEMS)
    for stem in STEMS:
        info = sf.info(str(out / f"{stem}.wav"))
        assert info.samplerate == 22050 and info.frames == round(2.5 * 22050) and info.channels == 1
        wave, _ = sf.read(str(out / f"{stem}.wav"))
        assert np.isfinite(wave).all() and np.abs(wave).max() <= 1.0


def test_separate_without_steps_takes_the_checkpoint_recorded_steps(tmp_path, capsys):
    """A pipeline.json recording ``sampler_defaults.steps.separate.cfg`` sets separate's default
    --steps (an explicit --steps still wins); the embedded model records its measured 10 (and 20 for
    MSDM Gaussian)."""
    demo = json.loads((demo_audio_checkpoint() / "pipeline.json").read_text())
    assert demo["sampler_defaults"]["steps"] == {"separate": {"cfg": 10, "gaussian": 20}}
    folder = tmp_path / "model"
    shutil.copytree(demo_audio_checkpoint(), folder)
    manifest = {**demo, "sampler_defaults": {**demo["sampler_defaults"], "steps": {"separate": {"cfg": 3}}}}
    (folder / "pipeline.json").write_text(json.dumps(manifest))
    mix = excerpt(tmp_path, "mix.wav", 1.5, 16000)
    common = ("--checkpoint", str(folder), "--quiet", "--allow-degenerate")
    bass = {}
    for name, steps in (("default", ()), ("three", ("--steps", "3")), ("two", ("--steps", "2"))):
        assert main(["separate", str(mix), "--out", str(tmp_path / name), *steps, *common]) == 0
        bass[name] = sf.read(str(tmp_path / name / "bass.wav"))[0]
    capsys.readouterr()
    assert np.array_equal(bass["default"], bass["three"])
    assert not np.allclose(bass["default"], bass["two"])


def test_generate_and_arrange_without_eta_take_the_checkpoint_recorded_task_eta(tmp_path, capsys):
    """The embedded model records eta 0 for generate and arrange (deterministic DDIM: its ancestral
    samples lose 10-15 dB on the upper stems, apps/insert/EVALUATION.md) and keeps eta 1 for the
    other commands; an explicit --eta still wins."""
    demo = json.loads((demo_audio_checkpoint() / "pipeline.json").read_text())
    assert demo["sampler_defaults"]["eta"] == 1.0
    assert demo["sampler_defaults"]["task_eta"] == {"generate": 0.0, "arrange": 0.0}
    common = ("--seconds", "1.5", "--seed", "3", "--sample-rate", "8000")
    bass = {}
    for name, eta in (("default", ()), ("zero", ("--eta", "0")), ("one", ("--eta", "1"))):
        rc, _, err = run(capsys, "generate", *common, *eta, "--out", str(tmp_path / name))
        assert rc == 0, err
        bass[name] = sf.read(str(tmp_path / name / "bass.wav"))[0]
    assert np.array_equal(bass["default"], bass["zero"])
    assert not np.allclose(bass["default"], bass["one"])


@pytest.mark.parametrize("method", ["dirac", "gaussian"])
def test_msdm_separation_runs_end_to_end(tmp_path, capsys, method):
    mix = excerpt(tmp_path, "mix.flac", 1.5, 16000)
    rc, _, _ = run(
        capsys, "separate", str(mix), "--method", method, "--guidance", "0", "--out", str(tmp_path / "o")
    )
    assert rc == 0 and len(list((tmp_path / "o").glob("*.wav"))) == 4


def test_generate_is_seeded_and_mixes_its_stems(tmp_path, capsys):
    outs = []
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        rc, _, _ = run(
            capsys,
            "generate",
            "--seconds",
            "1.5",
            "--seed",
            seed,
            "--sample-rate",
            "8000",
            "--out",
            str(tmp_path / name),
        )
        assert rc == 0
        outs.append({s: sf.read(str(tmp_path / name / f"{s}.wav"))[0] for s in (*STEMS, "mix")})
    for stem in (*STEMS, "mix"):
        assert outs[0][stem].shape == (12000,)
        np.testing.assert_array_equal(outs[0][stem], outs[1][stem])
    assert any(not np.array_equal(outs[0][s], outs[2][s]) for s in STEMS)
    # mix.wav is the sum of the stems, scaled by the gain mix.json records when the sum would clip.
    info = json.loads((tmp_path / "a" / "mix.json").read_text())
    total = sum(outs[0][s] for s in STEMS)
    # (A two-step sample clips; a stem file holds at most full scale, so compare where none clipped.)
    unclipped = np.all([np.abs(outs[0][s]) < 0.999 for s in STEMS], axis=0)
    assert unclipped.mean() > 0.5
    expected = total * 10 ** (info["gain_db"] / 20)
    np.testing.assert_allclose(outs[0]["mix"][unclipped], expected[unclipped], atol=1e-3)


def test_arrange_keeps_given_stems_and_writes_the_missing_ones(tmp_path, capsys):
    bass = excerpt(tmp_path, "bass.wav", 2.0, 16000, source="bass")
    soprano = excerpt(tmp_path, "soprano.wav", 2.0, 16000, source="soprano")
    out = tmp_path / "arr"
    rc, _, _ = run(capsys, "arrange", "--given", f"bass={bass},soprano={soprano}", "--out", str(out))
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["alto.wav", "mix.json", "mix.wav", "tenor.wav"]
    assert sf.info(str(out / "alto.wav")).frames == 32000


def test_audio_insertion_and_accompaniment_with_style(tmp_path, capsys):
    mix = excerpt(tmp_path, "no_bass.wav", 2.0, 44100)
    style = excerpt(tmp_path, "style.wav", 1.5, 16000, source="bass")
    rc, _, err = run(
        capsys,
        "audio",
        str(mix),
        "--stem",
        "bass",
        "--out",
        str(tmp_path / "ins"),
    )
    assert rc == 0, err
    rc, _, _ = run(
        capsys,
        "accompany",
        str(mix),
        "--stem",
        "bass",
        "--style",
        str(style),
        "--style-strength",
        "0.7",
        "--out",
        str(tmp_path / "acc"),
    )
    assert rc == 0
    for folder in ("ins", "acc"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == ["bass.wav", "mix.json", "mix.wav"]
        assert sf.info(str(tmp_path / folder / "bass.wav")).samplerate == 44100


@pytest.mark.slow
def test_any_length_37_3_seconds_at_44_1_khz(tmp_path, capsys):
    mix = excerpt(tmp_path, "long.wav", 37.3, 44100)
    out = tmp_path / "sep"
    rc, _, _ = run(capsys, "separate", str(mix), "--out", str(out), "--steps", "1")
    assert rc == 0
    for stem in STEMS:
        info = sf.info(str(out / f"{stem}.wav"))
        assert info.frames == round(37.3 * 44100) and info.samplerate == 44100


def _stereo(tmp_path: Path) -> Path:
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.random.default_rng(0).uniform(-0.5, 0.5, (8000, 2)).astype(np.float32), 16000)
    return path


def _hour(tmp_path: Path) -> Path:
    path = tmp_path / "hour.wav"
    with sf.SoundFile(str(path), "w", samplerate=1000, channels=1, subtype="PCM_16") as f:
        block = np.zeros(600_000, dtype=np.int16)
        for _ in range(6):
            f.write(block)
    return path


def _corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "corrupt.wav"
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    return path


def _other_rate_checkpoint(tmp_path: Path) -> Path:
    ckpt = tmp_path / "ckpt44k"
    shutil.copytree(demo_audio_checkpoint(), ckpt)
    manifest = json.loads((ckpt / "pipeline.json").read_text())
    manifest["sample_rate"] = 44100
    (ckpt / "pipeline.json").write_text(json.dumps(manifest))
    return ckpt


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["separate", "{tmp}/missing.wav"], ["missing.wav", "no such file"]),
        (["separate", "{corrupt}"], ["corrupt.wav", "cannot read"]),
        (["separate", "{stereo}"], ["stereo.wav", "2 channels", "--downmix"]),
        (["separate", "{hour}"], ["hour.wav", "3600 s", "--max-seconds"]),
        (["audio", "{mix}", "--stem", "drums"], ["--stem drums", "soprano, alto, tenor, bass"]),
        (["accompany", "{mix}", "--stem", "guitar"], ["--stem guitar", "trained with the stems"]),
        (["arrange", "--given", "drums={mix}"], ["--given drums", "trained with the stems"]),
        (["arrange", "--given", "bass"], ["STEM=FILE"]),
        (["separate", "{mix}", "--checkpoint", "{ckpt44k}"], ["44100 Hz", "16000 Hz"]),
        (["separate", "{mix}", "--checkpoint", "{tmp}"], ["neither pipeline.json nor config.json"]),
        (["separate", "{mix}", "--checkpoint", "{midi_ckpt}"], ["voice-insertion pipeline, not an audio"]),
        (["separate", "{mix}", "--method", "dirac", "--sampler", "dpm"], ["--sampler dpm", "DDIM only"]),
        (["separate", "{mix}", "--device", "cuda:7"], ["--device cuda:7"]),
        (["accompany", "{mix}", "--stem", "bass", "--style", "{stereo}"], ["style reference", "stereo.wav"]),
        (["generate", "--seconds", "3600"], ["--seconds 3600"]),
    ],
)
def test_bad_audio_inputs_fail_cleanly(tmp_path, capsys, command, expected):
    from stemforge.insert.embedded import jsb_checkpoint

    makers = {
        "mix": lambda: excerpt(tmp_path, "mix.wav", 1.0, 16000),
        "stereo": lambda: _stereo(tmp_path),
        "hour": lambda: _hour(tmp_path),
        "corrupt": lambda: _corrupt(tmp_path),
        "ckpt44k": lambda: _other_rate_checkpoint(tmp_path),
        "midi_ckpt": jsb_checkpoint,
    }
    text = " ".join(command)
    # Only the files this case names are made (the one-hour file alone is 7 MB).
    files = {"tmp": str(tmp_path), **{k: str(make()) for k, make in makers.items() if "{" + k + "}" in text}}
    if "cuda:7" in command and torch.cuda.is_available() and torch.cuda.device_count() > 7:
        pytest.skip("a machine with 8 GPUs accepts cuda:7")
    snapshot = {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()}
    out = tmp_path / "result"
    args = [a.format(**files) for a in command]
    rc, _, err = run(capsys, *args, "--out", str(out))
    assert rc == 2
    assert err.startswith("stemforge-insert: error: ") or "\nstemforge-insert: error: " in err
    for part in expected:
        assert part in err
    assert "Traceback" not in err
    assert not out.exists()
    assert {p: digest(p) for p in tmp_path.rglob("*") if p.is_file()} == snapshot
