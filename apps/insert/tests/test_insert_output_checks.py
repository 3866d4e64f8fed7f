"""Degenerate decoded audio never reaches a file silently: a decoder made to collapse (its last layer
zeroed, its bias at the 0.344 level the old shipped HiFi-GAN wrote; the embedded model's sample
decoder, which decodes what it samples) stops every audio command with an error naming it, and
nothing is written; ``--allow-degenerate`` writes it with a warning
that ``--quiet`` does not hide. A mix whose stems sum past full scale is limited and says so."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors.torch import load_file, save_file

from stemforge.insert.cli import main
from stemforge.insert.embedded import demo_audio_checkpoint

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_demo_16k"


#: The component of the embedded pipeline that decodes sampled latents, as error messages name it.
DECODER = ("sample-decoder", "the sample decoder of")


def _edited_codec(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(demo_audio_checkpoint(), folder)
    weights = folder / DECODER[0] / "model.safetensors"
    state = load_file(weights)
    last = max((k for k in state if k.startswith("autoencoder.decoder.") and k.endswith(".weight")),
               key=lambda k: int(k.split(".")[2]))  # fmt: skip
    edit(state, last, last.removesuffix("weight") + "bias")
    save_file(state, weights)
    return folder


def collapsed(state, weight, bias):
    state[weight].zero_()
    state[bias].fill_(0.344)


def loud(state, weight, bias):
    state[weight].mul_(40.0)
    state[bias].mul_(40.0)


@pytest.fixture
def mix(tmp_path) -> Path:
    wave, rate = sf.read(CHORALE / "mix.flac", dtype="float32", frames=16000)
    path = tmp_path / "in" / "mix.wav"
    path.parent.mkdir()
    sf.write(path, wave, rate)
    return path


@pytest.mark.parametrize("command", ["separate", "audio", "accompany", "generate", "arrange"])
def test_a_collapsed_codec_is_an_error_naming_it_and_nothing_is_written(tmp_path, capsys, mix, command):
    model = _edited_codec(tmp_path, collapsed)
    out = tmp_path / "out"
    args = {
        "separate": ["separate", str(mix)],
        "audio": ["audio", str(mix), "--stem", "alto"],
        "accompany": ["accompany", str(mix), "--stem", "bass"],
        "generate": ["generate", "--seconds", "1"],
        "arrange": ["arrange", "--given", f"bass={mix}"],
    }[command]
    # 20 steps: the sampled latents are sound (std near 1), so the blame falls on the codec.
    rc = main([*args, "--checkpoint", str(model), "--steps", "20", "--quiet", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert DECODER[1] in err and "constant at 0.3440" in err and "Nothing was written" in err
    assert not out.exists() or not any(out.iterdir())
    rc = main(
        [
            *args,
            "--checkpoint",
            str(model),
            "--steps",
            "2",
            "--quiet",
            "--allow-degenerate",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0 and "warning:" in err and "constant at 0.3440" in err
    assert any(p.suffix == ".wav" for p in out.iterdir())


def test_generated_mix_is_limited_and_says_so(tmp_path, capsys):
    model = _edited_codec(tmp_path, loud)
    out = tmp_path / "gen"
    rc = main(["generate", "--seconds", "1", "--checkpoint", str(model), "--steps", "2", "--quiet",
               "--allow-degenerate", "--out", str(out)])  # fmt: skip
    assert rc == 0
    info = json.loads((out / "mix.json").read_text())
    assert info["peak_normalised"] is True and info["peak_of_sum"] > 1.0 and info["gain_db"] < 0
    mix, _ = sf.read(out / "mix.wav")
    assert np.abs(mix).max() <= 10 ** (-1 / 20) + 1e-3
    assert "mix.wav is scaled by" in capsys.readouterr().err
