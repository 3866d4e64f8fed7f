"""``stemforge-insert midi`` end to end on real MIDI files with the embedded JSB model, and every bad
MIDI input: clear message, exit status 2, no traceback, nothing written, inputs untouched."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stemforge.insert.cli import main
from stemforge.insert.embedded import example_chorale, jsb_checkpoint
from stemforge.midi import load_midi, midi_to_roll, roll_to_voices

ROOT = Path(__file__).resolve().parents[3]
MIDI = ROOT / "tests" / "fixtures" / "midi"
#: Smallest mean KL (nats per step) between the hidden bass under two opposite instructions
#: (0.61 measured for the step-8000 export; 0 would mean the instruction is ignored).
KL_MIN = 0.2
#: The shipped model's training step (its held-out NLL is tested with stemforge-pipelines).
EMBEDDED_STEP = 8000


def run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main([*args, "--quiet"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def voices(path: Path) -> dict[str, list[int]]:
    midi = load_midi(path)
    roll = midi_to_roll(midi, steps_per_quarter=4)
    tokens = roll_to_voices(roll.sustain, polyphony="highest")
    return {name: tokens[i].tolist() for i, name in enumerate(roll.stems)}


@pytest.fixture
def excerpt(tmp_path) -> Path:
    """The first 32 sixteenths (two bars) of JSB test chorale 5, the fixture chorale_test005.mid's source."""
    from stemforge.midi import JSB_PROGRAMS, JSB_STEMS, load_jsb, voices_to_midi, write_midi

    path = tmp_path / "input" / "excerpt.mid"
    return write_midi(voices_to_midi(load_jsb("test")[5][:, :32], JSB_STEMS, JSB_PROGRAMS), path)


def test_insert_alto_into_a_real_chorale_writes_midi_preview_and_png(tmp_path, capsys, excerpt):
    song = excerpt
    before = digest(song)
    out = tmp_path / "out" / "alto.mid"
    rc, stdout, _ = run(capsys, "midi", str(song), "--stem", "alto", "--steps", "1", "--out", str(out))
    assert rc == 0
    assert digest(song) == before
    written = {Path(line.removeprefix("wrote ")) for line in stdout.splitlines()}
    assert written == {out, out.with_suffix(".wav"), out.with_suffix(".png")}
    original, result = voices(song), voices(out)
    assert set(result) == {"soprano", "alto", "tenor", "bass"}
    for given in ("soprano", "tenor", "bass"):
        assert result[given] == original[given]
    alto = [p for p in result["alto"] if p != 128]
    assert len(alto) > len(result["alto"]) // 2  # a voice that mostly sounds, on the chorale's grid
    assert len(result["alto"]) == len(original["alto"])
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import soundfile as sf

    info = sf.info(str(out.with_suffix(".wav")))
    end = load_midi(out).get_end_time()
    assert info.samplerate == 22050 and abs(info.duration - (end + 1.0)) < 0.1
    assert not list(out.parent.glob(".*"))  # no staging leftovers


def test_missing_preview_renderer_keeps_the_midi(tmp_path, excerpt):
    """A real process in which no SoundFont renderer can be imported (neither tinysoundfont nor
    stemforge-data's midirenderer): the command says so before sampling, writes the MIDI and the
    PNG, exits 0."""
    out = tmp_path / "out" / "alto.mid"
    code = (
        "import sys; sys.modules['tinysoundfont'] = None; sys.modules['midirenderer'] = None\n"
        "from stemforge.insert.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "midi",
            str(excerpt),
            "--stem",
            "alto",
            "--steps",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warning: no preview alto.wav: no SoundFont renderer is installed" in proc.stderr
    assert "pip install --no-deps tinysoundfont" in proc.stderr
    assert proc.stdout.splitlines() == [f"wrote {out}", f"wrote {out.with_suffix('.png')}"]
    assert out.is_file() and out.with_suffix(".png").is_file() and not out.with_suffix(".wav").exists()
    assert voices(out)["soprano"] == voices(excerpt)["soprano"]


def test_two_stems_are_reproducible_with_a_seed(tmp_path, capsys, excerpt):
    a, b, c = tmp_path / "a.mid", tmp_path / "b.mid", tmp_path / "c.mid"
    for out, seed in ((a, "3"), (b, "3"), (c, "4")):
        rc, _, _ = run(
            capsys,
            "midi",
            str(excerpt),
            "--stems",
            "alto,tenor",
            "--steps",
            "1",
            "--seed",
            seed,
            "--no-preview",
            "--out",
            str(out),
        )
        assert rc == 0
    assert voices(a) == voices(b)
    assert voices(a)["alto"] != voices(c)["alto"] or voices(a)["tenor"] != voices(c)["tenor"]
    assert voices(a)["soprano"] == voices(excerpt)["soprano"]
    assert not a.with_suffix(".wav").exists() and a.with_suffix(".png").exists()


@pytest.mark.slow
def test_readme_main_command_on_the_example_chorale(tmp_path, capsys):
    out = tmp_path / "chorale_alto.mid"
    rc, _, _ = run(capsys, "midi", "--example", "--stem", "alto", "--out", str(out))
    assert rc == 0 and out.exists() and out.with_suffix(".wav").exists() and out.with_suffix(".png").exists()
    result, original = voices(out), voices(example_chorale())
    assert result["bass"] == original["bass"] and len(result["alto"]) == len(original["alto"])


def _bad(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    if name == "corrupt.mid":
        path.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\x10\x00\x90\x3c")
    elif name == "text.mid":
        path.write_text("not a midi file\n")
    elif name == "empty.mid":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["{tmp}/missing.mid", "--stem", "alto"], ["missing.mid", "no such MIDI file"]),
        (["{tmp}/corrupt.mid", "--stem", "alto"], ["corrupt.mid", "truncated or corrupt"]),
        (["{tmp}/text.mid", "--stem", "alto"], ["text.mid", "not a Standard MIDI file"]),
        (["{tmp}/empty.mid", "--stem", "alto"], ["empty.mid", "empty"]),
        (
            [str(MIDI / "chorale_test005.mid"), "--stem", "drums"],
            ["--stem drums", "soprano, alto, tenor, bass"],
        ),
        ([str(MIDI / "chorale_test005.mid"), "--stems", "alto,alto"], ["named twice"]),
        ([str(MIDI / "chorale_test005.mid")], ["--stem"]),
        (
            [str(MIDI / "chorale_test005.mid"), "--stem", "alto", "--checkpoint", "{tmp}"],
            ["pipeline.json", "stemforge-train export"],
        ),
    ],
)
def test_bad_midi_inputs_fail_cleanly(tmp_path, capsys, args, expected):
    for name in ("corrupt.mid", "text.mid", "empty.mid"):
        _bad(tmp_path, name)
    out = tmp_path / "result" / "song.mid"
    inputs = sorted(p for p in tmp_path.iterdir() if p.is_file())
    before = {p: digest(p) for p in inputs}
    fixture_before = {p: digest(p) for p in MIDI.glob("*.mid")}
    rc, _, err = run(capsys, "midi", *[a.replace("{tmp}", str(tmp_path)) for a in args], "--out", str(out))
    assert rc == 2
    assert err.startswith("stemforge-insert: error: ")
    for part in expected:
        assert part in err
    assert "Traceback" not in err
    assert not (tmp_path / "result").exists()
    assert sorted(p for p in tmp_path.iterdir() if p.is_file()) == inputs  # no stray files either
    assert {p: digest(p) for p in inputs} == before
    assert {p: digest(p) for p in MIDI.glob("*.mid")} == fixture_before


def test_audio_checkpoint_is_refused_by_midi(tmp_path, capsys):
    from stemforge.insert.embedded import demo_audio_checkpoint

    rc, _, err = run(
        capsys,
        "midi",
        "--example",
        "--stem",
        "alto",
        "--checkpoint",
        str(demo_audio_checkpoint()),
        "--out",
        str(tmp_path / "x.mid"),
    )
    assert rc == 2 and "not a MIDI insertion model" in err
    assert not list(tmp_path.iterdir())


def test_console_script_reports_user_errors_without_traceback(tmp_path):
    missing = tmp_path / "nope.mid"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stemforge.insert.cli",
            "midi",
            str(missing),
            "--stem",
            "alto",
            "--out",
            str(tmp_path / "o.mid"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "nope.mid: no such MIDI file" in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())


def test_embedded_model_and_example_ship_with_the_app():
    ckpt = jsb_checkpoint()
    # A pipeline folder of a few MB: 2.1M parameters stored as float16 (loaded into float32 parameters).
    assert (ckpt / "network" / "model.safetensors").stat().st_size < 5 * 2**20
    manifest = json.loads((ckpt / "pipeline.json").read_text())
    assert manifest["kind"] == "voice-insertion" and manifest["storage_dtype"] == "float16"
    assert [inst.name for inst in load_midi(example_chorale()).instruments] == [
        "soprano",
        "alto",
        "tenor",
        "bass",
    ]


def _hidden_bass_logits(model, instruction: str | None) -> torch.Tensor:
    from stemforge.midi import load_jsb
    from stemforge.samplers.masked_discrete import masked_input

    x = load_jsb("test")[5][None, :, :32]
    visible = torch.ones_like(x, dtype=torch.bool)
    visible[:, 3] = False
    cond = model.instruction_cond(instruction, 1) if instruction else None
    with torch.no_grad():
        return torch.log_softmax(model.network(masked_input(x, visible), visible, cond)[0, 3], -1)


def test_instruction_changes_the_embedded_models_distribution():
    from stemforge.pipelines import VoiceInsertionPipeline

    model = VoiceInsertionPipeline.from_pretrained(jsb_checkpoint())
    assert model.text_dim == 384
    held = _hidden_bass_logits(model, "bass: long held notes, high register, rising line")
    moving = _hidden_bass_logits(model, "bass: eighth-note motion, low register, falling line")
    plain = _hidden_bass_logits(model, None)

    def kl(p: torch.Tensor, q: torch.Tensor) -> float:  # mean over the 32 steps, nats
        finite = torch.isfinite(p)
        return float((p.exp() * (p - q)).where(finite, torch.zeros_like(p)).sum(-1).mean())

    assert kl(held, moving) > KL_MIN and kl(moving, plain) > KL_MIN / 4
    # The register words move the predicted bass pitch the way they say (expected pitch per step).
    pitches = torch.arange(129, dtype=torch.float64)

    def mean_pitch(logp: torch.Tensor) -> float:
        probs = logp.exp().double()[:, :128]
        return float((probs * pitches[:128]).sum(-1).div(probs.sum(-1)).mean())

    assert mean_pitch(held) > mean_pitch(moving)


def test_instruction_is_reported_unused_by_a_model_without_text(tmp_path, capsys, excerpt):
    import json

    from safetensors.torch import save_file

    from stemforge.pipelines import VoiceInsertionModel, VoiceModelConfig
    from stemforge.unet3d import UNet3DConfig

    config = VoiceModelConfig(
        UNet3DConfig.from_name("pianoroll-jsb", model_channels=8, head_channels=16), 36, 81
    )
    torch.manual_seed(0)
    model = VoiceInsertionModel(config)
    ckpt = tmp_path / "no-text"
    ckpt.mkdir()
    save_file(model.state_dict(), ckpt / "model.safetensors")
    meta = {
        "task": "midi",
        "model_class": "stemforge.train.tasks.midi.VoiceInsertionModel",
        "model_config": config.to_dict(),
        "stem_names": ["soprano", "alto", "tenor", "bass"],
        "crop_length": 32,
    }
    (ckpt / "config.json").write_text(json.dumps(meta))
    out = tmp_path / "out" / "bass.mid"
    rc, _, err = run(
        capsys,
        "midi",
        str(excerpt),
        "--stem",
        "bass",
        "--checkpoint",
        str(ckpt),
        "--steps",
        "2",
        "--instruction",
        "walking bass, mostly quarter notes",
        "--out",
        str(out),
        "--no-preview",
        "--no-png",
    )
    assert rc == 0 and out.exists()
    assert "has no text conditioning; the instruction is not used" in err


def test_embedded_jsb_model_loads_with_this_code():
    from stemforge.pipelines import VoiceInsertionModel, VoiceInsertionPipeline

    pipe = VoiceInsertionPipeline.from_pretrained(jsb_checkpoint())
    model = pipe.network
    assert isinstance(model, VoiceInsertionModel)
    assert (model.config.pitch_low, model.config.pitch_high, model.config.text_dim) == (36, 81, 384)
    assert pipe.step == EMBEDDED_STEP and pipe.stems == ("soprano", "alto", "tenor", "bass")
    assert sum(p.numel() for p in model.parameters()) < 2_500_000


def test_multitrack_band_file_without_voice_names(tmp_path, capsys):
    """A real multi-track file (drums, piano chords, guitar, bass, strings; no voice names): the
    tracks are matched to voices, the drums and the spare track are reported as dropped, the chords
    as reduced, and the inserted alto lies between the voices it was matched against."""
    song = MIDI / "band_tempo_changes.mid"
    before = digest(song)
    out = tmp_path / "band_alto.mid"
    rc, _, err = run(
        capsys, "midi", str(song), "--stem", "alto", "--steps", "4", "--no-preview", "--out", str(out)
    )
    assert rc == 0, err
    assert "bass <- track #3 'Bass'" in err
    assert "dropped track #0 Drums: drums" in err
    assert "plays chords on" in err and "reduced to its highest note" in err
    assert digest(song) == before
    written = voices(out)
    alto = torch.tensor(written["alto"])
    assert bool((alto != 128).any())
    sounding = alto[alto != 128].float()
    bass = torch.tensor(written["Bass"])
    assert float(sounding.mean()) > float(bass[bass != 128].float().mean())
    assert 48 <= float(sounding.median()) <= 76  # an alto's register, not a bass's or a piccolo's


def test_multitrack_explicit_map_and_bad_map(tmp_path, capsys):
    song = MIDI / "band_tempo_changes.mid"
    out = tmp_path / "mapped.mid"
    rc, _, err = run(
        capsys,
        "midi", str(song), "--stem", "alto", "--steps", "4", "--no-preview", "--no-png",
        "--map", "soprano=Strings,tenor=Guitar,bass=#3", "--out", str(out),
    )  # fmt: skip
    assert rc == 0, err
    assert "soprano <- track #4 'Strings' [program 48] (--map)" in err
    rc, _, err = run(
        capsys, "midi", str(song), "--stem", "alto", "--map", "soprano=Oboe", "--out", str(tmp_path / "x.mid")
    )
    assert rc == 2 and "'Oboe' is not a track name" in err and "Traceback" not in err
    assert not (tmp_path / "x.mid").exists()
