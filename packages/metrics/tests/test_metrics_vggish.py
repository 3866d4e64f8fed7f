"""VGGish: the front end against a literal numpy transcription of vggish_input / mel_features;
weights loading from a local safetensors file (random weights: no real ones exist offline)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file

from stemforge.metrics import VGGishEmbedder, VGGishNet, vggish_log_mel

AUDIO = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "audio" / "chorale_16k"


def _np_log_mel(x: np.ndarray) -> np.ndarray:
    """mel_features.log_mel_spectrogram(x, 16000, log_offset=0.01, window 0.025, hop 0.010, 64 mels, 125-7500 Hz)."""
    window_length, hop_length = 400, 160
    fft_length = 2 ** int(np.ceil(np.log(window_length) / np.log(2.0)))
    num_frames = 1 + (len(x) - window_length) // hop_length
    frames = np.stack([x[i * hop_length : i * hop_length + window_length] for i in range(num_frames)])
    window = 0.5 - (0.5 * np.cos(2 * np.pi / window_length * np.arange(window_length)))
    spectrogram = np.abs(np.fft.rfft(frames * window, int(fft_length)))
    num_bins = spectrogram.shape[1]

    def mel(h):
        return 1127.0 * np.log(1.0 + h / 700.0)

    bins_mel = mel(np.linspace(0.0, 8000.0, num_bins))
    edges = np.linspace(mel(125.0), mel(7500.0), 64 + 2)
    matrix = np.empty((num_bins, 64))
    for i in range(64):
        lo, c, hi = edges[i : i + 3]
        matrix[:, i] = np.maximum(0.0, np.minimum((bins_mel - lo) / (c - lo), (hi - bins_mel) / (hi - c)))
    matrix[0, :] = 0.0
    return np.log(np.dot(spectrogram, matrix) + 0.01)


def test_front_end_matches_numpy_reference_on_real_audio():
    wave = sf.read(AUDIO / "mix.flac", dtype="float32")[0][:40000]
    ours = vggish_log_mel(torch.from_numpy(wave).unsqueeze(0))[0].numpy()
    ref = _np_log_mel(wave.astype(np.float64))
    assert ours.shape == ref.shape == (1 + (40000 - 400) // 160, 64)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)  # both float64


def test_loads_local_weights_and_embeds(tmp_path):
    torch.manual_seed(0)
    net = VGGishNet()
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("pca")}
    state["pproc._pca_matrix"] = torch.linalg.qr(torch.randn(128, 128))[0].contiguous()
    state["pproc._pca_means"] = torch.randn(128, 1)
    path = tmp_path / "vggish.safetensors"
    save_file(state, str(path))
    emb = VGGishEmbedder(path)
    assert emb.name == "vggish-pca" and emb.embedding_dim == 128
    wave = torch.from_numpy(sf.read(AUDIO / "mix.flac", dtype="float32")[0][: 16000 * 3]).unsqueeze(0)
    out = emb(wave)
    assert out.shape == (1, 3, 128)
    # Same as running the network by hand on the examples.
    examples = vggish_log_mel(wave)[0, : 3 * 96].float().reshape(3, 1, 96, 64)
    with torch.no_grad():
        raw = net.embeddings(net.features(examples).permute(0, 2, 3, 1).flatten(1))
    expected = (raw - state["pproc._pca_means"].reshape(1, -1)) @ state["pproc._pca_matrix"].T
    torch.testing.assert_close(out[0], expected, rtol=1e-4, atol=1e-5)


def test_weight_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="downloads nothing"):
        VGGishEmbedder(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(1)}, str(bad))
    with pytest.raises(ValueError, match="not a VGGish state dict"):
        VGGishEmbedder(bad)
    pickled = tmp_path / "vggish.pth"
    pickled.write_bytes(b"0")
    with pytest.raises(ValueError, match="safetensors"):
        VGGishEmbedder(pickled)
