"""``stemforge-insert import-msgld``: an original MSG-LD Lightning checkpoint (the tiny random-weight
msgld-parity fixture) converted once into a pipeline folder, then ``separate``, ``generate`` and
``arrange`` from the command line on that folder. Random weights make noise, so the commands run
two sampler steps with ``--allow-degenerate``; what is checked is the plumbing: files, rates,
lengths, which weights were converted, the recorded conventions, and every bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.insert.cli import main

ROOT = Path(__file__).resolve().parents[3]
_CANDIDATES = [
    os.environ.get("STEMFORGE_MSGLD_FIXTURES", ""),
    ROOT / "shared" / "fixtures" / "msgld-parity",
    ROOT.parent / "shared" / "fixtures" / "msgld-parity",
]
FIXTURE = next((Path(p) for p in _CANDIDATES if p and (Path(p) / "checkpoint.ckpt").is_file()), None)
pytestmark = pytest.mark.skipif(FIXTURE is None, reason="the msgld-parity fixture is not available")

STEMS = ("bass", "drums", "guitar", "piano")
FAST = ("--steps", "2", "--batch-size", "4", "--quiet", "--allow-degenerate")
#: A U-Net tensor whose name is the same in both layouts (no qkv permutation, no renaming).
TENSOR = "input_blocks.0.0.weight"


def _import_args(out: Path, *extra: str) -> list[str]:
    assert FIXTURE is not None
    return [
        "import-msgld",
        str(FIXTURE / "checkpoint.ckpt"),
        "--config",
        str(FIXTURE / "config.yaml"),
        "--vocoder-config",
        str(FIXTURE / "hifigan_config_16k_64.json"),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def _unet_tensor(folder: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(folder / "unet" / "model.safetensors"))[TENSOR]


def _wave(path: Path, seconds: float, rate: int, freq: float) -> Path:
    t = np.arange(round(seconds * rate)) / rate
    noise = 0.02 * np.random.default_rng(0).standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32), rate)
    return path


@pytest.fixture(scope="module")
def checkpoint_state() -> dict[str, torch.Tensor]:
    assert FIXTURE is not None
    return torch.load(FIXTURE / "checkpoint.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("import") / "msgld"
    assert main(_import_args(out)) == 0
    return out


def test_import_writes_a_pipeline_with_the_ema_weights_and_the_conventions(
    imported: Path, checkpoint_state: dict[str, torch.Tensor]
) -> None:
    assert sorted(p.name for p in imported.iterdir()) == ["codec", "pipeline.json", "unet"]
    manifest = json.loads((imported / "pipeline.json").read_text())
    assert manifest["kind"] == "multitrack" and manifest["stems"] == list(STEMS)
    assert manifest["sample_rate"] == 16000 and manifest["storage_dtype"] == "float32"
    assert manifest["sampler_defaults"] == {
        "ddim_timesteps": "msgld",
        "eta": 1.0,
        "unconditional": "zero_mix",
        "guidance": {"separate": 1.0, "generate": 0.0, "arrange": 0.0},
    }
    ema = checkpoint_state["model_ema.diffusion_model" + TENSOR.replace(".", "")]
    raw = checkpoint_state["model.diffusion_model." + TENSOR]
    saved = _unet_tensor(imported)
    assert torch.equal(saved, ema) and not torch.equal(saved, raw)


def test_import_raw_weights_in_float16(tmp_path: Path, checkpoint_state: dict[str, torch.Tensor]) -> None:
    out = tmp_path / "raw"
    assert main(_import_args(out, "--weights", "raw", "--dtype", "float16")) == 0
    saved = _unet_tensor(out)
    raw = checkpoint_state["model.diffusion_model." + TENSOR]
    assert saved.dtype == torch.float16 and torch.equal(saved, raw.half())
    manifest = json.loads((out / "pipeline.json").read_text())
    assert manifest["storage_dtype"] == "float16" and "raw weights" in manifest["label"]


def test_separate_with_the_recorded_guidance(
    imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import stemforge.samplers as samplers

    scales: list[float] = []
    real = samplers.ClassifierFreeGuidance

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, model, scale, **kwargs):  # type: ignore[no-untyped-def]
            scales.append(scale)
            super().__init__(model, scale, **kwargs)

    monkeypatch.setattr(samplers, "ClassifierFreeGuidance", Recording)
    mix = _wave(tmp_path / "in" / "mix.wav", 1.0, 22050, 220.0)
    out = tmp_path / "sep"
    assert main(["separate", str(mix), "--checkpoint", str(imported), "--out", str(out), *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.wav" for s in STEMS)
    for stem in STEMS:
        info = sf.info(str(out / f"{stem}.wav"))
        assert (info.samplerate, info.frames, info.channels) == (22050, 22050, 1)
    # No --guidance: the w recorded from the config's evaluation_params (1), not stemforge's 2.
    assert scales and set(scales) == {1.0}
    capsys.readouterr()


def test_generate(imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "gen"
    args = ["generate", "--seconds", "1.0", "--sample-rate", "22050", "--checkpoint", str(imported)]
    assert main([*args, "--out", str(out), *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(f"{s}.wav" for s in STEMS), "mix.wav", "mix.json"]
    )
    for name in (*STEMS, "mix"):
        info = sf.info(str(out / f"{name}.wav"))
        assert (info.samplerate, info.frames) == (22050, 22050)
    capsys.readouterr()


def test_arrange(imported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bass = _wave(tmp_path / "in" / "bass.wav", 0.9, 16000, 110.0)
    out = tmp_path / "arr"
    args = ["arrange", "--given", f"bass={bass}", "--checkpoint", str(imported), "--out", str(out)]
    assert main([*args, *FAST]) == 0
    generated = ("drums", "guitar", "piano")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(f"{s}.wav" for s in generated), "mix.wav", "mix.json"]
    )
    for name in (*generated, "mix"):
        info = sf.info(str(out / f"{name}.wav"))
        assert (info.samplerate, info.frames) == (16000, 14400)
    capsys.readouterr()


def _refused(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("stemforge-insert: error: ") and message in err, err


def test_bad_inputs_write_nothing(
    imported: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    checkpoint_state: dict[str, torch.Tensor],
) -> None:
    assert FIXTURE is not None
    out = tmp_path / "new"
    missing = _import_args(out)
    missing[1] = str(tmp_path / "nothing.ckpt")
    _refused(capsys, missing, "nothing.ckpt: no such file")
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    not_ckpt = _import_args(out)
    not_ckpt[1] = str(text)
    _refused(capsys, not_ckpt, "not a PyTorch checkpoint")
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"weight": torch.zeros(2)}}, other)
    other_args = _import_args(out)
    other_args[1] = str(other)
    _refused(capsys, other_args, "not an MSG-LD checkpoint")
    no_config = _import_args(out)
    no_config[3] = str(tmp_path / "missing.yaml")
    _refused(capsys, no_config, "--config")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new")]
    # --out holds a pipeline already: refused without --overwrite, before reading the checkpoint.
    before = (imported / "pipeline.json").read_text()
    _refused(capsys, _import_args(imported), "already holds a pipeline; pass --overwrite")
    assert (imported / "pipeline.json").read_text() == before
    # --out is some other folder: never replaced.
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"x")
    _refused(capsys, _import_args(folder, "--overwrite"), "exists and is not a pipeline folder")
    assert [p.name for p in folder.iterdir()] == ["a.jpg"]
