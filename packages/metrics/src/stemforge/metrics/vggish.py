"""VGGish (Hershey et al., "CNN architectures for large-scale audio classification", ICASSP 2017),
the embedder of the original FAD paper (Kilgour et al. 2019) and of MSG-LD's FAD figures, loaded
from a local weights file a user supplies (nothing is downloaded).

Front end as the reference ``vggish_input`` / ``mel_features``: 16 kHz, 25 ms periodic-Hann
frames every 10 ms without centring, FFT 512, magnitude (not power) spectrum, 64 HTK-mel bands
125-7500 Hz (triangles in the mel domain, unnormalised, DC bin zeroed), ``log(mel + 0.01)``,
non-overlapping 0.96 s examples of 96 frames. Network: four VGG blocks (64, 128, 256x2, 512x2
channels), three dense layers 4096, 4096, 128 with ReLU; the optional PCA post-processing
(``pproc``) is applied without the 8-bit quantisation.

Weights: a safetensors file with torchvggish's parameter names (``features.0.weight`` ...,
``embeddings.4.bias``, optionally ``pproc._pca_matrix`` / ``pproc._pca_means``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from stemforge.metrics.embedder import Embedder

__all__ = ["VGGishEmbedder", "VGGishNet", "vggish_log_mel"]

SAMPLE_RATE = 16000
WINDOW = 400
HOP = 160
FFT = 512
N_MELS = 64
EXAMPLE_FRAMES = 96


def _hz_to_mel_htk(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log(1.0 + hz / 700.0)


def _vggish_mel_matrix() -> Tensor:
    bins = FFT // 2 + 1
    bins_mel = _hz_to_mel_htk(np.linspace(0.0, SAMPLE_RATE / 2, bins))
    edges = np.linspace(_hz_to_mel_htk(np.array(125.0)), _hz_to_mel_htk(np.array(7500.0)), N_MELS + 2)
    lower = (bins_mel[:, None] - edges[None, :-2]) / (edges[1:-1] - edges[:-2])[None, :]
    upper = (edges[None, 2:] - bins_mel[:, None]) / (edges[2:] - edges[1:-1])[None, :]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights[0, :] = 0.0
    return torch.from_numpy(weights)  # (bins, mels), float64


def vggish_log_mel(wave: Tensor) -> Tensor:
    """(B, N) 16 kHz audio -> (B, frames, 64) VGGish log-mel, computed in float64."""
    if wave.shape[-1] < WINDOW:
        raise ValueError(
            f"audio of {wave.shape[-1]} samples is shorter than one 25 ms VGGish frame ({WINDOW})"
        )
    frames = wave.double().unfold(-1, WINDOW, HOP)  # (B, F, 400), no centring
    window = 0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(WINDOW, dtype=torch.float64) / WINDOW)
    magnitude = torch.fft.rfft(frames * window, n=FFT).abs()
    mel = magnitude @ _vggish_mel_matrix().to(wave.device)
    return torch.log(mel + 0.01)


class VGGishNet(nn.Module):
    """The VGGish network with torchvggish's module layout; input (N, 1, 96, 64) log-mel examples."""

    pca_matrix: Tensor
    pca_means: Tensor

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for width, pool in ((64, True), (128, True), (256, False), (256, True), (512, False), (512, True)):
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
            if pool:
                layers.append(nn.MaxPool2d(2, 2))
            channels = width
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096),
            nn.ReLU(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, 128),
            nn.ReLU(),
        )
        self.register_buffer("pca_matrix", torch.empty(0))
        self.register_buffer("pca_means", torch.empty(0))

    def forward(self, examples: Tensor) -> Tensor:
        x = self.features(examples)
        # TF flattens in (H, W, C) order; torchvggish permutes before flattening for the same reason.
        x = x.permute(0, 2, 3, 1).flatten(1)
        x = self.embeddings(x)
        if self.pca_matrix.numel():
            x = (x - self.pca_means.reshape(1, -1)) @ self.pca_matrix.T
        return x


class VGGishEmbedder(Embedder):
    """FAD embedder: VGGish embeddings (128) of each 0.96 s example, weights from a local safetensors file."""

    name = "vggish"
    sample_rate = SAMPLE_RATE
    window_samples = (EXAMPLE_FRAMES - 1) * HOP + WINDOW
    hop_samples = EXAMPLE_FRAMES * HOP
    embedding_dim = 128

    def __init__(self, weights: str | os.PathLike[str]) -> None:
        super().__init__()
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no VGGish weights file; stemforge ships none and downloads nothing. Convert the "
                "torchvggish state dict to safetensors and pass its path"
            )
        if path.suffix != ".safetensors":
            raise ValueError(
                f"{path}: weights must be a .safetensors file (pickled checkpoints are not loaded)"
            )
        from safetensors.torch import load_file

        state = load_file(str(path))
        self.net = VGGishNet()
        pca = {"pproc._pca_matrix": "pca_matrix", "pproc._pca_means": "pca_means"}
        for src, dst in pca.items():
            if src in state:
                state[dst] = state.pop(src)
        expected = set(self.net.state_dict()) - {"pca_matrix", "pca_means"}
        missing = sorted(expected - set(state))
        if missing:
            raise ValueError(
                f"{path}: not a VGGish state dict; missing {missing[:4]}{' ...' if len(missing) > 4 else ''}"
            )
        for name in ("pca_matrix", "pca_means"):
            if name in state:
                setattr(self.net, name, state[name].float())
        self.net.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        self.net.eval().requires_grad_(False)
        self.name = "vggish-pca" if self.net.pca_matrix.numel() else "vggish"

    @torch.no_grad()
    def forward(self, wave: Tensor) -> Tensor:
        """(B, N) 16 kHz audio -> (B, W, 128), one embedding per 0.96 s example."""
        wave = self._check_wave(wave)
        log_mel = vggish_log_mel(wave).float()
        count = log_mel.shape[1] // EXAMPLE_FRAMES
        if count == 0:
            raise ValueError(
                f"audio of {wave.shape[-1]} samples is shorter than one VGGish example (0.975 s)"
            )
        examples = log_mel[:, : count * EXAMPLE_FRAMES].unflatten(1, (count, EXAMPLE_FRAMES))
        out = self.net(examples.flatten(0, 1).unsqueeze(1))
        return out.unflatten(0, (wave.shape[0], count))
