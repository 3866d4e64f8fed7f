"""Bad inputs of issue 8 that the matrix (test_insert_badinput_matrix.py: missing, empty, text,
truncated, short and multichannel files, unknown stems, bad options, outputs in missing, read-only
or blocked folders, checkpoints of the wrong kind, for every command) does not hold: a corrupt RIFF
header, stereo, a one-hour file, an existing output beside the user's own files, checkpoints
trained with other stems or at another rate, options the checkpoint cannot honour, and the console
script itself. Through the real command line: exit status 2, one message naming the file (or
option) and the fix, no traceback, nothing written (not even a staging or probe folder), inputs
byte for byte unchanged."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stemforge.insert.cli import main
from stemforge.insert.embedded import demo_audio_checkpoint, jsb_checkpoint

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
MIDI = ROOT / "tests" / "fixtures" / "midi"
OTHER_STEMS = ["bass", "drums", "guitar", "piano"]


def digest_tree(*roots: Path) -> dict[Path, str]:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for root in roots
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def listing(root: Path) -> list[Path]:
    """Every path under ``root``, hidden ones (staging folders) included."""
    return sorted(root.rglob("*"))


def excerpt(folder: Path, name: str, seconds: float = 1.0, source: str = "mix") -> Path:
    from stemforge.data import read_audio, write_audio

    wave, _ = read_audio(CHORALE / f"{source}.flac")
    return write_audio(folder / name, wave[: round(seconds * 16000)], 16000)


def stereo(folder: Path) -> Path:
    path = folder / "stereo.wav"
    rng = np.random.default_rng(0)
    sf.write(str(path), rng.uniform(-0.5, 0.5, (8000, 2)).astype(np.float32), 16000)
    return path


def one_hour(folder: Path) -> Path:
    """A real one-hour WAV written in blocks (7 MB at 1 kHz; never held in memory at once)."""
    path = folder / "hour.wav"
    with sf.SoundFile(str(path), "w", samplerate=1000, channels=1, subtype="PCM_16") as f:
        for _ in range(6):
            f.write(np.zeros(600_000, dtype=np.int16))
    return path


def corrupt(folder: Path) -> Path:
    path = folder / "corrupt.wav"
    path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(40)))
    return path


def retrained(folder: Path, source: Path, name: str, edit: Callable[[dict], None]) -> Path:
    ckpt = folder / name
    shutil.copytree(source, ckpt)
    if (ckpt / "network" / "config.json").is_file():  # a voice-insertion pipeline folder
        manifest = json.loads((ckpt / "pipeline.json").read_text())
        network = json.loads((ckpt / "network" / "config.json").read_text())
        config = {"stem_names": manifest["stems"], "model_config": network["unet"]}
        edit(config)
        manifest["stems"] = config["stem_names"]
        (ckpt / "pipeline.json").write_text(json.dumps(manifest))
        (ckpt / "network" / "config.json").write_text(json.dumps({**network, "unet": config["model_config"]}))
        return ckpt
    if (ckpt / "pipeline.json").is_file():  # a stemforge-pipelines folder: the same edit, its files
        manifest = json.loads((ckpt / "pipeline.json").read_text())
        unet = json.loads((ckpt / "unet" / "config.json").read_text())
        config = {
            "stem_names": manifest["stems"],
            "sample_rate": manifest["sample_rate"],
            "model_config": unet,
        }
        edit(config)
        manifest["stems"], manifest["sample_rate"] = config["stem_names"], config["sample_rate"]
        (ckpt / "pipeline.json").write_text(json.dumps(manifest))
        (ckpt / "unet" / "config.json").write_text(json.dumps(config["model_config"]))
        return ckpt
    config = json.loads((ckpt / "config.json").read_text())
    edit(config)
    (ckpt / "config.json").write_text(json.dumps(config))
    return ckpt


def other_stems(config: dict) -> None:
    """As if trained on Slakh's four stems: the names change, the weights' shapes do not."""
    config["stem_names"] = OTHER_STEMS
    if isinstance(config.get("model_config"), dict) and "stems" in config["model_config"]:
        config["model_config"]["stems"] = OTHER_STEMS


def other_rate(config: dict) -> None:
    config["sample_rate"] = 44100


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared machine: one thread is faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    """Inputs in ``tmp_path/in``; checkpoints in ``tmp_path/ckpt``; ``afile`` is a plain file."""
    inputs, ckpts = tmp_path / "in", tmp_path / "ckpt"
    inputs.mkdir()
    ckpts.mkdir()
    (inputs / "afile").write_text("a plain file, not a folder\n")
    return {
        "tmp": str(tmp_path),
        "in": str(inputs),
        "mix": str(excerpt(inputs, "mix.wav")),
        "bass": str(excerpt(inputs, "bass.wav", source="bass")),
        "missing": str(inputs / "missing.wav"),
        "stereo": str(stereo(inputs)),
        "corrupt": str(corrupt(inputs)),
        "afile": str(inputs / "afile"),
        "ckpt44k": str(retrained(ckpts, demo_audio_checkpoint(), "rate44k", other_rate)),
        "ckpt_slakh": str(retrained(ckpts, demo_audio_checkpoint(), "slakh", other_stems)),
    }


def fails_cleanly(capsys, args: list[str], expected: list[str], out: Path, watched: list[Path]) -> str:
    """Run the CLI; check status 2, the message, no traceback, nothing new anywhere, inputs intact."""
    before = digest_tree(*watched)
    paths_before = {root: listing(root) for root in watched}
    out_before = listing(out) if out.is_dir() else None
    rc = main([*args, "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("stemforge-insert: error: ") or "\nstemforge-insert: error: " in err
    for part in expected:
        assert part in err, (part, err)
    assert "Traceback" not in err
    if out_before is None:
        assert not out.exists()
    else:
        assert listing(out) == out_before
    assert digest_tree(*watched) == before
    assert {root: listing(root) for root in watched} == paths_before  # no staging or probe leftovers
    return err


AUDIO_COMMANDS: dict[str, Callable[[str], list[str]]] = {
    "separate": lambda mix: ["separate", mix],
    "arrange": lambda mix: ["arrange", "--given", f"bass={mix}"],
    "audio": lambda mix: ["audio", mix, "--stem", "bass"],
    "accompany": lambda mix: ["accompany", mix, "--stem", "bass"],
    "accompany-style": lambda mix: ["accompany", "{bass}", "--stem", "bass", "--style", mix],
}

BAD_FILES = {
    "corrupt": ["corrupt.wav", "cannot read", "WAV, FLAC or OGG"],
    "stereo": ["stereo.wav", "2 channels", "--downmix"],
    "hour": ["hour.wav", "lasts 3600 s", "cut it into parts", "--max-seconds"],
}


@pytest.mark.parametrize("command", list(AUDIO_COMMANDS))
@pytest.mark.parametrize("bad", list(BAD_FILES))
def test_bad_input_files(tmp_path, capsys, files, command, bad):
    if bad == "hour":
        files["hour"] = str(one_hour(Path(files["in"])))
    args = [a.format(**files) for a in AUDIO_COMMANDS[command](files[bad])]
    out = tmp_path / "result"
    fails_cleanly(capsys, [*args, "--out", str(out)], BAD_FILES[bad], out, [tmp_path, CHORALE])


ALL_AUDIO: dict[str, list[str]] = {
    "separate": ["separate", "{mix}"],
    "generate": ["generate", "--seconds", "1"],
    "arrange": ["arrange", "--given", "bass={bass}"],
    "audio": ["audio", "{mix}", "--stem", "bass"],
    "accompany": ["accompany", "{mix}", "--stem", "bass"],
}
WRITES = {
    "separate": ["soprano.wav", "alto.wav", "tenor.wav", "bass.wav"],
    "generate": ["soprano.wav", "alto.wav", "tenor.wav", "bass.wav", "mix.wav"],
    "arrange": ["soprano.wav", "alto.wav", "tenor.wav", "mix.wav"],
    "audio": ["bass.wav", "mix.wav"],
    "accompany": ["bass.wav", "mix.wav"],
}


@pytest.mark.parametrize("command", list(ALL_AUDIO))
def test_an_existing_output_is_kept_unless_overwrite(tmp_path, capsys, files, command):
    out = tmp_path / "result"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own file, never touched\n")
    taken = WRITES[command][-1]
    (out / taken).write_bytes(b"an earlier result")
    args = [a.format(**files) for a in ALL_AUDIO[command]]
    err = fails_cleanly(
        capsys,
        [*args, "--out", str(out)],
        [str(out), f"already holds {taken}", "--overwrite"],
        out,
        [tmp_path],
    )
    assert "choose another --out" in err


def test_overwrite_replaces_only_the_outputs(tmp_path, capsys, files):
    out = tmp_path / "result"
    out.mkdir()
    (out / "notes.txt").write_text("kept\n")
    (out / "bass.wav").write_bytes(b"an earlier result")
    rc = main(
        [
            "audio",
            files["mix"],
            "--stem",
            "bass",
            "--steps",
            "1",
            "--quiet",
            "--overwrite",
            "--allow-degenerate",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["bass.wav", "mix.json", "mix.wav", "notes.txt"]
    assert (out / "notes.txt").read_text() == "kept\n"
    assert sf.info(str(out / "bass.wav")).frames == 16000


CHECKPOINT_CASES = {
    # (command args, expected); {ckpt44k}: the model's config says 44.1 kHz, its codec runs at 16 kHz
    "generate-rate": (
        ["generate", "--checkpoint", "{ckpt44k}"],
        ["rate44k", "44100 Hz", "16000 Hz", "codec"],
    ),
    "arrange-rate": (["arrange", "--given", "bass={bass}", "--checkpoint", "{ckpt44k}"], ["44100 Hz"]),
    "audio-rate": (["audio", "{mix}", "--stem", "bass", "--checkpoint", "{ckpt44k}"], ["44100 Hz"]),
    "accompany-rate": (["accompany", "{mix}", "--stem", "bass", "--checkpoint", "{ckpt44k}"], ["44100 Hz"]),
    "arrange-stems": (
        ["arrange", "--given", "alto={bass}", "--checkpoint", "{ckpt_slakh}"],
        ["--given alto", "slakh", "bass, drums, guitar, piano", "give a checkpoint trained with 'alto'"],
    ),
    "audio-stems": (
        ["audio", "{mix}", "--stem", "alto", "--checkpoint", "{ckpt_slakh}"],
        ["--stem alto", "slakh", "bass, drums, guitar, piano"],
    ),
    "accompany-stems": (
        ["accompany", "{mix}", "--stem", "tenor", "--checkpoint", "{ckpt_slakh}"],
        ["--stem tenor", "slakh", "bass, drums, guitar, piano"],
    ),
    "separate-steps": (["separate", "{mix}", "--steps", "5000"], ["--steps 5000", "give at most 1000"]),
    "generate-steps": (["generate", "--steps", "1001"], ["--steps 1001", "give at most 1000"]),
    "generate-sampler": (
        ["generate", "--seconds", "5", "--sampler", "ddpm"],
        ["--sampler ddpm", "DDIM only", "--independent-chunks"],
    ),
    "audio-batch": (
        ["audio", "{mix}", "--stem", "bass", "--batch-size", "0"],
        ["--batch-size 0", "at least 1"],
    ),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_CASES))
def test_bad_checkpoints_and_options(tmp_path, capsys, files, case):
    command, expected = CHECKPOINT_CASES[case]
    args = [a.format(**files) for a in command]
    if "--steps" not in args:
        args += ["--steps", "1"]
    out = tmp_path / "result"
    fails_cleanly(capsys, [*args, "--out", str(out)], expected, out, [tmp_path, CHORALE])


# ---- midi -------------------------------------------------------------------------------------


@pytest.fixture
def song(tmp_path) -> Path:
    """Two bars (32 sixteenths) of JSB test chorale 5, the source of the fixture chorale_test005.mid."""
    from stemforge.midi import JSB_PROGRAMS, JSB_STEMS, load_jsb, voices_to_midi, write_midi

    path = tmp_path / "in" / "chorale.mid"
    return write_midi(voices_to_midi(load_jsb("test")[5][:, :32], JSB_STEMS, JSB_PROGRAMS), path)


def test_midi_existing_output_is_kept_unless_overwrite(tmp_path, capsys, song):
    out = tmp_path / "result" / "alto.mid"
    out.parent.mkdir()
    out.with_suffix(".png").write_bytes(b"an earlier picture")
    fails_cleanly(
        capsys,
        ["midi", str(song), "--stem", "alto", "--out", str(out)],
        ["already holds alto.png", "--overwrite"],
        out.parent,
        [tmp_path, MIDI],
    )
    # without the PNG nothing collides; with --overwrite the PNG is replaced
    fast = ["--steps", "1", "--quiet", "--no-preview", "--out", str(out)]
    rc = main(["midi", str(song), "--stem", "alto", "--no-png", *fast])
    assert rc == 0 and out.exists()
    rc = main(["midi", str(song), "--stem", "alto", "--overwrite", *fast])
    assert rc == 0 and out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_midi_checkpoint_trained_with_other_stems(tmp_path, capsys, song):
    ckpt = retrained(tmp_path / "in", jsb_checkpoint(), "slakh-midi", other_stems)
    fails_cleanly(
        capsys,
        ["midi", str(song), "--stem", "alto", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o.mid")],
        ["--stem alto", "bass, drums, guitar, piano", "--checkpoint"],
        tmp_path / "o.mid",
        [tmp_path, MIDI],
    )


def test_midi_stereo_audio_given_as_midi(tmp_path, capsys, files):
    """An audio file passed to ``midi`` is named as not being MIDI."""
    fails_cleanly(
        capsys,
        ["midi", files["stereo"], "--stem", "alto", "--out", str(tmp_path / "o.mid")],
        ["stereo.wav"],
        tmp_path / "o.mid",
        [tmp_path],
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["separate", "{missing}", "--out", "{tmp}/r"], ["missing.wav: no such file"]),
        (["generate", "--out", "{afile}/r"], ["afile is a file, not a folder"]),
    ],
)
def test_console_script_prints_no_traceback(tmp_path, files, args, expected):
    proc = subprocess.run(
        [sys.executable, "-m", "stemforge.insert.cli", *[a.format(**files) for a in args], "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert all(part in proc.stderr for part in expected) and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists() and proc.stdout == ""
