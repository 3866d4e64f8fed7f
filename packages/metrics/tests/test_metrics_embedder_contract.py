"""Checks every FAD embedder passes: interface attributes, output shape, determinism, batch
independence (a clip's embeddings do not depend on the other clips of the batch), finite values."""

from pathlib import Path

import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from stemforge.metrics import Embedder, MusicnnEmbedder, VGGishEmbedder, VGGishNet

AUDIO = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "audio" / "chorale_16k"


def _clips(seconds: float) -> torch.Tensor:
    n = int(seconds * 16000)
    return torch.stack(
        [torch.from_numpy(sf.read(AUDIO / f"{s}.flac", dtype="float32")[0][:n]) for s in ("alto", "bass")]
    )


class EmbedderContract:
    seconds = 3.5

    def make(self, tmp_path: Path) -> Embedder:
        raise NotImplementedError

    def test_contract(self, tmp_path):
        emb = self.make(tmp_path)
        assert isinstance(emb.name, str) and emb.name
        assert emb.sample_rate == 16000 and emb.window_samples > 0 and emb.hop_samples > 0
        clips = _clips(self.seconds)
        out = emb(clips)
        expected_windows = 1 + (clips.shape[1] - emb.window_samples) // emb.hop_samples
        assert out.shape == (2, expected_windows, emb.embedding_dim)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(emb(clips), out)  # deterministic
        torch.testing.assert_close(emb(clips[1:]), out[1:], rtol=1e-4, atol=1e-5)  # batch-independent
        assert not torch.allclose(out[0], out[1])  # different clips, different embeddings
        frames = emb.embed_frames(clips)
        assert frames.dtype == torch.float64 and frames.shape == (2 * expected_windows, emb.embedding_dim)


class TestMusicnnContract(EmbedderContract):
    def make(self, tmp_path):
        return MusicnnEmbedder("penultimate")


class TestVGGishContract(EmbedderContract):
    seconds = 2.0

    def make(self, tmp_path):
        torch.manual_seed(0)
        path = tmp_path / "vggish.safetensors"
        save_file({k: v for k, v in VGGishNet().state_dict().items() if not k.startswith("pca")}, str(path))
        return VGGishEmbedder(path)


def test_contract_rejects_multichannel_input():
    emb = MusicnnEmbedder()
    with pytest.raises(ValueError, match=r"\(B, N\)"):
        emb(torch.zeros(1, 2, 48000))
