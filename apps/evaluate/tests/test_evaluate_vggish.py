"""FAD with VGGish from a local weights file (``--embedder vggish --vggish-weights FILE``): a seeded
random VGGish written to safetensors stands for the user's file; the protocol must embed with it
(checked against stemforge-metrics' ``VGGishEmbedder`` on the same audio), name it, and refuse a bad
file in one line before any work."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file

from stemforge.evaluate.cli import main

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "apps" / "insert" / "src" / "stemforge" / "insert" / "checkpoints" / "demo-audio"
STEMS = ("soprano", "alto", "tenor", "bass")


@pytest.fixture(scope="module")
def vggish_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """VGGish with seeded random weights under torchvggish's names (about 290 MB of float32)."""
    from stemforge.metrics import VGGishNet

    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in VGGishNet().state_dict().items() if not k.startswith("pca")}
    path = tmp_path_factory.mktemp("vggish") / "vggish.safetensors"
    save_file(state, path)
    return path


def test_generation_fad_with_user_vggish_weights(stem_set, vggish_file, tmp_path, one_thread):
    from stemforge.metrics import VGGishEmbedder

    args = ["generation", "--checkpoint", str(DEMO), "--stems-root", str(stem_set), "--steps", "1"]
    args += ["--seconds", "3", "--quiet", "--no-audio"]
    vggish = [*args, "--embedder", "vggish", "--vggish-weights", str(vggish_file)]
    # Per-song FAD needs 2 windows per track: 3 s give VGGish 3 (0.975 s examples), musicnn 1.
    assert main([*vggish, "--fad", "per-song", "--out", str(tmp_path / "vggish")]) == 0
    assert main([*args, "--embedder", "musicnn", "--out", str(tmp_path / "musicnn")]) == 0
    res = json.loads((tmp_path / "vggish" / "results.json").read_text())
    musicnn = json.loads((tmp_path / "musicnn" / "results.json").read_text())
    assert res["embedder"] == "vggish" and musicnn["embedder"] == "musicnn-MSD-max_pool"
    assert res["settings"]["embedder"] == "vggish" and musicnn["settings"]["embedder"] == "musicnn-max_pool"
    digest = hashlib.sha256(vggish_file.read_bytes()).hexdigest()
    assert res["embedder_weights"] == {"file": str(vggish_file.resolve()), "sha256": digest}
    row = res["table"]["generation"]
    assert row["real_embeddings"] == row["generated_embeddings"] == 6  # 2 tracks x 3 examples
    assert math.isfinite(row["fad"]) and row["fad"] != musicnn["table"]["generation"]["fad"]
    assert row["fad_per_song"]["songs"] == 2
    md = (tmp_path / "vggish" / "results.md").read_text()
    assert "embedder vggish (weights" in md and digest[:12] in md
    # The stored embeddings of the real mixture are the user's VGGish on that audio.
    mix = sum(torch.from_numpy(sf.read(stem_set / "track0" / f"{s}.flac", dtype="float32")[0]) for s in STEMS)
    expected = VGGishEmbedder(vggish_file).embed_frames(mix[None, : 3 * 16000]).float()
    stored = load_file(tmp_path / "vggish" / "items" / "generation" / "track0.safetensors")["real"]
    assert stored.shape == (3, 128) and torch.allclose(stored, expected, rtol=1e-5, atol=1e-6)
    # Resuming with another weights file is refused rather than mixed in (a hard link: another path).
    other = tmp_path / "other.safetensors"
    other.hardlink_to(vggish_file)
    assert (
        main(
            [*args, "--embedder", "vggish", "--vggish-weights", str(other), "--out", str(tmp_path / "vggish")]
        )
        == 2
    )


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_bad_vggish_weights_are_refused_before_work(stem_set, tmp_path, capsys):
    from stemforge.metrics import VGGishNet

    out = tmp_path / "out"
    base = ["--stems-root", str(stem_set), "--out", str(out), "--steps", "1", "--seconds", "3"]
    generation = ["generation", "--checkpoint", str(DEMO), *base]
    # No checkpoint is read before the weights are checked: a missing one would be the error otherwise.
    missing_model = ["arrangement", "--checkpoint", str(tmp_path / "no-model"), *base]
    assert main([*generation, "--embedder", "vggish"]) == 2
    assert "--embedder vggish: give the weights with --vggish-weights FILE" in _one_error(capsys)
    assert (
        main([*missing_model, "--embedder", "vggish", "--vggish-weights", str(tmp_path / "none.safetensors")])
        == 2
    )
    assert _one_error(capsys).endswith(f"--vggish-weights {tmp_path / 'none.safetensors'}: no such file")
    pickled = tmp_path / "vggish.pt"
    torch.save({}, pickled)
    assert main([*missing_model, "--embedder", "vggish", "--vggish-weights", str(pickled)]) == 2
    assert "give a .safetensors file" in _one_error(capsys)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a tensor file" * 4)
    assert main([*missing_model, "--embedder", "vggish", "--vggish-weights", str(garbage)]) == 2
    assert "not a readable safetensors file" in _one_error(capsys)
    other = tmp_path / "other.safetensors"
    save_file({"encoder.weight": torch.randn(4, 4)}, other)
    assert main([*missing_model, "--embedder", "vggish", "--vggish-weights", str(other)]) == 2
    assert "not a VGGish state dict (torchvggish's names): 18 tensors missing" in _one_error(capsys)
    # Every name present, one shape wrong (the first conv layer of a 3-channel VGG).
    with torch.device("meta"):
        names = {k: tuple(v.shape) for k, v in VGGishNet().state_dict().items() if not k.startswith("pca")}
    wrong = {k: torch.zeros(1) for k in names}
    wrong["features.0.weight"] = torch.zeros(64, 3, 3, 3)
    shapes = tmp_path / "shapes.safetensors"
    save_file(wrong, shapes)
    insertion = ["insertion", "--checkpoint", str(tmp_path / "no-model"), *base]
    assert main([*insertion, "--embedder", "vggish", "--vggish-weights", str(shapes)]) == 2
    assert "features.0.weight has shape [64, 3, 3, 3]; VGGish's is [64, 1, 3, 3]" in _one_error(capsys)
    # The weights belong to VGGish only.
    assert main([*missing_model, "--vggish-weights", str(shapes)]) == 2
    assert "only --embedder vggish reads it" in _one_error(capsys)
    assert not out.exists()
