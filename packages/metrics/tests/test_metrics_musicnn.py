"""The PyTorch MSD_musicnn port against reference outputs of the ORIGINAL musicnn code under TensorFlow.

The fixture (tests/fixtures/musicnn_reference/, made by make_reference.py there with TensorFlow 2.21
and librosa 0.11) holds, for a copy of the shared chorale fixture's soprano, bass and mix
(audio/, SHA256SUMS) at gains 0.25 and 1, the original pipeline's float16 log-mel patches and the
network's outputs.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.metrics import (
    MSD_TAGS,
    MusicnnEmbedder,
    MusicnnNet,
    musicnn_checkpoint_prefix,
    read_tf_checkpoint,
)

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "musicnn_reference"
AUDIO = REFERENCE / "audio"
CLIPS = ("soprano", "bass", "mix")
LAYERS = ("max_pool", "mean_pool", "penultimate", "taggram")


def _audio(name: str, gain: float) -> torch.Tensor:
    wave, rate = sf.read(AUDIO / f"{name}.flac", dtype="float32")
    assert rate == 16000
    return torch.from_numpy(wave * np.float32(gain)).unsqueeze(0)


def _ref(name: str, gain: float, key: str) -> np.ndarray:
    return np.load(REFERENCE / f"{name}_g{gain:g}_{key}.npy")


def _rel_err(out: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(out - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def net() -> MusicnnNet:
    model = MusicnnNet()
    model.load_tf_variables(read_tf_checkpoint(musicnn_checkpoint_prefix()))
    return model.eval()


@pytest.fixture(scope="module")
def embedders() -> dict[str, MusicnnEmbedder]:
    return {
        "float32": MusicnnEmbedder("max_pool"),
        "original": MusicnnEmbedder("max_pool", front_end="original"),
    }


def test_fixture_records_the_original_run():
    record = json.loads((REFERENCE / "reference_g0.25.json").read_text())
    assert record["model"] == "MSD_musicnn" and record["n_frames"] == 187
    assert set(record["clips"]) == {f"{c}_g0.25" for c in CLIPS}
    assert record["tensorflow"] == "2.21.0" and record["librosa"] == "0.11.0"
    sums = dict(line.split()[::-1] for line in (AUDIO / "SHA256SUMS").read_text().splitlines())
    for clip in CLIPS:
        digest = hashlib.sha256((AUDIO / f"{clip}.flac").read_bytes()).hexdigest()
        assert sums[f"audio/{clip}.flac"] == digest, "fixture audio changed: rerun make_reference.py"


@pytest.mark.parametrize("clip", CLIPS)
def test_network_matches_original_on_its_own_input(net, clip):
    # Same float16 log-mel input as TF saw: only float32 summation order differs (measured ~3e-6).
    patches = torch.from_numpy(_ref(clip, 0.25, "patches").astype(np.float32))
    with torch.no_grad():
        out = net(patches)
    for layer in LAYERS:
        assert _rel_err(out[layer].numpy(), _ref(clip, 0.25, layer)) < 2e-5, layer


@pytest.mark.parametrize("clip", CLIPS)
def test_front_end_matches_librosa_float16(embedders, clip):
    ours = embedders["original"].patches(_audio(clip, 0.25))[0].numpy()
    ref = _ref(clip, 0.25, "patches").astype(np.float32)
    assert ours.shape == ref.shape == (3, 187, 96)
    assert np.isfinite(ref).all()  # gain 0.25 keeps the original's float16 arithmetic from overflowing
    # Bit-identical on > 99.9% of the bins; elsewhere one float16 rounding step apart (measured
    # max 2^-9: an intermediate float16 rounds the other way after float32 STFT round-off).
    assert np.abs(ours - ref).max() <= 2.0**-9
    assert (ours != ref).mean() < 1e-3


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("front_end", ["original", "float32"])
def test_full_pipeline_matches_original(embedders, clip, front_end):
    # Audio file -> embeddings, compared with the original's outputs on the same audio.
    # Measured: < 5e-4 (original float16 front end), < 1e-3 (float32 front end).
    out = embedders[front_end].outputs(_audio(clip, 0.25))
    for layer in LAYERS:
        assert _rel_err(out[layer][0].numpy(), _ref(clip, 0.25, layer)) < 2e-3, (layer, front_end)


def test_original_front_end_overflow_is_reproduced(embedders, net):
    # At full scale the original's float16 compression overflows to +inf on loud bins: we reproduce
    # the same +inf pattern and the same (saturated) outputs, including TF's NaN-to-zero ReLU.
    ours = embedders["original"].patches(_audio("mix", 1.0))[0].numpy()
    ref = _ref("mix", 1.0, "patches").astype(np.float32)
    assert np.isinf(ref).sum() > 100
    assert (np.isinf(ours) == np.isinf(ref)).all()
    with torch.no_grad():
        out = net(torch.from_numpy(ref))
    np.testing.assert_allclose(out["taggram"].numpy(), _ref("mix", 1.0, "taggram"), rtol=1e-5, atol=1e-6)
    # ... and that saturation is why the float32 front end is the default: the original gives every
    # loud clip the same tags, the float32 front end does not.
    assert np.allclose(_ref("bass", 1.0, "taggram"), _ref("soprano", 1.0, "taggram"))
    emb = embedders["float32"]
    bass, soprano = emb.outputs(_audio("bass", 1.0)), emb.outputs(_audio("soprano", 1.0))
    assert not torch.allclose(bass["taggram"], soprano["taggram"], atol=1e-2)


def test_tags_are_plausible_for_a_wind_quartet_chorale():
    taggram = _ref("mix", 0.25, "taggram").mean(axis=0)
    top = {MSD_TAGS[i] for i in np.argsort(taggram)[-5:]}
    assert "instrumental" in top
    assert not top & {"Hip-Hop", "heavy metal", "punk", "female vocalists", "male vocalists"}


def test_embeddings_separate_clips_and_tolerate_gain(embedders):
    emb = embedders["float32"]
    soprano, bass = emb(_audio("soprano", 1.0))[0], emb(_audio("bass", 1.0))[0]
    soprano_quiet = emb(_audio("soprano", 0.5))[0]
    between_clips = (soprano - bass).norm() / soprano.norm()
    between_gains = (soprano - soprano_quiet).norm() / soprano.norm()
    assert between_clips > 0.2
    assert between_gains < 0.5 * between_clips


def test_embedder_interface_and_errors(embedders):
    emb = embedders["float32"]
    assert (emb.sample_rate, emb.embedding_dim, emb.window_samples) == (16000, 753, 186 * 256)
    assert emb.name == "musicnn-MSD-max_pool"
    assert emb(_audio("mix", 1.0)).shape == (1, 3, 753)
    with pytest.raises(ValueError, match="shorter than one musicnn patch"):
        emb(torch.randn(1, 16000))
    with pytest.raises(ValueError, match="NaN"):
        emb(torch.full((1, 48000), float("nan")))
    with pytest.raises(ValueError, match="layer="):
        MusicnnEmbedder("logits")  # type: ignore[arg-type]


def test_mtt_model_matches_original(embedders):
    # MTT_musicnn: same architecture and front end, MagnaTagATune weights (made with MUSICNN_MODEL=MTT_musicnn).
    record = json.loads((REFERENCE / "reference_g0.25_MTT_musicnn.json").read_text())
    assert record["model"] == "MTT_musicnn"
    emb = MusicnnEmbedder("taggram", model="MTT_musicnn")
    assert emb.name == "musicnn-MTT-taggram" and len(emb.tags) == 50
    for clip in CLIPS:
        patches = torch.from_numpy(_ref(clip, 0.25, "patches").astype(np.float32))  # same front end as MSD
        with torch.no_grad():
            out = emb.net(patches)
        for layer in LAYERS:
            assert _rel_err(out[layer].numpy(), _ref(clip, 0.25, f"MTT_musicnn_{layer}")) < 2e-5, (
                clip,
                layer,
            )
    # A flute / oboe / clarinet / bassoon chorale: MTT's instrument and genre tags should say so.
    taggram = _ref("mix", 0.25, "MTT_musicnn_taggram").mean(axis=0)
    top = {emb.tags[i] for i in np.argsort(taggram)[-6:]}
    assert top & {"classical", "flute", "classic", "strings", "slow", "quiet", "soft"}
    assert not top & {"techno", "rock", "metal", "drums", "beat", "dance"}
