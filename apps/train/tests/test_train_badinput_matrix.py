"""The bad-input matrix of every stemforge-train command, through the real command line
(``main(argv)``); one parametrised test per command.

The matrix, where it applies to a command: a config file that is missing, a folder, empty, binary,
not YAML, not a mapping, without ``task`` or with an unknown key, and malformed ``--set``
overrides; zero or negative steps, limits, batch sizes, cadences and rates; unknown stem names
(``data.stems``, ``model.target_stem``, ``model.insert_stems``); a data root that is missing, empty
or not Slakh-format; audio that is missing, empty, a text file named ``.flac``, cut in the middle
of its data or 0.1 s long (6 channels, 8 kHz and 96 kHz are accepted: the datasets mix down and
resample); MIDI that is empty, a text file or audio named ``.mid``, without notes (drums only and
20 instruments render); bad ``--programs`` specs and SoundFonts; model folders of the wrong kind
(the shipped stemforge-insert pipelines, their codec and network folders, a flat export, a real
training run, a codec) or of the wrong task; an output that is a file, under a file, in a read-only
place, or that exists without the command's overwrite or resume semantics.

A refused case (:class:`Refused`) exits with status 2 and prints exactly one line on stderr that
names the input and the fix, without a traceback; it fails before any work (the functions that
start it, ``fit``, ``export_checkpoint``, ``build_latent_cache``, ``bundle_mel_codec``,
``load_midi_model``, stemforge-data's ``render_midi``, ... fail the test if called, and a refused ``fit`` does not
import DeepSpeed) and leaves every file as it was. The valid cases (:class:`Works`) run the command
and check what it wrote. The training run that ``export``, ``midi-nll`` and the run-folder cases
use is a real one-step ``stemforge-train fit`` of a tiny MIDI model, and ``export`` also takes two
one-step runs of a tiny LDM (from latent caches with and without the codec recorded), made once per
module.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import yaml

from stemforge.train.cli import main

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "apps" / "insert" / "src" / "stemforge" / "insert" / "checkpoints"
ACCOMPANIMENT = ROOT / "tests" / "fixtures" / "checkpoints" / "tiny-accompaniment"
PREFIX = "stemforge-train: error: "
SATB = ("soprano", "alto", "tenor", "bass")
#: The tiny MIDI model of the README example: a one-step CPU run takes seconds.
TINY_MIDI = {
    "dist.devices": 1,
    "run.max_steps": 1,
    "run.val_every": 0,
    "run.progress": False,
    "model.unet.model_channels": 8,
    "model.unet.head_channels": 8,
    "model.unet.norm_groups": 4,
}


@dataclass(frozen=True)
class Refused:
    """``args`` are refused with one line holding every string of ``says`` (the input, the fix)."""

    args: tuple[str, ...]
    says: tuple[str, ...]
    out: str | None = None
    """The output (``{out}`` in ``args``; default: the command's); ``{name}`` fields come from ``files``."""
    existing: tuple[str, ...] = ()
    """Files made before the run (earlier results), which must stay as they were."""
    setup: tuple[str, ...] = ()
    """A command run (successfully) before, e.g. a first render."""


@dataclass(frozen=True)
class Works:
    """``args`` are valid input: status 0, every path of ``writes`` under the output, audio at ``rate``."""

    args: tuple[str, ...]
    writes: tuple[str, ...]
    out: str | None = None
    existing: tuple[str, ...] = ()
    rate: int | None = None


Case = Refused | Works


# ---- the inputs ---------------------------------------------------------------------------------------


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    """A chord with a little noise: audible, not silent, not clipped."""
    t = np.arange(round(seconds * rate)) / rate
    wave = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (196.0, 247.0, 294.0))
    wave = wave + 0.01 * np.random.default_rng(0).standard_normal(t.size)
    return np.repeat(wave[:, None], channels, axis=1).astype(np.float32)


def song(path: Path, tracks: list[tuple[str, int, bool, list[int]]]) -> Path:
    """Two bars at 120 BPM: one track per (name, program, is_drum, pitches), eighth notes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    midi = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for name, program, is_drum, pitches in tracks:
        inst = pretty_midi.Instrument(program=program, is_drum=is_drum, name=name)
        for i, pitch in enumerate(pitches):
            inst.notes.append(pretty_midi.Note(80, pitch, i * 0.25, (i + 1) * 0.25))
        midi.instruments.append(inst)
    midi.write(str(path))
    return path


def read_only_place(root: Path) -> Path:
    """A folder nothing can be created in: mode 0o555, or /proc where permission bits do not stop root."""
    if os.geteuid() != 0:
        folder = root / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    if not Path("/proc/self").is_dir():
        pytest.skip("running as root without /proc: no place is read-only")
    return Path("/proc")


def config_file(path: Path, shipped: str, changes: dict[str, object]) -> str:
    """A shipped config with ``changes`` (dotted keys; None deletes), written as real YAML."""
    raw = yaml.safe_load((ROOT / "configs" / shipped).read_text())
    for key, value in changes.items():
        *parents, name = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        if value is None:
            node.pop(name, None)
        else:
            node[name] = value
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return str(path)


def track(folder: Path, stems: dict[str, tuple[float, int, int]]) -> str:
    """A folder of ``<stem>.flac`` files: stem -> (seconds, rate, channels)."""
    folder.mkdir(parents=True)
    for stem, (seconds, rate, channels) in stems.items():
        sf.write(str(folder / f"{stem}.flac"), tone(seconds, rate, channels), rate)
    return str(folder)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """Every input, made once; the cases only read them (each case checks that nothing changed)."""
    root = tmp_path_factory.mktemp("inputs")
    tracks = root / "tracks"
    names = {
        "good": track(tracks / "good", {s: (2.0, 16000, 1) for s in SATB}),
        "six": track(tracks / "six", {"soprano": (2.0, 16000, 6)}),
        "rate8k": track(tracks / "rate8k", {"soprano": (2.0, 8000, 1)}),
        "rate96k": track(tracks / "rate96k", {"soprano": (2.0, 96000, 1)}),
        "short": track(tracks / "short", {"soprano": (0.1, 16000, 1)}),
        "cut": track(tracks / "cut", {"soprano": (2.0, 16000, 1)}),
        "text": track(tracks / "text", {}),
        "empty": track(tracks / "empty", {}),
        "nostems": track(tracks / "nostems", {}),
    }
    whole = tracks / "cut" / "soprano.flac"
    whole.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # the header stays, the data stops
    (tracks / "text" / "soprano.flac").write_text("notes for the session, not audio\n")
    (tracks / "empty" / "soprano.flac").write_bytes(b"")
    (tracks / "nostems" / "notes.txt").write_text("no audio here\n")

    folder = root / "in"
    folder.mkdir()
    sf.write(str(folder / "mix.wav"), tone(1.0, 16000), 16000)
    (folder / "afile").write_text("a plain file, not a folder\n")
    (folder / "empty.yaml").write_text("\n")
    (folder / "text.yaml").write_text("just a sentence, not a configuration\n")
    (folder / "broken.yaml").write_text("task: midi\nrun: {max_steps: [1\n")
    (folder / "notask.yaml").write_text("run:\n  max_steps: 10\n")
    (folder / "text.sf2").write_text("not a SoundFont\n")
    (folder / "empty.sf2").write_bytes(b"")
    good = names["good"]
    midi_changes = {**TINY_MIDI, "run.out_dir": str(root / "unused-run")}
    names |= {
        "midi_yaml": config_file(folder / "midi.yaml", "tiny-midi.yaml", midi_changes),
        "typo_yaml": config_file(folder / "typo.yaml", "tiny-midi.yaml", {"run.max_step": 5}),
        "wae_yaml": config_file(
            folder / "wae.yaml",
            "tiny-waveform-ae.yaml",
            {"dist.devices": 1, "data.train_tracks": [good], "data.val_tracks": [good]},
        ),
        "ldm_yaml": config_file(
            folder / "ldm.yaml",
            "tiny-ldm.yaml",
            {
                "dist.devices": 1,
                "data.train_tracks": [good],
                "data.val_tracks": [good],
                "data.latent_cache": None,
                "data.codec": str(SHIPPED / "demo-audio" / "codec"),
            },
        ),
    }
    satb = [("soprano", 73, False, [72, 74] * 8), ("bass", 70, False, [48] * 16)]
    midi = root / "midi"
    song(midi / "song" / "song.mid", satb)
    song(midi / "nonotes" / "nonotes.mid", [(name, program, False, []) for name, program, _, _ in satb])
    song(midi / "drums" / "drums.mid", [("Drums", 0, True, [36, 38, 42, 38] * 4)])
    song(
        midi / "twenty" / "twenty.mid",
        [(f"Instrument {i}", (5 * i) % 112, False, [40 + 2 * i, 42 + 2 * i] * 8) for i in range(20)],
    )
    for name, data in (("textmid", b"notes, not MIDI\n"), ("emptymid", b""), ("audiomid", None)):
        (midi / name).mkdir()
        (midi / name / f"{name}.mid").write_bytes(
            data if data is not None else (folder / "mix.wav").read_bytes()
        )
    (midi / "nomidi").mkdir()
    (midi / "nomidi" / "readme.txt").write_text("no MIDI here\n")
    for name in ("song", "nonotes", "drums", "twenty", "textmid", "emptymid", "audiomid", "nomidi"):
        names[f"src_{name}"] = str(midi / name)
    names["song_mid"] = str(midi / "song" / "song.mid")
    (root / "slakh_empty").mkdir()
    names["slakh_empty"] = str(root / "slakh_empty")
    names |= {key(p): str(p) for p in folder.iterdir()}
    return {**names, "in": str(folder), "inputs": str(root), "ro": str(read_only_place(root))}


def key(path: Path) -> str:
    """``mix`` for mix.wav, ``text_sf2`` for text.sf2, ``afile`` for afile."""
    return path.stem if path.suffix in ("", ".wav") else f"{path.stem}_{path.suffix[1:]}"


def fit_once(config: str, run: Path) -> None:
    """``stemforge-train fit CONFIG`` into ``run`` in a fresh process (DeepSpeed, one CPU rank)."""
    proc = subprocess.run(
        [sys.executable, "-m", "stemforge.train.cli", "fit", config, "--set", f"run.out_dir={run}"],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "checkpoints" / "step-00000001" / "meta.json").is_file()


@pytest.fixture(scope="module")
def models(tmp_path_factory, inputs) -> dict[str, str]:
    """A real one-step training run of the tiny MIDI model (through the command line, so it is also
    the valid case of ``fit``), its flat export, two one-step runs of a tiny LDM (from a latent cache
    of the shipped demonstration codec that records it, and from a copy of that cache that does not),
    a mel-VAE export, a rendered Slakh-format corpus."""
    import torch
    from safetensors.torch import save_file

    from stemforge.codec import AutoencoderKL, AutoencoderKLConfig, MelConfig

    root = tmp_path_factory.mktemp("models")
    run = root / "run"
    fit_once(inputs["midi_yaml"], run)
    assert main(["export", str(run), str(root / "run-export"), "--format", "flat"]) == 0
    # The tiny LDM: a latent cache written by `stemforge-train cache` (its index.json records the
    # codec), and the same latents in a cache whose index.json does not (as stemforge-data's
    # write_latent_cache writes it without metadata).
    latents, bare = root / "latents", root / "latents-bare"
    ldm = {**TINY_MIDI, "data.train_tracks": [inputs["good"]], "data.val_tracks": []}  # the same widths
    cache_yaml = config_file(
        root / "ldm-cache.yaml", "tiny-ldm.yaml", {**ldm, "data.latent_cache": str(latents)}
    )
    assert (
        main(["cache", cache_yaml, "--codec", str(SHIPPED / "demo-audio" / "codec"), "--out", str(latents)])
        == 0
    )
    shutil.copytree(latents, bare)
    index = json.loads((bare / "index.json").read_text())
    assert index.pop("codec") == str(SHIPPED / "demo-audio" / "codec")
    del index["codec_config"]
    (bare / "index.json").write_text(json.dumps(index))
    fit_once(cache_yaml, root / "ldm-run")
    fit_once(
        config_file(root / "ldm-bare.yaml", "tiny-ldm.yaml", {**ldm, "data.latent_cache": str(bare)}),
        root / "ldm-bare-run",
    )
    # A mel-VAE export as `stemforge-train export` writes it: a real seeded tiny AutoencoderKL.
    torch.manual_seed(3)
    vae = AutoencoderKL(AutoencoderKLConfig.from_name("tiny"))
    (root / "vae").mkdir()
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, root / "vae" / "model.safetensors")
    (root / "vae" / "config.json").write_text(
        json.dumps(
            {
                "format": "stemforge-model",
                "task": "mel_vae",
                "model_class": "stemforge.codec.AutoencoderKL",
                "model_config": vae.config.to_dict(),
                "mel_config": MelConfig.from_name("msgld").to_dict(),
            }
        )
    )
    corpus = root / "corpus"
    for split in ("train", "valid"):
        render = ["data", "render", "--source", "jsb", "--split", split, "--limit", "1", "--out", str(corpus)]
        assert main(render) == 0
    unfinished = root / "unfinished"
    unfinished.mkdir()
    shutil.copy(run / "config.yaml", unfinished / "config.yaml")  # a run stopped before its first checkpoint
    return {
        "models": str(root),
        "run": str(run),
        "run_export": str(root / "run-export"),
        "ldm_run": str(root / "ldm-run"),
        "ldm_bare_run": str(root / "ldm-bare-run"),
        "latents_bare": str(bare),
        "vae": str(root / "vae"),
        "corpus": str(corpus),
        "unfinished": str(unfinished),
        "demo": str(SHIPPED / "demo-audio"),
        "codec": str(SHIPPED / "demo-audio" / "codec"),
        "unet": str(SHIPPED / "demo-audio" / "unet"),
        "jsb": str(SHIPPED / "jsb-insertion"),
        "network": str(SHIPPED / "jsb-insertion" / "network"),
        "accomp": str(ACCOMPANIMENT),
    }


@pytest.fixture
def files(tmp_path, inputs, models) -> dict[str, str]:
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("someone else's files\n")
    return {**inputs, **models, "tmp": str(tmp_path), "emptydir": str(tmp_path / "emptydir")}


# ---- running one case ----------------------------------------------------------------------------------


def snapshot(*roots: str) -> dict[Path, object]:
    """Every path under ``roots`` (hidden staging folders included): the digest of each file of the
    test's own folder; size and modification time of the shared inputs."""
    shot: dict[Path, object] = {}
    for index, root in enumerate(roots):
        for p in sorted(Path(root).rglob("*")):
            if not p.is_file():
                shot[p] = "folder"
            elif index == 0:
                shot[p] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                stat = p.stat()
                shot[p] = (stat.st_size, stat.st_mtime_ns)
    return shot


@pytest.fixture
def no_work(monkeypatch):
    """Starting the work fails the test: a refused input is refused before it."""
    from stemforge.data import corpus
    from stemforge.train import cache, checkpoint, codec_bundle, engine, midi_eval

    def work(*args, **kwargs):
        raise AssertionError("the command started its work on an input that must be refused first")

    for module, name in (
        (engine, "fit"),
        (checkpoint, "export_checkpoint"),
        (checkpoint, "export_pipeline"),
        (cache, "build_latent_cache"),
        (codec_bundle, "bundle_mel_codec"),
        (midi_eval, "load_midi_model"),
        (corpus, "render_midi"),  # rendering a track, and writing one
        (corpus, "write_slakh_track"),
    ):
        monkeypatch.setattr(module, name, work)


def run_case(case: Case, files: dict[str, str], default_out: str, request, capsys) -> None:
    out = Path((case.out or default_out).format(**files))
    fill = {**files, "out": str(out)}
    args = [a.format(**fill) for a in case.args]
    for existing in case.existing:
        path = Path(existing.format(**fill))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"an earlier result")
    if isinstance(case, Refused):
        if case.setup:
            assert main([a.format(**fill) for a in case.setup]) == 0
        capsys.readouterr()
        request.getfixturevalue("no_work")
        before, existed = snapshot(files["tmp"], files["inputs"], files["models"]), out.exists()
        deepspeed_before = "deepspeed" in sys.modules
        rc = main(args)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert rc == 2, err
        assert len(lines) == 1 and lines[0].startswith(PREFIX), err
        assert "Traceback" not in err
        for part in case.says:
            assert part.format(**fill) in lines[0], (part, lines[0])
        assert snapshot(files["tmp"], files["inputs"], files["models"]) == before, (
            "a refused input changed files"
        )
        assert out.exists() == existed
        assert deepspeed_before or "deepspeed" not in sys.modules, (
            "DeepSpeed was imported for a refused input"
        )
        return
    shared = snapshot(files["inputs"], files["models"])
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "Traceback" not in err
    for name in case.writes:
        path = out / name if name else out
        assert path.exists(), (name, sorted(str(p) for p in out.parent.rglob("*")))
        if case.rate is not None and path.suffix == ".flac":
            assert sf.info(str(path)).samplerate == case.rate, (name, sf.info(str(path)).samplerate)
    assert snapshot(files["inputs"], files["models"]) == shared, "a valid run changed its inputs"


# ---- fit -----------------------------------------------------------------------------------------------

FIT = ("fit", "{midi_yaml}", "--set", "run.out_dir={out}")
WAE = ("fit", "{wae_yaml}", "--set", "run.out_dir={out}")
LDM = ("fit", "{ldm_yaml}", "--set", "run.out_dir={out}")


def wae_tracks(name: str) -> tuple[str, ...]:
    """Training audio from the one-stem track folder ``name``."""
    return (*WAE, "--set", f"data.train_tracks=[{{{name}}}]", "--set", "data.stems=[soprano]")


def numbers(key: str, value: str, says: str) -> Refused:
    return Refused((*FIT, "--set", f"{key}={value}"), (f"{key} = {value}", says, f"--set {key}="))


FIT_CASES: dict[str, Case] = {
    "config-missing": Refused(
        ("fit", "{tmp}/none.yaml", "--set", "run.out_dir={out}"),
        ("CONFIG {tmp}/none.yaml", "no such file", "configs/tiny-midi.yaml"),
    ),
    "config-folder": Refused(("fit", "{in}"), ("CONFIG {in}", "is a folder", "give a YAML run config file")),
    "config-empty": Refused(
        ("fit", "{empty_yaml}"), ("empty.yaml", "the file is empty", "write a run config")
    ),
    "config-audio-named-as-config": Refused(
        ("fit", "{mix}"), ("mix.wav", "not a text file", "YAML run config")
    ),
    "config-not-yaml": Refused(
        ("fit", "{broken_yaml}"), ("broken.yaml", "not valid YAML", "line 3, column 1", "fix the syntax")
    ),
    "config-text": Refused(("fit", "{text_yaml}"), ("text.yaml", "holds a YAML str", "task, model, data")),
    "config-no-task": Refused(("fit", "{notask_yaml}"), ("notask.yaml", "no 'task' key", "mel_vae, vocoder")),
    "config-unknown-key": Refused(
        ("fit", "{typo_yaml}"), ("typo.yaml", "unknown key(s) run.max_step", "valid keys here are")
    ),
    "set-without-value": Refused((*FIT, "--set", "run.max_steps"), ("--set 'run.max_steps'", "KEY=VALUE")),
    "set-not-yaml": Refused(
        (*FIT, "--set", "run.name=[x"), ("--set 'run.name=[x'", "not valid YAML", "quote it")
    ),
    "set-unknown-key": Refused(
        (*FIT, "--set", "run.max_step=3"), ("midi.yaml", "unknown key(s) run.max_step")
    ),
    "steps-0": numbers("run.max_steps", "0", "give at least 1"),
    "steps-negative": numbers("run.max_steps", "-5", "give at least 1"),
    "batch-size-0": numbers("run.batch_size", "0", "give at least 1"),
    "grad-accum-negative": numbers("run.grad_accum", "-1", "give at least 1"),
    "ckpt-every-0": numbers("run.ckpt_every", "0", "give at least 1"),
    "keep-last-0": numbers("run.keep_last", "0", "would delete the newest"),
    "val-every-negative": numbers("run.val_every", "-1", "0 turns validation off"),
    "devices-0": numbers("dist.devices", "0", "give at least 1"),
    "lr-negative": Refused(
        (*FIT, "--set", "optim.lr=-0.001"), ("optim.lr = -0.001", "give a learning rate > 0")
    ),
    "out-is-a-file": Refused(
        FIT, ("run.out_dir {afile}", "is a file", "--set run.out_dir=DIR"), out="{afile}"
    ),
    "out-under-a-file": Refused(
        FIT, ("afile is a file, not a folder", "choose another run.out_dir"), out="{afile}/run"
    ),
    "out-read-only": Refused(
        FIT, ("cannot write in {ro}", "choose a folder you can write to"), out="{ro}/sf/run"
    ),
    "out-other-files": Refused(
        FIT, ("run.out_dir {tmp}/other", "holds other files", "--set run.out_dir=DIR"), out="{tmp}/other"
    ),
    "out-run-of-another-task": Refused(
        WAE,
        ("run.out_dir {run}", "holds a 'midi' run", "trains 'waveform_ae'", "choose another"),
        out="{run}",
    ),
    "out-unfinished-run-of-another-task": Refused(
        WAE, ("run.out_dir {unfinished}", "holds a 'midi' run", "choose another"), out="{unfinished}"
    ),
    "init-from-missing": Refused(
        (*FIT, "--set", "run.init_from={tmp}/nothing"), ("run.init_from {tmp}/nothing", "no such folder")
    ),
    "init-from-pipeline-of-another-kind": Refused(
        (*FIT, "--set", "run.init_from={demo}"),
        ("run.init_from {demo}", "a 'multitrack' pipeline folder", "'voice-insertion' pipeline folder"),
    ),
    "init-from-run": Refused(
        (*FIT, "--set", "run.init_from={run}"), ("run.init_from {run}", "training run", "export it first")
    ),
    "init-from-other-task": Refused(
        (*FIT, "--set", "run.init_from={accomp}"),
        ("run.init_from", "an export of a 'ldm' run", "needs a 'midi'"),
    ),
    "midi-unknown-stem": Refused(
        (*FIT, "--set", "model.unet.stems=[soprano,kazoo,tenor,bass]"),
        ("model.unet.stems ['soprano', 'kazoo', 'tenor', 'bass']", "soprano, alto, tenor, bass", "leave"),
    ),
    "ldm-unet-stems-differ": Refused(
        (*LDM, "--set", "model.unet.stems=[soprano,alto]"),
        ("model.unet.stems ['soprano', 'alto']", "data.stems"),
    ),
    "tracks-missing": Refused(
        (*WAE, "--set", "data.train_tracks=[{tmp}/nothing]"),
        ("data.train_tracks {tmp}/nothing", "no such folder", "<stem>.flac"),
    ),
    "tracks-none": Refused((*WAE, "--set", "data.train_tracks=[]"), ("no train audio", "data.slakh_root")),
    "tracks-without-stems": Refused(
        wae_tracks("nostems"), ("nostems", "none of data.stems", "correct data.stems")
    ),
    "audio-truncated": Refused(
        wae_tracks("cut"), ("cut/soprano.flac", "truncated", "copy or render it again")
    ),
    "audio-text-named-flac": Refused(
        wae_tracks("text"), ("text/soprano.flac", "not a WAV, FLAC or OGG file", "replace it")
    ),
    "audio-empty": Refused(wae_tracks("empty"), ("empty/soprano.flac", "empty (0 bytes)", "replace it")),
    "audio-0.1-seconds": Refused(
        wae_tracks("short"), ("data.train_tracks", "shorter than data.segment_seconds", "0.10 s")
    ),
    "unknown-stem": Refused(
        (*WAE, "--set", "data.stems=[soprano,kazoo]"),
        ("data.stems 'kazoo'", "in no folder", "correct the stem"),
    ),
    "slakh-root-missing": Refused(
        (*WAE, "--set", "data.slakh_root={tmp}/nothing"),
        ("data.slakh_root {tmp}/nothing", "no such folder", "stemforge-train data render"),
    ),
    "slakh-root-empty": Refused(
        (*WAE, "--set", "data.slakh_root={slakh_empty}"), ("slakh_empty", "no train tracks", "data render")
    ),
    "slakh-unknown-stem": Refused(
        (
            *WAE,
            "--set",
            "data.slakh_root={corpus}",
            "--set",
            "data.group_by=stem_name",
            "--set",
            "data.stems=[bass,kazoo]",
        ),
        ("data.stems 'kazoo'", "alto, bass, soprano, tenor", "correct data.stems"),
    ),
    "ldm-codec-missing": Refused(
        (*LDM, "--set", "data.codec={tmp}/nothing"),
        ("data.codec {tmp}/nothing", "no such folder", "codec folder"),
    ),
    "ldm-codec-is-a-pipeline": Refused(
        (*LDM, "--set", "data.codec={demo}"),
        ("data.codec {demo}", "pipeline, not a codec", "give its codec folder"),
    ),
    "ldm-codec-is-an-export": Refused(
        (*LDM, "--set", "data.codec={accomp}"), ("data.codec {accomp}", "of a 'ldm' run, not a codec")
    ),
    "ldm-latent-cache-missing": Refused(
        (*LDM, "--set", "data.codec=null", "--set", "data.latent_cache={tmp}/nothing"),
        ("data.latent_cache {tmp}/nothing", "no such folder", "stemforge-train cache"),
    ),
    "ldm-unknown-target-stem": Refused(
        (*LDM, "--set", "model.mode=accompaniment", "--set", "model.target_stem=kazoo"),
        ("model.target_stem 'kazoo'", "data.stems", "choose one of them"),
    ),
    "ldm-unknown-insert-stem": Refused(
        (*LDM, "--set", "model.mode=subtractive", "--set", "model.insert_stems=[kazoo]"),
        ("model.insert_stems ['kazoo']", "choose among them"),
    ),
}


@pytest.mark.parametrize("case", list(FIT_CASES))
def test_fit_matrix(case, files, request, capsys):
    run_case(FIT_CASES[case], files, "{tmp}/out", request, capsys)


@pytest.mark.parametrize(
    ("config", "sets"),
    [
        (
            "wae_yaml",
            ("data.train_tracks=[{six}]", "data.stems=[soprano]"),
        ),  # 6 channels: the dataset mixes down
        (
            "wae_yaml",
            ("data.train_tracks=[{rate8k}]", "data.stems=[soprano]"),
        ),  # 8 and 96 kHz: resampled on read
        ("wae_yaml", ("data.train_tracks=[{rate96k}]", "data.stems=[soprano]")),
        ("wae_yaml", ("data.slakh_root={corpus}", "data.group_by=stem_name")),
        ("ldm_yaml", ()),
        ("midi_yaml", ("run.out_dir={run}",)),  # a run of the same task resumes
        ("midi_yaml", ("run.out_dir={emptydir}",)),
        ("midi_yaml", ("run.init_from={run_export}",)),
        ("midi_yaml", ("run.init_from={jsb}",)),  # a shipped pipeline folder's network
    ],
)
def test_fit_accepts_valid_input_before_launching(config, sets, files):
    """What the matrix refuses is not refused when valid (the run itself is ``models``' valid case)."""
    from stemforge.train.preflight import check_fit, read_config

    overrides = ["run.out_dir={tmp}/out", *sets]
    loaded = read_config(files[config], [s.format(**files) for s in overrides])
    check_fit(loaded, files[config])


def test_a_refused_fit_prints_one_line_in_a_real_process(files):
    """The console command (``python -m``, as the launchers run it) prints one line, no traceback,
    and never starts DeepSpeed for a refused input."""
    out = Path(files["tmp"]) / "out"
    console = subprocess.run(
        [sys.executable, "-m", "stemforge.train.cli", "fit", files["broken_yaml"]],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert console.returncode == 2
    assert console.stderr.splitlines() == [
        f"stemforge-train: error: CONFIG {files['broken_yaml']}: not valid YAML (expected ',' or ']', but got "
        "'<stream end>' at line 3, column 1); fix the syntax"
    ]
    script = (
        "import sys\nfrom stemforge.train.cli import main\n"
        f"code = main(['fit', {files['wae_yaml']!r}, '--set', 'run.out_dir={files['run']}'])\n"
        "print(code, sorted(m for m in ('deepspeed', 'lightning_fabric') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["2", "[]"], proc.stdout + proc.stderr
    assert "holds a 'midi' run" in proc.stderr and not out.exists()


# ---- export --------------------------------------------------------------------------------------------

EXPORT = ("export", "{run}", "{out}")  # a midi run: a pipeline folder by default
PIPELINE = (*EXPORT, "--format", "pipeline")
FLAT = (*EXPORT, "--format", "flat")
LDM_EXPORT = ("export", "{ldm_run}", "{out}")  # its codec is the one its latent cache records
BARE_EXPORT = ("export", "{ldm_bare_run}", "{out}")  # no codec recorded anywhere
VOICE_PIPELINE = ("pipeline.json", "network/model.safetensors", "network/config.json")
AUDIO_PIPELINE = ("pipeline.json", "unet/model.safetensors", "codec/model.safetensors", "codec/config.json")
NOT_A_RUN = "give a run folder (the run.out_dir of `stemforge-train fit`)"
EXPORT_CASES: dict[str, Case] = {
    "source-missing": Refused(
        ("export", "{tmp}/nothing", "{out}"), ("CHECKPOINT {tmp}/nothing", "no such folder", NOT_A_RUN)
    ),
    "source-is-a-file": Refused(
        ("export", "{afile}", "{out}"), ("CHECKPOINT {afile}", "is a file", NOT_A_RUN)
    ),
    "source-empty-folder": Refused(
        ("export", "{emptydir}", "{out}"), ("emptydir", "not a run folder", NOT_A_RUN)
    ),
    "source-pipeline": Refused(("export", "{demo}", "{out}"), ("{demo}", "already exported", NOT_A_RUN)),
    "source-export": Refused(
        ("export", "{accomp}", "{out}"), ("{accomp}", "`stemforge-train export` of a 'ldm' run", NOT_A_RUN)
    ),
    "source-codec": Refused(("export", "{codec}", "{out}"), ("{codec}", "codec folder", NOT_A_RUN)),
    "source-network-component": Refused(("export", "{network}", "{out}"), ("{network}", "model component")),
    "source-run-without-checkpoint": Refused(
        ("export", "{unfinished}", "{out}"),
        ("{unfinished}", "without a complete checkpoint", "train it further"),
    ),
    "codec-with-a-midi-run": Refused(
        (*PIPELINE, "--codec", "{codec}"), ("--codec {codec}", "'midi' run", "leave out --codec")
    ),
    "codec-with-a-midi-run-by-default": Refused(
        (*EXPORT, "--codec", "{codec}"), ("--codec {codec}", "'midi' run", "leave out --codec")
    ),
    "codec-with-format-flat": Refused(
        (*FLAT, "--codec", "{codec}"),
        ("--codec with --format flat", "remove --codec", "leave out --format flat"),
    ),
    "ldm-without-a-codec": Refused(
        BARE_EXPORT,
        (
            "CHECKPOINT {ldm_bare_run}",
            "found no codec",
            "no data.codec; data.latent_cache {latents_bare} records no codec",
            "pass --codec DIR",
            "or --format flat",
        ),
    ),
    "ldm-without-a-codec-as-a-pipeline": Refused(
        (*BARE_EXPORT, "--format", "pipeline"),
        ("CHECKPOINT {ldm_bare_run}", "found no codec", "pass --codec DIR"),
    ),
    "ldm-codec-is-a-pipeline": Refused(
        (*BARE_EXPORT, "--codec", "{demo}"), ("--codec {demo}", "give its codec folder {codec}")
    ),
    "out-exists": Refused(
        EXPORT, ("OUT {tmp}/out", "already exists", "choose a new folder"), existing=("{tmp}/out/notes.txt",)
    ),
    "out-exists-empty-for-a-pipeline": Refused(
        EXPORT, ("OUT {emptydir}", "already exists (empty)"), out="{emptydir}"
    ),
    "out-is-a-file": Refused(
        EXPORT, ("OUT {afile}", "is a file", "give the path of a new folder"), out="{afile}"
    ),
    "out-under-a-file": Refused(
        EXPORT, ("afile is a file, not a folder", "choose another OUT"), out="{afile}/out"
    ),
    "out-read-only": Refused(
        EXPORT, ("cannot write in {ro}", "choose a folder you can write to"), out="{ro}/sf/out"
    ),
    "flat-into-missing-folders": Works(
        FLAT, ("model.safetensors", "config.json"), out="{tmp}/new/deeper/out"
    ),
    "flat-into-an-empty-folder": Works(FLAT, ("model.safetensors", "config.json"), out="{emptydir}"),
    "midi-run-by-default": Works(EXPORT, VOICE_PIPELINE, out="{tmp}/new/deeper/out"),
    "ldm-run-by-default-with-the-codec-of-its-latent-cache": Works(LDM_EXPORT, AUDIO_PIPELINE),
    "ldm-run-by-default-with-codec": Works((*BARE_EXPORT, "--codec", "{codec}"), AUDIO_PIPELINE),
    "ldm-run-flat": Works((*BARE_EXPORT, "--format", "flat"), ("model.safetensors", "config.json")),
}


@pytest.mark.parametrize("case", list(EXPORT_CASES))
def test_export_matrix(case, files, request, capsys):
    run_case(EXPORT_CASES[case], files, "{tmp}/out", request, capsys)


def test_an_ldm_run_exports_by_default_as_a_pipeline_of_its_flat_weights(files, tmp_path, capsys):
    """Without --format, `export` of an ldm run writes a pipeline folder that
    ``MultiTrackPipeline.from_pretrained`` loads: the U-Net of the --format flat export, weight for
    weight, and the codec that its latent cache's index.json records."""
    import torch
    from safetensors.torch import load_file

    from stemforge.pipelines import MultiTrackPipeline
    from stemforge.train.checkpoint import CheckpointError, load_exported

    auto, flat = tmp_path / "auto", tmp_path / "flat"
    assert main(["export", files["ldm_run"], str(auto)]) == 0
    assert f"as a pipeline folder with the codec {files['codec']} to {auto}" in capsys.readouterr().out
    assert main(["export", files["ldm_run"], str(flat), "--format", "flat"]) == 0
    pipe = MultiTrackPipeline.from_pretrained(auto)
    unet, config = load_exported(flat)
    assert config["task"] == "ldm" and pipe.stems == tuple(config["stem_names"]) == SATB
    flat_state, pipe_state = unet.state_dict(), pipe.unet.state_dict()
    assert pipe_state.keys() == flat_state.keys()
    for name, tensor in flat_state.items():
        assert torch.equal(pipe_state[name], tensor), name
    shipped = load_file(Path(files["codec"]) / "model.safetensors")
    exported = load_file(auto / "codec" / "model.safetensors")
    assert exported.keys() == shipped.keys()
    assert all(torch.equal(exported[k], shipped[k]) for k in shipped)
    with pytest.raises(CheckpointError, match=r"not a flat export; export the run with .* --format flat"):
        load_exported(auto)  # what reads flat exports (ldm_eval) names the option


# ---- cache ---------------------------------------------------------------------------------------------

CACHE = ("cache", "{ldm_yaml}", "--codec", "{codec}", "--out", "{out}")


def cache_tracks(name: str) -> tuple[str, ...]:
    return (*CACHE, "--set", f"data.train_tracks=[{{{name}}}]", "--set", "data.stems=[soprano]")


CACHE_CASES: dict[str, Case] = {
    "config-missing": Refused(
        ("cache", "{tmp}/none.yaml", "--codec", "{codec}", "--out", "{out}"), ("none.yaml", "no such file")
    ),
    "config-empty": Refused(
        ("cache", "{empty_yaml}", "--codec", "{codec}", "--out", "{out}"), ("empty.yaml", "empty")
    ),
    "config-not-the-ldm": Refused(
        ("cache", "{midi_yaml}", "--codec", "{codec}", "--out", "{out}"),
        ("midi.yaml", "task 'midi' is not the LDM"),
    ),
    "config-unknown-key": Refused(
        (*CACHE, "--set", "data.stem=[a]"), ("unknown key(s) data.stem", "valid keys")
    ),
    "cache-batch-0": Refused((*CACHE, "--set", "data.cache_batch=0"), ("data.cache_batch = 0", "at least 1")),
    "shard-items-negative": Refused(
        (*CACHE, "--set", "data.shard_items=-4"), ("data.shard_items = -4", "at least 1")
    ),
    "codec-missing": Refused(
        ("cache", "{ldm_yaml}", "--codec", "{tmp}/nothing", "--out", "{out}"),
        ("--codec {tmp}/nothing", "no such folder"),
    ),
    "codec-is-a-pipeline": Refused(
        ("cache", "{ldm_yaml}", "--codec", "{demo}", "--out", "{out}"),
        ("--codec {demo}", "give its codec folder {codec}"),
    ),
    "codec-is-an-export": Refused(
        ("cache", "{ldm_yaml}", "--codec", "{accomp}", "--out", "{out}"), ("--codec {accomp}", "not a codec")
    ),
    "codec-is-a-unet": Refused(
        ("cache", "{ldm_yaml}", "--codec", "{unet}", "--out", "{out}"), ("--codec {unet}", "model component")
    ),
    "audio-truncated": Refused(cache_tracks("cut"), ("cut/soprano.flac", "truncated")),
    "audio-text-named-flac": Refused(
        cache_tracks("text"), ("text/soprano.flac", "not a WAV, FLAC or OGG file")
    ),
    "audio-0.1-seconds": Refused(cache_tracks("short"), ("shorter than data.segment_seconds (1.28 s",)),
    "unknown-stem": Refused(
        (*CACHE, "--set", "data.stems=[kazoo,bass]"), ("data.stems 'kazoo'", "in no folder")
    ),
    "slakh-root-missing": Refused(
        (*CACHE, "--set", "data.slakh_root={tmp}/nothing"),
        ("data.slakh_root {tmp}/nothing", "no such folder"),
    ),
    "out-exists": Refused(
        CACHE,
        ("--out {tmp}/out", "already exists", "never overwritten", "choose a new folder"),
        existing=("{tmp}/out/train/index.json",),
    ),
    "out-is-a-file": Refused(CACHE, ("--out {afile}", "is a file"), out="{afile}"),
    "out-under-a-file": Refused(CACHE, ("afile is a file, not a folder",), out="{afile}/cache"),
    "out-read-only": Refused(CACHE, ("cannot write in {ro}",), out="{ro}/sf/cache"),
    "into-missing-folders": Works(
        CACHE, ("train/index.json", "val/index.json"), out="{tmp}/new/deeper/cache"
    ),
}


@pytest.mark.parametrize("case", list(CACHE_CASES))
def test_cache_matrix(case, files, request, capsys):
    run_case(CACHE_CASES[case], files, "{tmp}/out", request, capsys)


# ---- codec-bundle --------------------------------------------------------------------------------------

BUNDLE = ("codec-bundle", "--vae", "{vae}", "--out", "{out}")
BUNDLE_CASES: dict[str, Case] = {
    "vae-missing": Refused(
        ("codec-bundle", "--vae", "{tmp}/nothing", "--out", "{out}"),
        ("--vae {tmp}/nothing", "no such folder"),
    ),
    "vae-is-a-file": Refused(
        ("codec-bundle", "--vae", "{afile}", "--out", "{out}"), ("--vae {afile}", "is a file")
    ),
    "vae-pipeline": Refused(
        ("codec-bundle", "--vae", "{demo}", "--out", "{out}"),
        ("--vae {demo}", "stemforge-pipelines folder", "flat export"),
    ),
    "vae-run": Refused(
        ("codec-bundle", "--vae", "{run}", "--out", "{out}"),
        ("--vae {run}", "training run", "export it first"),
    ),
    "vae-export-of-another-task": Refused(
        ("codec-bundle", "--vae", "{run_export}", "--out", "{out}"),
        ("--vae", "export of a 'midi' run", "needs a 'mel_vae'"),
    ),
    "vae-codec": Refused(
        ("codec-bundle", "--vae", "{codec}", "--out", "{out}"), ("--vae {codec}", "codec folder")
    ),
    "vocoder-export-of-another-task": Refused(
        (*BUNDLE, "--vocoder", "{vae}"), ("--vocoder {vae}", "export of a 'mel_vae' run", "needs a 'vocoder'")
    ),
    "scale-items-0": Refused((*BUNDLE, "--scale-items", "0"), ("--scale-items 0", "at least 1")),
    "set-without-scale-config": Refused(
        (*BUNDLE, "--set", "data.stems=[bass]"), ("--set applies to --scale-config",)
    ),
    "scale-config-missing": Refused(
        (*BUNDLE, "--scale-config", "{tmp}/none.yaml"), ("--scale-config {tmp}/none.yaml", "no such file")
    ),
    "scale-config-reads-no-audio": Refused(
        (*BUNDLE, "--scale-config", "{midi_yaml}"),
        ("--scale-config", "task 'midi' reads no audio", "codec or LDM config"),
    ),
    "scale-audio-truncated": Refused(
        (*BUNDLE, "--scale-config", "{wae_yaml}", "--set", "data.train_tracks=[{cut}]"),
        ("cut/soprano.flac", "truncated"),
    ),
    "out-exists": Refused(
        BUNDLE, ("--out {tmp}/out", "already exists", "pass --overwrite"), existing=("{tmp}/out/config.json",)
    ),
    "out-under-a-file": Refused(BUNDLE, ("afile is a file, not a folder",), out="{afile}/codec"),
    "out-read-only": Refused(BUNDLE, ("cannot write in {ro}",), out="{ro}/sf/codec"),
    "out-exists-with-overwrite": Works(
        (*BUNDLE, "--overwrite"), ("config.json", "model.safetensors"), existing=("{tmp}/out/config.json",)
    ),
}


@pytest.mark.parametrize("case", list(BUNDLE_CASES))
def test_codec_bundle_matrix(case, files, request, capsys):
    run_case(BUNDLE_CASES[case], files, "{tmp}/out", request, capsys)
    if case == "out-exists-with-overwrite":
        assert (
            json.loads((Path(files["tmp"]) / "out" / "config.json").read_text())["format"]
            == "stemforge-codec"
        )


# ---- midi-nll ------------------------------------------------------------------------------------------

NLL = ("midi-nll", "{jsb}", "--splits", "valid", "--out", "{out}")
MIDI_MODEL = "give a voice-insertion pipeline folder"
NLL_CASES: dict[str, Case] = {
    "model-missing": Refused(
        ("midi-nll", "{tmp}/nothing"), ("MODEL {tmp}/nothing", "no such folder", MIDI_MODEL)
    ),
    "model-is-a-file": Refused(("midi-nll", "{afile}"), ("MODEL {afile}", "is a file", MIDI_MODEL)),
    "model-audio-pipeline": Refused(
        ("midi-nll", "{demo}"), ("MODEL {demo}", "'multitrack' pipeline", MIDI_MODEL)
    ),
    "model-network-folder": Refused(
        ("midi-nll", "{network}"), ("MODEL {network}", "component of the pipeline {jsb}", "give {jsb}")
    ),
    "model-ldm-export": Refused(
        ("midi-nll", "{accomp}"), ("MODEL {accomp}", "export of a 'ldm' run", MIDI_MODEL)
    ),
    "model-codec": Refused(("midi-nll", "{codec}"), ("MODEL {codec}", "codec", MIDI_MODEL)),
    "model-run": Refused(("midi-nll", "{run}"), ("MODEL {run}", "training run", "stemforge-train export")),
    "model-not-a-model": Refused(("midi-nll", "{in}"), ("MODEL {in}", "not a model folder", MIDI_MODEL)),
    "length-0": Refused((*NLL, "--length", "0"), ("--length 0", "give at least 1")),
    "length-negative": Refused((*NLL, "--length", "-32"), ("--length -32", "give at least 1")),
    "length-not-a-multiple": Refused(
        (*NLL, "--length", "30"), ("--length 30", "multiple of 4", "give e.g. 28")
    ),
    "length-longer-than-every-chorale": Refused(
        (*NLL, "--length", "4096"), ("--length 4096", "give at most")
    ),
    "batch-size-0": Refused((*NLL, "--batch-size", "0"), ("--batch-size 0", "give at least 1")),
    "max-windows-0": Refused((*NLL, "--max-windows", "0"), ("--max-windows 0", "give at least 1")),
    "threads-negative": Refused((*NLL, "--threads", "-2"), ("--threads -2", "a value >= 0")),
    "out-is-a-folder": Refused(NLL, ("--out {emptydir}", "is a folder", "path of a file"), out="{emptydir}"),
    "out-under-a-file": Refused(NLL, ("afile is a file, not a folder",), out="{afile}/nll.json"),
    "out-read-only": Refused(NLL, ("cannot write in {ro}",), out="{ro}/sf/nll.json"),
    "export-into-missing-folders": Works(
        (
            "midi-nll",
            "{run_export}",
            "--splits",
            "valid",
            "--length",
            "16",
            "--max-windows",
            "1",
            "--out",
            "{out}",
        ),
        ("",),
        out="{tmp}/new/deeper/nll.json",
    ),
    "existing-results-are-replaced": Works(
        (
            "midi-nll",
            "{run_export}",
            "--splits",
            "test",
            "--length",
            "16",
            "--max-windows",
            "1",
            "--out",
            "{out}",
        ),
        ("",),
        existing=("{tmp}/out/nll.json",),
    ),
}


@pytest.mark.parametrize("case", list(NLL_CASES))
def test_midi_nll_matrix(case, files, request, capsys):
    run_case(NLL_CASES[case], files, "{tmp}/out/nll.json", request, capsys)
    if isinstance(NLL_CASES[case], Works):
        out = Path((NLL_CASES[case].out or "{tmp}/out/nll.json").format(**files))
        (result,) = json.loads(out.read_text())
        assert result["num_windows"] == 1 and result["window_length"] == 16
        assert np.isfinite(result["framewise_nll"]) and result["framewise_nll"] > 0


# ---- data render and data info ------------------------------------------------------------------------

JSB = ("data", "render", "--source", "jsb", "--split", "test", "--limit", "1", "--out", "{out}")
TRACK = "test/Track00001"


def source(name: str) -> tuple[str, ...]:
    return ("data", "render", "--source", f"{{src_{name}}}", "--split", "train", "--out", "{out}")


def programs(spec: str, *says: str) -> Refused:
    return Refused((*JSB, "--programs", spec), (f"--programs {spec!r}", *says))


PAIRS = "VOICE=PROGRAM pairs"
RENDER_CASES: dict[str, Case] = {
    "split-not-jsb": Refused(
        (*JSB[:4], "--split", "validation", "--out", "{out}"), ("--split 'validation'", "train, valid, test")
    ),
    "split-not-slakh": Refused(
        ("data", "render", "--source", "{src_song}", "--split", "valid", "--out", "{out}"),
        ("--split 'valid'", "validation"),
    ),
    "limit-0": Refused((*JSB, "--limit", "0"), ("--limit 0", "positive number")),
    "limit-negative": Refused((*JSB, "--limit", "-3"), ("--limit -3", "positive number")),
    "jobs-0": Refused((*JSB, "--jobs", "0"), ("--jobs 0", "positive number")),
    "sample-rate-0": Refused((*JSB, "--sample-rate", "0"), ("--sample-rate 0", "4000-192000 Hz")),
    "sample-rate-negative": Refused(
        (*JSB, "--sample-rate", "-16000"), ("--sample-rate -16000", "4000-192000 Hz")
    ),
    "programs-out-of-range": programs("soprano=300", PAIRS, "0-127"),
    "programs-unknown-voice": programs("lead=3", PAIRS, "soprano, alto, tenor, bass"),
    "programs-without-value": programs("soprano", PAIRS),
    "programs-not-a-number": programs("soprano=flute", PAIRS),
    "programs-negative": programs("bass=-1", PAIRS),
    "programs-empty": programs("", PAIRS),
    "programs-voice-twice": programs("soprano=1,soprano=2", "soprano is named twice", "give each voice once"),
    "programs-with-a-midi-folder": Refused(
        (*source("song"), "--programs", "soprano=3"), ("applies to --source jsb",)
    ),
    "soundfont-missing": Refused(
        (*JSB, "--soundfont", "{tmp}/none.sf2"), ("none.sf2", "no such SoundFont", ".sf2 file")
    ),
    "soundfont-text": Refused((*JSB, "--soundfont", "{text_sf2}"), ("text.sf2", "not a SoundFont 2 file")),
    "soundfont-empty": Refused((*JSB, "--soundfont", "{empty_sf2}"), ("empty.sf2", "not a SoundFont 2 file")),
    "source-missing": Refused(
        ("data", "render", "--source", "{tmp}/nothing", "--out", "{out}"),
        ("{tmp}/nothing", "no such folder", "give 'jsb'"),
    ),
    "source-is-a-midi-file": Refused(
        ("data", "render", "--source", "{song_mid}", "--out", "{out}"),
        ("song.mid", "is a file", "folder that holds"),
    ),
    "source-without-midi": Refused(source("nomidi"), ("nomidi", "no .mid or .midi files", "give a folder")),
    "midi-empty": Refused(source("emptymid"), ("emptymid.mid", "file is empty", "remove the file")),
    "midi-text-named-mid": Refused(source("textmid"), ("textmid.mid", "not a Standard MIDI file")),
    "midi-audio-named-mid": Refused(source("audiomid"), ("audiomid.mid", "not a Standard MIDI file")),
    "midi-no-notes": Refused(source("nonotes"), ("nonotes.mid", "has no notes", "at least one note")),
    "out-is-a-file": Refused(JSB, ("--out {afile}", "not a folder"), out="{afile}"),
    "out-under-a-file": Refused(
        JSB, ("afile is a file, not a folder", "choose another --out"), out="{afile}/out"
    ),
    "out-read-only": Refused(
        JSB, ("cannot write in {ro}", "choose a folder you can write to"), out="{ro}/sf/out"
    ),
    "out-holds-other-settings": Refused(
        (*JSB, "--seed", "9"),
        ("Track00001", "exists with another source or other render settings", "--overwrite"),
        setup=JSB,
    ),
    "midi-drums-only": Works(
        source("drums"), ("train/Track00001/mix.flac", "train/Track00001/stems/S00.flac")
    ),
    "midi-20-instruments": Works(
        source("twenty"), ("train/Track00001/mix.flac", "train/Track00001/stems/S19.flac")
    ),
    "rate-8-khz": Works(
        (*JSB, "--sample-rate", "8000"), (f"{TRACK}/mix.flac", f"{TRACK}/stems/S03.flac"), rate=8000
    ),
    "rate-96-khz": Works(
        (*source("song"), "--sample-rate", "96000"),
        ("train/Track00001/mix.flac", "train/Track00001/stems/S01.flac"),
        rate=96000,
    ),
    "out-in-missing-folders": Works(JSB, (f"{TRACK}/metadata.yaml",), out="{tmp}/new/deeper/out"),
}


@pytest.mark.parametrize("case", list(RENDER_CASES))
def test_data_render_matrix(case, files, request, capsys):
    run_case(RENDER_CASES[case], files, "{tmp}/out", request, capsys)
    if case == "midi-20-instruments":  # every instrument is a stem
        assert len(list((Path(files["tmp"]) / "out" / "train" / "Track00001" / "stems").iterdir())) == 20


INFO_CASES: dict[str, Case] = {
    "root-missing": Refused(
        ("data", "info", "{tmp}/nothing"), ("{tmp}/nothing", "no such folder", "give the root")
    ),
    "root-is-a-file": Refused(("data", "info", "{afile}"), ("{afile}", "is a file", "give the root folder")),
    "root-empty": Refused(
        ("data", "info", "{emptydir}"), ("not a Slakh-format folder", "stemforge-train data render")
    ),
    "root-other-files": Refused(("data", "info", "{tmp}/other"), ("not a Slakh-format folder",)),
    "metadata-not-a-mapping": Refused(
        ("data", "info", "{tmp}/slakh"),
        ("metadata.yaml", "no 'stems' mapping", "render it again"),
        existing=("{tmp}/slakh/train/Track00001/metadata.yaml",),
    ),
    "audio-text-named-flac": Refused(
        ("data", "info", "{tmp}/bad"), ("Track00001/mix.flac", "cannot read it as audio", "render it again")
    ),
    "rendered-corpus": Works(("data", "info", "{corpus}"), ()),
}


@pytest.mark.parametrize("case", list(INFO_CASES))
def test_data_info_matrix(case, files, request, capsys):
    if case == "audio-text-named-flac":
        bad = Path(files["tmp"]) / "bad" / "train"
        shutil.copytree(Path(files["corpus"]) / "train", bad)
        (bad / "Track00001" / "mix.flac").write_text("notes, not audio\n")
    run_case(INFO_CASES[case], files, "{tmp}/out", request, capsys)
