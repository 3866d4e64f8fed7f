"""The MSD_musicnn weights shipped in the wheel: equal to the musicnn wheel's TF1 checkpoint tensor
for tensor, the same embeddings and FAD either way, and FAD with no musicnn installed at all."""

import hashlib
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from stemforge.metrics import (
    MSD_MUSICNN_WEIGHTS,
    FrechetAudioDistance,
    MusicnnEmbedder,
    MusicnnNet,
    musicnn_checkpoint_prefix,
    read_tf_checkpoint,
)

PACKAGE = Path(__file__).resolve().parents[1]
WEIGHTS = MSD_MUSICNN_WEIGHTS.parent
CONVERTER = PACKAGE / "tools" / "convert_musicnn.py"
AUDIO = PACKAGE.parents[1] / "tests" / "fixtures" / "audio"
REF_FILE, EVAL_FILE = AUDIO / "chorale_16k" / "mix.flac", AUDIO / "chorale_demo_16k" / "mix.flac"

needs_musicnn = pytest.mark.skipif(
    importlib.util.find_spec("musicnn") is None,
    reason="the musicnn wheel (pip install --no-deps musicnn==0.1.0) holds the checkpoint to compare with",
)


def _wave(path: Path) -> torch.Tensor:
    wave, rate = sf.read(path, dtype="float32")
    assert rate == 16000
    return torch.from_numpy(wave).unsqueeze(0)


def test_shipped_files_are_recorded_and_licensed():
    record = json.loads((WEIGHTS / "msd_musicnn.json").read_text())
    data = MSD_MUSICNN_WEIGHTS.read_bytes()
    assert record["file"] == MSD_MUSICNN_WEIGHTS.name and record["bytes"] == len(data)
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["command"] == "python packages/metrics/tools/convert_musicnn.py" and CONVERTER.is_file()
    assert record["source"]["distribution"] == "musicnn" and record["source"]["version"] == "0.1.0"
    assert record["source"]["licence"] == "ISC"
    licence = (WEIGHTS / record["licence_file"]).read_text()
    assert "Jordi Pons" in licence and "Permission to use, copy, modify, and/or distribute" in licence
    state = load_file(MSD_MUSICNN_WEIGHTS)
    assert all(t.dtype == torch.float32 for t in state.values())
    assert (len(state), sum(t.numel() for t in state.values())) == (record["tensors"], record["values"])
    # The whole network (tag layer included), every tensor but the batch counters.
    expected = {k for k, v in MusicnnNet().state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(state) == expected and "classifier.weight" in state


@needs_musicnn
def test_shipped_weights_equal_the_musicnn_checkpoint():
    net = MusicnnNet()
    net.load_tf_variables(read_tf_checkpoint(musicnn_checkpoint_prefix("MSD_musicnn")))
    from_checkpoint = net.float_state_dict()
    shipped = load_file(MSD_MUSICNN_WEIGHTS)
    assert shipped.keys() == from_checkpoint.keys()
    for name, tensor in from_checkpoint.items():
        assert shipped[name].shape == tensor.shape and torch.equal(shipped[name], tensor), name


@needs_musicnn
def test_conversion_script_reproduces_the_shipped_files():
    proc = subprocess.run(
        [sys.executable, str(CONVERTER), "--check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "tensor for tensor" in proc.stdout


@needs_musicnn
def test_embeddings_and_fad_are_identical_to_the_checkpoints():
    shipped = MusicnnEmbedder("max_pool")
    from_checkpoint = MusicnnEmbedder("max_pool", checkpoint=musicnn_checkpoint_prefix())
    assert shipped.name == from_checkpoint.name == "musicnn-MSD-max_pool"
    wave = _wave(REF_FILE)
    ours, theirs = shipped.outputs(wave), from_checkpoint.outputs(wave)
    for layer in ("max_pool", "mean_pool", "penultimate", "taggram"):
        assert torch.equal(ours[layer], theirs[layer]), layer
    scores = []
    for embedder in (shipped, from_checkpoint):
        fad = FrechetAudioDistance(embedder)
        fad.update(_wave(REF_FILE), real=True)
        fad.update(_wave(EVAL_FILE), real=False)
        scores.append(fad.compute())
    assert scores[0] == scores[1] and scores[0].value > 0


def test_wrong_weights_are_refused():
    state = load_file(MSD_MUSICNN_WEIGHTS)
    del state["classifier.weight"]
    with pytest.raises(ValueError, match=r"missing \['classifier.weight'\]"):
        MusicnnNet().load_float_state_dict(state)


# A real process in which musicnn (and TensorFlow) cannot be imported, as after
# `pip install stemforge-metrics` alone: an import hook refuses them and records every attempt.
_NO_MUSICNN = """
import sys, importlib.abc

class Refuse(importlib.abc.MetaPathFinder):
    attempts = []
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("musicnn", "tensorflow"):
            Refuse.attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
import soundfile as sf, torch
from stemforge.metrics import FrechetAudioDistance, MusicnnEmbedder

def wave(path):
    return torch.from_numpy(sf.read(path, dtype="float32")[0]).unsqueeze(0)

fad = FrechetAudioDistance(MusicnnEmbedder())
fad.update(wave(sys.argv[1]), real=True)
fad.update(wave(sys.argv[2]), real=False)
score = fad.compute()
print(repr(score.value), score.num_reference, score.num_evaluated, score.embedder)
print("attempts", Refuse.attempts, "musicnn" in sys.modules)
try:
    MusicnnEmbedder(model="MTT_musicnn")
except ModuleNotFoundError as err:
    print("MTT:", err)
"""


def test_fad_without_musicnn_installed():
    proc = subprocess.run(
        [sys.executable, "-c", _NO_MUSICNN, str(REF_FILE), str(EVAL_FILE)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    score_line, attempts_line, mtt_line = proc.stdout.splitlines()
    value, n_ref, n_eval, name = score_line.split()
    assert (n_ref, n_eval, name) == ("3", "3", "musicnn-MSD-max_pool")
    assert float(value) > 0
    assert attempts_line == "attempts [] False"  # the default embedder never looks for musicnn
    assert "musicnn wheel is not installed" in mtt_line and "pip install --no-deps musicnn" in mtt_line
    if importlib.util.find_spec("musicnn") is not None:
        # Same FAD, to the last bit, as from the musicnn wheel's checkpoint in this process.
        fad = FrechetAudioDistance(MusicnnEmbedder(checkpoint=musicnn_checkpoint_prefix()))
        fad.update(_wave(REF_FILE), real=True)
        fad.update(_wave(EVAL_FILE), real=False)
        assert float(value) == fad.compute().value


@pytest.mark.slow
def test_wheel_ships_the_weights(tmp_path):
    # As tools/release.py builds it (sdist, then the wheel from the sdist); needs the build backend.
    pytest.importorskip("build")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path), str(PACKAGE)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        shipped = {
            name: zf.read(name) for name in zf.namelist() if name.startswith("stemforge/metrics/weights/")
        }
    names = ("msd_musicnn.safetensors", "msd_musicnn.json", "musicnn-LICENSE.md")
    assert set(shipped) == {f"stemforge/metrics/weights/{n}" for n in names}
    assert shipped["stemforge/metrics/weights/msd_musicnn.safetensors"] == MSD_MUSICNN_WEIGHTS.read_bytes()
