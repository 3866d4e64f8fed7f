"""The bad-input matrix of every stemforge-insert command, through the real command line
(``main(argv)``) with the embedded checkpoints; one parametrised test per command.

The matrix, where it applies to a command: a missing file, an empty file, a text file named .wav or
.mid, audio cut in the middle of its data (WAV and FLAC), 0.1 s of audio, 6 channels, 8 kHz and
96 kHz; a MIDI file with no notes, with drums only, with 20 instruments; unknown stem names;
``--steps`` 0 or negative; a negative ``--guidance``; an ``--out`` in a missing folder, a read-only
place or under a file; an existing output without ``--overwrite``; a checkpoint folder of the wrong
kind.

A refused case (:class:`Refused`) exits with status 2 and prints exactly one line on stderr that
names the input and the fix, without a traceback; it fails before any model is loaded (loading a
model or a checkpoint's weights fails the test here) and leaves every file as it was, hidden
staging folders included. The valid cases (:class:`Works`: 8 and 96 kHz input is resampled and
written back at its rate, 6 channels with ``--downmix``, a MIDI file with 20 instruments, an
``--out`` whose folders do not exist yet) run one sampling step and write their files.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf

from stemforge.insert.cli import main
from stemforge.insert.embedded import demo_audio_checkpoint, jsb_checkpoint

PREFIX = "stemforge-insert: error: "
AUDIO_WAVS = ("soprano.wav", "alto.wav", "tenor.wav", "bass.wav")


@dataclass(frozen=True)
class Refused:
    """``args`` are refused with one line holding every string of ``says`` (the input, the fix)."""

    args: tuple[str, ...]
    says: tuple[str, ...]
    out: str | None = None
    """``--out`` (default: the command's); ``{name}`` fields are filled from the ``files`` fixture."""
    existing: tuple[str, ...] = ()
    """Files made before the run (earlier results), which must stay as they were."""


@dataclass(frozen=True)
class Works:
    """``args`` are valid input: status 0, ``writes`` under ``--out``, WAVs at ``rate`` and ``frames``."""

    args: tuple[str, ...]
    writes: tuple[str, ...]
    rate: int | None = None
    frames: int | None = None
    out: str | None = None


Case = Refused | Works


# ---- the inputs, made in tmp_path --------------------------------------------------------------


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """A chord with a little noise: audible, not silent, not clipped."""
    t = np.arange(round(seconds * rate)) / rate
    wave = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (196.0, 247.0, 294.0))
    wave = wave + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


def cut_in_half(path: Path, name: str) -> Path:
    """The first half of ``path``'s bytes: the header stays, the data stops in the middle."""
    data = path.read_bytes()
    out = path.with_name(name)
    out.write_bytes(data[: len(data) // 2])
    path.unlink()
    return out


def song(path: Path, tracks: list[tuple[str, int, bool, list[int]]]) -> Path:
    """Two bars at 120 BPM: one track per (name, program, is_drum, pitches), eighth notes."""
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for name, program, is_drum, pitches in tracks:
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum, name=name)
        for i, pitch in enumerate(pitches):
            inst.notes.append(pretty_midi.Note(80, pitch, i * 0.25, (i + 1) * 0.25))
        midi.instruments.append(inst)
    midi.write(str(path))
    return path


def read_only_place(tmp_path: Path) -> Path:
    """A folder nothing can be created in: mode 0o555, or /proc where permission bits do not stop
    root."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if not Path("/proc/self").is_dir():
        pytest.skip("running as root without /proc: no place is read-only")
    return Path("/proc")


def key(path: Path) -> str:
    """How a case names an input: ``mix`` for mix.wav, ``song_mid`` for song.mid, ``cut_flac`` ..."""
    return path.stem if path.suffix in ("", ".wav") else f"{path.stem}_{path.suffix[1:]}"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "in"
    folder.mkdir()
    for name, seconds, rate, channels in (
        ("mix.wav", 1.0, 16000, 1),
        ("bass.wav", 1.0, 16000, 1),
        ("short.wav", 0.1, 16000, 1),
        ("six.wav", 1.0, 16000, 6),
        ("rate8k.wav", 1.0, 8000, 1),
        ("rate96k.wav", 1.0, 96000, 1),
        ("whole.wav", 2.0, 16000, 1),
        ("whole.flac", 2.0, 16000, 1),
    ):
        sf.write(str(folder / name), tone(seconds, rate, channels), rate)
    cut_in_half(folder / "whole.wav", "cut.wav")
    cut_in_half(folder / "whole.flac", "cut.flac")
    (folder / "empty.wav").write_bytes(b"")
    (folder / "empty.mid").write_bytes(b"")
    (folder / "text.wav").write_text("notes for the session, not audio\n")
    (folder / "text.mid").write_text("notes for the session, not MIDI\n")
    (folder / "afile").write_text("a plain file, not a folder\n")
    satb = [
        ("soprano", 73, False, [72, 74] * 8),
        ("tenor", 71, False, [60, 62] * 8),
        ("bass", 70, False, [48] * 16),
    ]
    song(folder / "song.mid", satb)
    song(folder / "nonotes.mid", [(name, program, False, []) for name, program, _, _ in satb])
    song(folder / "drums.mid", [("Drums", 0, True, [36, 38, 42, 38] * 4)])
    song(
        folder / "twenty.mid",
        [(f"Instrument {i}", (5 * i) % 112, False, [40 + 2 * i, 42 + 2 * i] * 8) for i in range(20)],
    )
    # Passes the .ckpt magic-number check and nothing else: import-msgld must refuse before it reads.
    (folder / "model.ckpt").write_bytes(b"PK\x03\x04" + bytes(60))
    (folder / "empty.ckpt").write_bytes(b"")
    (folder / "text.ckpt").write_text("not a checkpoint\n")
    (folder / "msgld.yaml").write_text("model:\n  target: latent_diffusion.models.musicldm.MusicLDM\n")
    (folder / "other.yaml").write_text("trainer:\n  max_steps: 10\n")
    (folder / "text.yaml").write_text("just a sentence, not a configuration\n")
    (folder / "empty.yaml").write_text("")
    return {
        "tmp": str(tmp_path),
        "in": str(folder),
        **{key(p): str(p) for p in folder.iterdir()},
        "missing": str(folder / "missing.wav"),
        "missing_mid": str(folder / "missing.mid"),
        "missing_ckpt": str(folder / "missing.ckpt"),
        "demo": str(demo_audio_checkpoint()),
        "jsb": str(jsb_checkpoint()),
        "codec": str(demo_audio_checkpoint() / "codec"),
        "network": str(jsb_checkpoint() / "network"),
        "ro": str(read_only_place(tmp_path)),
    }


# ---- running one case ----------------------------------------------------------------------------


def snapshot(root: Path) -> dict[Path, str]:
    """Every path under ``root`` (hidden staging folders included) with its content's digest."""
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(root.rglob("*"))
    }


@pytest.fixture
def no_model_work(monkeypatch):
    """Loading a model (or a checkpoint's weights) fails the test: a refused input is refused first."""
    import torch

    from stemforge.pipelines import MultiTrackPipeline, VoiceInsertionPipeline

    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded for an input that must be refused before")

    monkeypatch.setattr(MultiTrackPipeline, "from_pretrained", classmethod(loaded))
    monkeypatch.setattr(VoiceInsertionPipeline, "from_pretrained", classmethod(loaded))
    monkeypatch.setattr(torch, "load", loaded)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared machine: one thread is faster than two."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_case(case: Case, files: dict[str, str], default_out: str, extra: tuple[str, ...], request, capsys):
    out = Path((case.out or default_out).format(**files))
    args = [a.format(**files) for a in case.args]
    if isinstance(case, Refused):
        request.getfixturevalue("no_model_work")
        for existing in case.existing:
            path = Path(existing.format(**files))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"an earlier result")
        before, existed = snapshot(Path(files["tmp"])), out.exists()
        rc = main([*args, "--out", str(out), *extra])
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert rc == 2, err
        assert len(lines) == 1 and lines[0].startswith(PREFIX), err
        for part in case.says:
            assert part.format(**files) in lines[0], (part, lines[0])
        assert snapshot(Path(files["tmp"])) == before, "a refused input changed or left files"
        assert out.exists() == existed
        return
    rc = main([*args, "--out", str(out), *extra])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "Traceback" not in err
    folder = out if out.is_dir() else out.parent  # a folder, or the folder of OUT.mid
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(case.writes)
    for name in case.writes:
        if name.endswith(".wav"):
            info = sf.info(str(folder / name))
            assert case.rate is None or info.samplerate == case.rate, (name, info.samplerate)
            assert case.frames is None or info.frames == case.frames, (name, info.frames)


# ---- the audio commands ----------------------------------------------------------------------------

AUDIO_RUN = ("--quiet", "--steps", "1", "--allow-degenerate")
AUDIO_REFUSED = ("--quiet",)


def audio_file_cases(command: tuple[str, ...], writes: tuple[str, ...]) -> dict[str, Case]:
    """The input-file rows for a command that reads ``{file}`` (filled with each bad file)."""

    def use(name: str) -> tuple[str, ...]:
        return tuple(a.replace("{file}", "{" + name + "}") for a in command)

    return {
        "missing-file": Refused(use("missing"), ("missing.wav", "no such file", "check the path")),
        "a-folder": Refused(use("in"), ("{in}", "is a folder", "give an audio file")),
        "empty-file": Refused(use("empty"), ("empty.wav", "empty (0 bytes)", "WAV, FLAC or OGG")),
        "text-named-wav": Refused(use("text"), ("text.wav", "not a WAV, FLAC or OGG file", "give a WAV")),
        "truncated-wav": Refused(
            use("cut"),
            ("cut.wav", "truncated", "announces 2.00 s", "only 1.00 s are there", "copy or export it again"),
        ),
        "truncated-flac": Refused(use("cut_flac"), ("cut.flac", "truncated", "copy or export it again")),
        "0.1-seconds": Refused(use("short"), ("short.wav", "lasts 0.10 s", "at least 0.5 s")),
        "6-channels": Refused(use("six"), ("six.wav", "6 channels", "pass --downmix")),
        "6-channels-downmix": Works((*use("six"), "--downmix"), writes, rate=16000, frames=16000),
        "8-khz": Works(use("rate8k"), writes, rate=8000, frames=8000),
        "96-khz": Works(use("rate96k"), writes, rate=96000, frames=96000),
    }


def common_cases(command: tuple[str, ...], taken: str, writes: tuple[str, ...]) -> dict[str, Case]:
    """Options, checkpoint and output rows of every audio command (``command`` is valid input)."""
    return {
        "steps-0": Refused((*command, "--steps", "0"), ("--steps 0", "give at least 1")),
        "steps-negative": Refused((*command, "--steps", "-5"), ("--steps -5", "give at least 1")),
        "steps-beyond-schedule": Refused(
            (*command, "--steps", "5000"), ("--steps 5000", "give at most 1000")
        ),
        "checkpoint-midi-model": Refused(
            (*command, "--checkpoint", "{jsb}"),
            ("{jsb}", "voice-insertion pipeline, not an audio", "give another --checkpoint"),
        ),
        "checkpoint-codec-folder": Refused(
            (*command, "--checkpoint", "{codec}"),
            ("{codec}", "component", "give the pipeline folder", "{demo}"),
        ),
        "checkpoint-not-a-model": Refused(
            (*command, "--checkpoint", "{in}"), ("--checkpoint {in}", "not a model folder")
        ),
        "checkpoint-missing": Refused(
            (*command, "--checkpoint", "{tmp}/nothing"), ("--checkpoint {tmp}/nothing", "no such folder")
        ),
        "out-read-only": Refused(
            command, ("cannot write in {ro}", "choose a folder you can write to"), out="{ro}/sf/out"
        ),
        "out-under-a-file": Refused(
            command, ("afile is a file, not a folder", "choose another --out"), out="{afile}/out"
        ),
        "out-is-a-file": Refused(command, ("--out {afile}", "is not a folder"), out="{afile}"),
        "out-exists": Refused(
            command,
            (f"already holds {taken}", "pass --overwrite"),
            existing=(f"{{tmp}}/out/{taken}",),
        ),
        "out-in-missing-folders": Works(command, writes, out="{tmp}/new/deeper/out"),
    }


SEPARATE = ("separate", "{file}")
SEPARATE_CASES: dict[str, Case] = {
    **audio_file_cases(SEPARATE, AUDIO_WAVS),
    **common_cases(("separate", "{mix}"), "bass.wav", AUDIO_WAVS),
    "guidance-negative": Refused(("separate", "{mix}", "--guidance", "-1"), ("--guidance -1.0", ">= 0")),
    "method-needs-ddim": Refused(
        ("separate", "{mix}", "--method", "dirac", "--sampler", "dpm"),
        ("--sampler dpm", "pass --sampler ddim"),
    ),
}


@pytest.mark.parametrize("case", list(SEPARATE_CASES))
def test_separate_matrix(case, files, request, capsys):
    extra = AUDIO_REFUSED if isinstance(SEPARATE_CASES[case], Refused) else AUDIO_RUN
    run_case(SEPARATE_CASES[case], files, "{tmp}/out", extra, request, capsys)


GENERATED = (*AUDIO_WAVS, "mix.wav", "mix.json")
GENERATE = ("generate", "--seconds", "1")
GENERATE_CASES: dict[str, Case] = {
    **common_cases(GENERATE, "mix.wav", GENERATED),
    "seconds-0": Refused(("generate", "--seconds", "0"), ("--seconds 0.0", "give a length in (0,")),
    "seconds-negative": Refused(("generate", "--seconds", "-3"), ("--seconds -3.0", "give a length in (0,")),
    "sample-rate-0": Refused((*GENERATE, "--sample-rate", "0"), ("--sample-rate 0", "give a positive value")),
    "sample-rate-8k": Works((*GENERATE, "--sample-rate", "8000"), GENERATED, rate=8000, frames=8000),
}


@pytest.mark.parametrize("case", list(GENERATE_CASES))
def test_generate_matrix(case, files, request, capsys):
    extra = AUDIO_REFUSED if isinstance(GENERATE_CASES[case], Refused) else AUDIO_RUN
    run_case(GENERATE_CASES[case], files, "{tmp}/out", extra, request, capsys)


ARRANGED = ("soprano.wav", "alto.wav", "tenor.wav", "mix.wav", "mix.json")
ARRANGE_CASES: dict[str, Case] = {
    **audio_file_cases(("arrange", "--given", "bass={file}"), ARRANGED),
    **common_cases(("arrange", "--given", "bass={bass}"), "mix.wav", ARRANGED),
    "second-given-missing": Refused(
        ("arrange", "--given", "bass={bass},tenor={missing}"),
        ("given stem tenor", "missing.wav", "no such file"),
    ),
    "unknown-stem": Refused(
        ("arrange", "--given", "kazoo={bass}"),
        ("--given kazoo", "soprano, alto, tenor, bass", "give a checkpoint trained with 'kazoo'"),
    ),
    "every-stem-given": Refused(
        ("arrange", "--given", "soprano={mix},alto={mix},tenor={mix},bass={bass}"),
        ("--given names every stem", "leave out the ones to generate"),
    ),
    "sampler-not-ddim": Refused(
        ("arrange", "--given", "bass={bass}", "--sampler", "dpm"), ("--sampler dpm", "pass --sampler ddim")
    ),
    "given-malformed": Refused(("arrange", "--given", "bass"), ("--given 'bass'", "STEM=FILE")),
}


@pytest.mark.parametrize("case", list(ARRANGE_CASES))
def test_arrange_matrix(case, files, request, capsys):
    extra = AUDIO_REFUSED if isinstance(ARRANGE_CASES[case], Refused) else AUDIO_RUN
    run_case(ARRANGE_CASES[case], files, "{tmp}/out", extra, request, capsys)


INSERTED = ("bass.wav", "mix.wav", "mix.json")
AUDIO_CASES: dict[str, Case] = {
    **audio_file_cases(("audio", "{file}", "--stem", "bass"), INSERTED),
    **common_cases(("audio", "{mix}", "--stem", "bass"), "bass.wav", INSERTED),
    "unknown-stem": Refused(
        ("audio", "{mix}", "--stem", "kazoo"), ("--stem kazoo", "soprano, alto, tenor, bass", "--checkpoint")
    ),
    "guidance-negative": Refused(
        ("audio", "{mix}", "--stem", "bass", "--guidance", "-2"), ("--guidance -2.0", ">= 0")
    ),
}


@pytest.mark.parametrize("case", list(AUDIO_CASES))
def test_audio_matrix(case, files, request, capsys):
    extra = AUDIO_REFUSED if isinstance(AUDIO_CASES[case], Refused) else AUDIO_RUN
    run_case(AUDIO_CASES[case], files, "{tmp}/out", extra, request, capsys)


ACCOMPANY = ("accompany", "{mix}", "--stem", "bass")
ACCOMPANY_CASES: dict[str, Case] = {
    **audio_file_cases(("accompany", "{file}", "--stem", "bass"), INSERTED),
    **common_cases(ACCOMPANY, "mix.json", INSERTED),
    **{
        f"style-{name}": case
        for name, case in audio_file_cases((*ACCOMPANY, "--style", "{file}"), INSERTED).items()
        if isinstance(case, Refused)
    },
    "unknown-stem": Refused(
        ("accompany", "{mix}", "--stem", "kazoo"),
        ("--stem kazoo", "soprano, alto, tenor, bass", "--checkpoint"),
    ),
    "guidance-negative": Refused((*ACCOMPANY, "--guidance", "-0.5"), ("--guidance -0.5", ">= 0")),
    "style-strength-above-1": Refused(
        (*ACCOMPANY, "--style-strength", "1.5"), ("--style-strength 1.5", "[0, 1]")
    ),
    "rescale-negative": Refused((*ACCOMPANY, "--rescale", "-0.1"), ("--rescale -0.1", "[0, 1]")),
}


@pytest.mark.parametrize("case", list(ACCOMPANY_CASES))
def test_accompany_matrix(case, files, request, capsys):
    extra = AUDIO_REFUSED if isinstance(ACCOMPANY_CASES[case], Refused) else AUDIO_RUN
    run_case(ACCOMPANY_CASES[case], files, "{tmp}/out", extra, request, capsys)


def test_the_style_reference_names_itself(files, request, capsys):
    """A bad --style is named as the style reference, not as the mixture."""
    case = Refused((*ACCOMPANY, "--style", "{text}"), ("style reference", "text.wav"))
    run_case(case, files, "{tmp}/out", AUDIO_REFUSED, request, capsys)


# ---- midi ------------------------------------------------------------------------------------------

MIDI = ("midi", "{song_mid}", "--stem", "alto")
MIDI_RUN = ("--quiet", "--steps", "1", "--no-preview", "--no-png")
MIDI_CASES: dict[str, Case] = {
    "missing-file": Refused(
        ("midi", "{missing_mid}", "--stem", "alto"), ("missing.mid", "no such MIDI file", "check the path")
    ),
    "a-folder": Refused(("midi", "{in}", "--stem", "alto"), ("{in}", "is a folder", "give a .mid file")),
    "empty-file": Refused(
        ("midi", "{empty_mid}", "--stem", "alto"), ("empty.mid", "file is empty", "Standard MIDI file")
    ),
    "text-named-mid": Refused(
        ("midi", "{text_mid}", "--stem", "alto"), ("text.mid", "not a Standard MIDI file", "give a .mid file")
    ),
    "audio-named-as-song": Refused(
        ("midi", "{mix}", "--stem", "alto"), ("mix.wav", "not a Standard MIDI file")
    ),
    "no-notes": Refused(
        ("midi", "{nonotes_mid}", "--stem", "alto"), ("nonotes.mid", "has no notes", "at least one note")
    ),
    "drums-only": Refused(
        ("midi", "{drums_mid}", "--stem", "alto"), ("drums.mid", "no track can play", "--map VOICE=TRACK")
    ),
    "20-instruments": Works(("midi", "{twenty_mid}", "--stem", "alto"), ("song.mid",)),
    "unknown-stem": Refused(
        (*MIDI[:2], "--stem", "kazoo"), ("--stem kazoo", "soprano, alto, tenor, bass", "--checkpoint")
    ),
    "stem-named-twice": Refused((*MIDI[:2], "--stems", "alto,alto"), ("--stems alto,alto", "named twice")),
    "steps-0": Refused((*MIDI, "--steps", "0"), ("--steps 0", "give at least 1")),
    "steps-negative": Refused((*MIDI, "--steps", "-1"), ("--steps -1", "give at least 1")),
    "temperature-0": Refused((*MIDI, "--temperature", "0"), ("--temperature 0.0", "> 0")),
    "preview-rate-0": Refused((*MIDI, "--preview-rate", "0"), ("--preview-rate 0", "positive")),
    "checkpoint-audio-model": Refused(
        (*MIDI, "--checkpoint", "{demo}"),
        ("{demo}", "not a MIDI insertion model", "give another --checkpoint"),
    ),
    "checkpoint-network-folder": Refused(
        (*MIDI, "--checkpoint", "{network}"), ("{network}", "component", "give the pipeline folder", "{jsb}")
    ),
    "checkpoint-missing": Refused(
        (*MIDI, "--checkpoint", "{tmp}/nothing"), ("--checkpoint {tmp}/nothing", "no such folder")
    ),
    "out-not-mid": Refused(MIDI, ("--out", "song.wav", "ending in .mid"), out="{tmp}/out/song.wav"),
    "out-read-only": Refused(
        MIDI, ("cannot write in {ro}", "choose a folder you can write to"), out="{ro}/sf/song.mid"
    ),
    "out-under-a-file": Refused(
        MIDI, ("afile is a file, not a folder", "choose another --out"), out="{afile}/song.mid"
    ),
    "out-is-a-folder": Refused(
        MIDI, ("--out {in}.mid", "is a folder"), out="{in}.mid", existing=("{in}.mid/keep",)
    ),
    "out-exists": Refused(
        MIDI, ("already holds song.mid", "pass --overwrite"), existing=("{tmp}/out/song.mid",)
    ),
    "out-in-missing-folders": Works(MIDI, ("song.mid",), out="{tmp}/new/deeper/song.mid"),
}


@pytest.mark.parametrize("case", list(MIDI_CASES))
def test_midi_matrix(case, files, request, capsys):
    extra = ("--quiet",) if isinstance(MIDI_CASES[case], Refused) else MIDI_RUN
    run_case(MIDI_CASES[case], files, "{tmp}/out/song.mid", extra, request, capsys)
    if case == "20-instruments":  # the 20 tracks are kept, the inserted alto is added
        midi = pretty_midi.PrettyMIDI(str(Path(files["tmp"]) / "out" / "song.mid"))
        assert len(midi.instruments) == 21


# ---- convert and import-msgld ------------------------------------------------------------------------

PIPELINE = ("pipeline.json", "unet", "codec")
CONVERT_CASES: dict[str, Case] = {
    "missing-folder": Refused(("convert", "{tmp}/nothing"), ("CHECKPOINT {tmp}/nothing", "no such folder")),
    "a-file": Refused(("convert", "{text_ckpt}"), ("text.ckpt", "is a file", "give the model's folder")),
    "not-a-model": Refused(("convert", "{in}"), ("{in}", "not a model folder")),
    "codec-folder": Refused(("convert", "{codec}"), ("{codec}", "component", "give the pipeline folder")),
    "out-exists-pipeline": Refused(
        ("convert", "{demo}"),
        ("already holds a pipeline", "pass --overwrite"),
        existing=("{tmp}/out/pipeline.json",),
    ),
    "out-exists-other": Refused(
        ("convert", "{demo}"),
        ("is not a pipeline folder", "choose a new folder"),
        existing=("{tmp}/out/notes.txt",),
    ),
    "out-read-only": Refused(
        ("convert", "{demo}"), ("cannot write in {ro}", "choose a folder"), out="{ro}/sf/out"
    ),
    "out-under-a-file": Refused(("convert", "{demo}"), ("afile is a file, not a folder",), out="{afile}/out"),
    # The embedded pipeline's sample decoder is converted with it.
    "out-in-missing-folders": Works(
        ("convert", "{demo}"), (*PIPELINE, "sample-decoder"), out="{tmp}/new/deeper/out"
    ),
}


@pytest.mark.parametrize("case", list(CONVERT_CASES))
def test_convert_matrix(case, files, request, capsys):
    run_case(CONVERT_CASES[case], files, "{tmp}/out", (), request, capsys)


IMPORT = ("import-msgld", "{model_ckpt}", "--config", "{msgld_yaml}")
IMPORT_CASES: dict[str, Case] = {
    "missing-file": Refused(
        ("import-msgld", "{missing_ckpt}", "--config", "{msgld_yaml}"),
        ("missing.ckpt", "no such file", "give the MSG-LD"),
    ),
    "empty-file": Refused(
        ("import-msgld", "{empty_ckpt}", "--config", "{msgld_yaml}"),
        ("empty.ckpt", "empty", "give the MSG-LD"),
    ),
    "text-named-ckpt": Refused(
        ("import-msgld", "{text_ckpt}", "--config", "{msgld_yaml}"),
        ("text.ckpt", "not a PyTorch checkpoint", "give the MSG-LD"),
    ),
    "pipeline-folder": Refused(
        ("import-msgld", "{demo}", "--config", "{msgld_yaml}"), ("{demo}", "is a folder", "--checkpoint")
    ),
    "config-missing": Refused(
        ("import-msgld", "{model_ckpt}", "--config", "{tmp}/none.yaml"),
        ("--config {tmp}/none.yaml", "no such file"),
    ),
    "config-empty": Refused(
        ("import-msgld", "{model_ckpt}", "--config", "{empty_yaml}"), ("--config", "empty.yaml", "empty")
    ),
    "config-text": Refused(
        ("import-msgld", "{model_ckpt}", "--config", "{text_yaml}"),
        ("text.yaml", "outside the YAML subset", "PyYAML"),
    ),
    "config-other-model": Refused(
        ("import-msgld", "{model_ckpt}", "--config", "{other_yaml}"),
        ("other.yaml", "model.params", "give the config the model was trained with"),
    ),
    "vocoder-config-missing": Refused(
        (*IMPORT, "--vocoder-config", "{tmp}/none.json"), ("--vocoder-config {tmp}/none.json", "no such file")
    ),
    "out-exists": Refused(
        IMPORT, ("already holds a pipeline", "pass --overwrite"), existing=("{tmp}/out/pipeline.json",)
    ),
    "out-read-only": Refused(IMPORT, ("cannot write in {ro}", "choose a folder"), out="{ro}/sf/out"),
    "out-under-a-file": Refused(IMPORT, ("afile is a file, not a folder",), out="{afile}/out"),
}


@pytest.mark.parametrize("case", list(IMPORT_CASES))
def test_import_msgld_matrix(case, files, request, capsys):
    run_case(IMPORT_CASES[case], files, "{tmp}/out", ("--quiet",), request, capsys)
