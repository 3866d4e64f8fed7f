"""MSD_musicnn (Pons & Serra, "musicnn: pre-trained convolutional neural networks for music audio
tagging", ISMIR LBD 2019; architecture of Pons et al., "End-to-end learning for music audio tagging
at scale", ISMIR 2018) ported to PyTorch.

The MSD_musicnn weights ship with this package (``weights/msd_musicnn.safetensors``, ISC licence,
converted once from the TF1 checkpoint of the ``musicnn`` wheel by ``tools/convert_musicnn.py``;
identical tensor for tensor). Other TF1 checkpoints (a ``checkpoint=`` prefix, or MTT_musicnn from
an installed ``musicnn`` wheel) are read by stemforge's own checkpoint reader (no TensorFlow).

The original pipeline, reproduced step by step:

- front end: 16 kHz audio, STFT n_fft 512 / hop 256 (Hann, centred, zero padding), power
  spectrogram, 96 Slaney mel bands 0-8 kHz (librosa defaults), cast to float16, then
  ``log10(10000 x + 1)`` computed in float16 (the original does exactly this, including the
  float16 overflow to +inf for mel energies above ~6.55);
- 3 s patches of 187 frames, consecutive and non-overlapping, a trailing partial patch dropped;
- network: input batch norm; timbral convolutions 7x38 and 7x67 (204 filters each, time padded by
  3, max-pooled over frequency) and temporal convolutions 128x1, 64x1, 32x1 ('same' padding, 51
  filters each, max-pooled over frequency); mid-end of three 7-frame convolutions with 64 filters
  and residual connections; back-end of temporal max and mean pooling (753 channels each), batch
  norm, a 200-unit dense layer (the "penultimate" features) and 50 MSD tag logits. Every
  convolution is followed by ReLU then batch norm (epsilon 1e-3), as the TF1 layers were built.
"""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stemforge.metrics.embedder import Embedder
from stemforge.metrics.tf_checkpoint import read_tf_checkpoint

__all__ = [
    "MSD_MUSICNN_WEIGHTS",
    "MSD_TAGS",
    "MTT_TAGS",
    "MusicnnEmbedder",
    "MusicnnFrontEnd",
    "MusicnnLayer",
    "MusicnnModel",
    "MusicnnNet",
    "musicnn_checkpoint_prefix",
    "musicnn_log_mel",
    "slaney_mel_filterbank",
]

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 256
N_MELS = 96
PATCH_FRAMES = 187  # librosa.time_to_frames(3 s) + 1, as musicnn's extractor
BN_EPS = 1e-3  # tf.compat.v1.layers.batch_normalization default

#: The MSD_musicnn weights shipped with stemforge-metrics: ``MusicnnNet``'s float32 state dict
#: (provenance, conversion command and sha256 in ``msd_musicnn.json`` beside it).
MSD_MUSICNN_WEIGHTS = Path(__file__).resolve().parent / "weights" / "msd_musicnn.safetensors"

MSD_TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist",
    "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy", "catchy", "funk",
    "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip

MTT_TAGS = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast", "piano",
    "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male", "singing", "vocals",
    "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal", "no vocal", "pop", "soft",
    "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal",
    "beats", "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
)  # fmt: skip

MusicnnModel = Literal["MSD_musicnn", "MTT_musicnn"]
MusicnnLayer = Literal["max_pool", "mean_pool", "penultimate", "taggram"]
MusicnnFrontEnd = Literal["float32", "original"]


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    mel = hz / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    log_region = hz >= min_log_hz
    mel[log_region] = min_log_mel + np.log(hz[log_region] / min_log_hz) / logstep
    return mel


def _mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    hz = f_sp * mel
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    log_region = mel >= min_log_mel
    hz[log_region] = min_log_hz * np.exp(logstep * (mel[log_region] - min_log_mel))
    return hz


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> Tensor:
    """Slaney-scale, area-normalised triangular mel filters (n_mels, n_fft // 2 + 1), librosa's default."""
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_edges = np.linspace(
        _hz_to_mel_slaney(np.array([0.0]))[0], _hz_to_mel_slaney(np.array([sample_rate / 2]))[0], n_mels + 2
    )
    hz_edges = _mel_to_hz_slaney(mel_edges)
    widths = np.diff(hz_edges)
    ramps = hz_edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_edges[2:] - hz_edges[:-2]))[:, None]
    return torch.from_numpy(weights.astype(np.float32))


def musicnn_log_mel(wave: Tensor, front_end: MusicnnFrontEnd = "float32") -> Tensor:
    """musicnn's input representation of 16 kHz audio (B, N) -> (B, frames, 96) float32.

    ``front_end="original"`` reproduces the original float16 arithmetic bit for bit, including its
    overflow to +inf on loud audio (mel energy above ~6.55), which saturates the network;
    ``"float32"`` (default) computes the same compression in float32, identical to the original up
    to float16 rounding wherever the original does not overflow.
    """
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float32, device=wave.device)
    spec = torch.stft(
        wave.float(), N_FFT, HOP, window=window, center=True, pad_mode="constant", return_complex=True
    )
    power = spec.real.square() + spec.imag.square()  # (B, bins, frames)
    filters = slaney_mel_filterbank(SAMPLE_RATE, N_FFT, N_MELS).to(wave.device)
    mel = torch.einsum("mk,bkt->btm", filters, power)
    if front_end == "float32":
        return torch.log10(mel * 10000 + 1)
    if front_end != "original":
        raise ValueError(f"front_end={front_end!r}: choose 'float32' or 'original'")
    # The original casts to float16 and applies the compression in float16 (numpy rules).
    mel16 = mel.half()
    return torch.log10(mel16 * 10000 + 1).float()


def _relu(x: Tensor) -> Tensor:
    # TF's Relu maps NaN to 0 (it computes max(x, 0) with a comparison); F.relu would keep the NaN.
    # NaN appears when the float16 front end overflows to +inf (inf - inf inside a convolution).
    return torch.where(x > 0, x, torch.zeros_like(x))


def _bn(num: int, dims: int) -> nn.Module:
    return nn.BatchNorm2d(num, eps=BN_EPS) if dims == 2 else nn.BatchNorm1d(num, eps=BN_EPS)


class MusicnnNet(nn.Module):
    """The musicnn network with MSD_musicnn's sizes; input (B, 187, 96) log-mel patches."""

    def __init__(
        self, n_mels: int = N_MELS, num_classes: int = 50, midend: int = 64, backend: int = 200
    ) -> None:
        super().__init__()
        timbral_filters, temporal_filters = int(1.6 * 128), int(1.6 * 32)
        self.input_bn = _bn(1, 2)
        self.timbral = nn.ModuleList(
            [nn.Conv2d(1, timbral_filters, (7, int(f * n_mels))) for f in (0.4, 0.7)]
        )
        self.timbral_bn = nn.ModuleList([_bn(timbral_filters, 2) for _ in range(2)])
        self.temporal_kernels = (128, 64, 32)
        self.temporal = nn.ModuleList([nn.Conv2d(1, temporal_filters, (k, 1)) for k in self.temporal_kernels])
        self.temporal_bn = nn.ModuleList([_bn(temporal_filters, 2) for _ in range(3)])
        frontend_channels = 2 * timbral_filters + 3 * temporal_filters
        self.midend = nn.ModuleList(
            [nn.Conv1d(frontend_channels, midend, 7, padding=3)]
            + [nn.Conv1d(midend, midend, 7, padding=3) for _ in range(2)]
        )
        self.midend_bn = nn.ModuleList([_bn(midend, 1) for _ in range(3)])
        self.pool_channels = frontend_channels + 3 * midend
        self.pool_bn = _bn(2 * self.pool_channels, 1)
        self.dense = nn.Linear(2 * self.pool_channels, backend)
        self.dense_bn = _bn(backend, 1)
        self.classifier = nn.Linear(backend, num_classes)

    def forward(self, log_mel: Tensor) -> dict[str, Tensor]:
        """Return ``max_pool`` / ``mean_pool`` (B, 753), ``penultimate`` (B, 200), ``logits`` and ``taggram`` (B, 50)."""
        x = self.input_bn(log_mel.unsqueeze(1))  # (B, 1, T, M)
        features = []
        padded = F.pad(x, (0, 0, 3, 3))
        for conv, bn in zip(self.timbral, self.timbral_bn):
            features.append(bn(_relu(conv(padded))).amax(dim=3))
        for k, conv, bn in zip(self.temporal_kernels, self.temporal, self.temporal_bn):
            same = F.pad(x, (0, 0, (k - 1) // 2, k - 1 - (k - 1) // 2))  # TF 'same': extra pad at the end
            features.append(bn(_relu(conv(same))).amax(dim=3))
        frontend = torch.cat(features, dim=1)  # (B, 561, T)
        h = self.midend_bn[0](_relu(self.midend[0](frontend)))
        midend = [h]
        for conv, bn in zip(self.midend[1:], self.midend_bn[1:]):
            h = bn(_relu(conv(h))) + h
            midend.append(h)
        pooled_in = torch.cat([frontend, *midend], dim=1)  # (B, 753, T)
        max_pool = pooled_in.amax(dim=2)
        mean_pool = pooled_in.mean(dim=2)
        # TF flattens (B, 753, 2) [max, mean] row-major: the two poolings interleave per channel.
        flat = torch.stack([max_pool, mean_pool], dim=2).flatten(1)
        penultimate = self.dense_bn(_relu(self.dense(self.pool_bn(flat))))
        logits = self.classifier(penultimate)
        return {
            "max_pool": max_pool,
            "mean_pool": mean_pool,
            "penultimate": penultimate,
            "logits": logits,
            "taggram": torch.sigmoid(logits),
        }

    def load_tf_variables(self, variables: dict[str, np.ndarray]) -> None:
        """Load the TF1 variables of an MSD_musicnn / MTT_musicnn checkpoint (names as TF1 layers made them)."""

        def tensor(name: str) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(variables[name]))

        def conv2d(module: nn.Conv2d, tf_name: str) -> None:
            module.weight.data.copy_(tensor(f"{tf_name}/kernel").permute(3, 2, 0, 1))
            assert module.bias is not None
            module.bias.data.copy_(tensor(f"{tf_name}/bias"))

        def conv_full_width(module: nn.Conv1d, tf_name: str) -> None:
            # A (7, width) TF convolution over a 1-channel map == a Conv1d over `width` channels.
            module.weight.data.copy_(tensor(f"{tf_name}/kernel")[:, :, 0, :].permute(2, 1, 0))
            assert module.bias is not None
            module.bias.data.copy_(tensor(f"{tf_name}/bias"))

        def dense(module: nn.Linear, tf_name: str) -> None:
            module.weight.data.copy_(tensor(f"{tf_name}/kernel").T)
            module.bias.data.copy_(tensor(f"{tf_name}/bias"))

        def bn(module: nn.Module, tf_name: str) -> None:
            assert isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d)
            module.weight.data.copy_(tensor(f"{tf_name}/gamma"))
            module.bias.data.copy_(tensor(f"{tf_name}/beta"))
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.copy_(tensor(f"{tf_name}/moving_mean"))
            module.running_var.copy_(tensor(f"{tf_name}/moving_variance"))

        # TF1 numbers layers of one type in creation order: conv2d, conv2d_1, ...
        convs = [*self.timbral, *self.temporal]
        for i, module in enumerate(convs):
            conv2d(module, "conv2d" if i == 0 else f"conv2d_{i}")
        for j, module in enumerate(self.midend):
            assert isinstance(module, nn.Conv1d)
            conv_full_width(module, f"conv2d_{len(convs) + j}")
        bns = [
            self.input_bn,
            *self.timbral_bn,
            *self.temporal_bn,
            *self.midend_bn,
            self.pool_bn,
            self.dense_bn,
        ]
        for i, module in enumerate(bns):
            bn(module, "batch_normalization" if i == 0 else f"batch_normalization_{i}")
        dense(self.dense, "dense")
        dense(self.classifier, "dense_1")

    def float_state_dict(self) -> dict[str, Tensor]:
        """Every parameter and batch-norm running statistic (float32), without the batch counters.

        The counters (``num_batches_tracked``) are training bookkeeping that the TF1 checkpoints do
        not have; this is what :data:`MSD_MUSICNN_WEIGHTS` holds.
        """
        return {k: v.float().contiguous() for k, v in self.state_dict().items() if v.is_floating_point()}

    def load_float_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load a :meth:`float_state_dict` (e.g. read from :data:`MSD_MUSICNN_WEIGHTS`); every tensor must match."""
        result = self.load_state_dict(state, strict=False)
        missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"musicnn weights do not fit MusicnnNet: missing {missing}, unexpected "
                f"{list(result.unexpected_keys)}; reconvert them with tools/convert_musicnn.py"
            )


def musicnn_checkpoint_prefix(model: str = "MSD_musicnn") -> str:
    """The checkpoint prefix of ``model`` inside the installed ``musicnn`` wheel (a directory path ending in a separator).

    Only MTT_musicnn and other checkpoints need the wheel: MSD_musicnn ships with this package
    (:data:`MSD_MUSICNN_WEIGHTS`).
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("musicnn")
    except ImportError:  # an import hook that forbids the module counts as not installed
        spec = None
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"the musicnn wheel is not installed; it ships the {model} checkpoint. Install it without its "
            "TensorFlow dependency: pip install --no-deps musicnn==0.1.0"
        )
    prefix = Path(os.path.dirname(spec.origin)) / model
    if not (prefix / ".index").is_file():
        raise FileNotFoundError(f"{prefix}: no checkpoint '.index' in the musicnn wheel for model {model!r}")
    return str(prefix) + os.sep


class MusicnnEmbedder(Embedder):
    """FAD embedder: MSD_musicnn features of each 3 s patch (one embedding per patch).

    ``layer`` picks the representation: ``"max_pool"`` (753, default: the pooled front/mid-end
    features before the tag-specific layers), ``"mean_pool"`` (753), ``"penultimate"`` (200) or
    ``"taggram"`` (50 tag probabilities). ``front_end`` as in :func:`musicnn_log_mel`. ``model``
    picks the weights: ``"MSD_musicnn"`` (Million Song Dataset tags, :data:`MSD_TAGS`, default;
    shipped with this package, :data:`MSD_MUSICNN_WEIGHTS`) or ``"MTT_musicnn"`` (MagnaTagATune,
    :data:`MTT_TAGS`; same architecture; read from the ``musicnn`` wheel, which must be installed).
    ``checkpoint`` overrides either with the prefix of a TF1 checkpoint of the same network.
    """

    sample_rate = SAMPLE_RATE
    window_samples = (PATCH_FRAMES - 1) * HOP
    hop_samples = PATCH_FRAMES * HOP

    def __init__(
        self,
        layer: MusicnnLayer = "max_pool",
        *,
        front_end: MusicnnFrontEnd = "float32",
        model: MusicnnModel = "MSD_musicnn",
        checkpoint: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if front_end not in ("float32", "original"):
            raise ValueError(f"front_end={front_end!r}: choose 'float32' or 'original'")
        if model not in ("MSD_musicnn", "MTT_musicnn"):
            raise ValueError(f"model={model!r}: choose 'MSD_musicnn' or 'MTT_musicnn'")
        self.front_end = front_end
        self.model = model
        self.tags = MSD_TAGS if model == "MSD_musicnn" else MTT_TAGS
        if layer not in ("max_pool", "mean_pool", "penultimate", "taggram"):
            raise ValueError(f"layer={layer!r}: choose one of max_pool, mean_pool, penultimate, taggram")
        self.layer = layer
        self.name = f"musicnn-{model.split('_')[0]}-{layer}" + ("-f16" if front_end == "original" else "")
        self.embedding_dim = {"max_pool": 753, "mean_pool": 753, "penultimate": 200, "taggram": 50}[layer]
        self.net = MusicnnNet()
        if checkpoint is None and model == "MSD_musicnn":
            self.net.load_float_state_dict(_shipped_msd_weights())
        else:
            prefix = musicnn_checkpoint_prefix(model) if checkpoint is None else checkpoint
            self.net.load_tf_variables(_read_weights(str(prefix)))
        self.net.eval().requires_grad_(False)

    def patches(self, wave: Tensor) -> Tensor:
        """(B, N) audio -> (B, P, 187, 96) consecutive log-mel patches, as musicnn's ``batch_data``."""
        log_mel = musicnn_log_mel(wave, self.front_end)
        num_patches = log_mel.shape[1] // PATCH_FRAMES
        if num_patches == 0:
            raise ValueError(
                f"audio of {wave.shape[-1]} samples is shorter than one musicnn patch "
                f"({self.window_samples} samples = 3 s at 16 kHz); pass longer clips"
            )
        return log_mel[:, : num_patches * PATCH_FRAMES].unflatten(1, (num_patches, PATCH_FRAMES))

    @torch.no_grad()
    def outputs(self, wave: Tensor) -> dict[str, Tensor]:
        """Every output of the network for (B, N) 16 kHz audio, each (B, P, ...) with one row per patch."""
        wave = self._check_wave(wave)
        patches = self.patches(wave)
        return {k: v.unflatten(0, patches.shape[:2]) for k, v in self.net(patches.flatten(0, 1)).items()}

    def forward(self, wave: Tensor) -> Tensor:
        """(B, N) 16 kHz audio -> (B, P, D) embeddings, one per 3 s patch."""
        return self.outputs(wave)[self.layer]


def _tf_variable_names() -> list[str]:
    names = [f"conv2d{'' if i == 0 else f'_{i}'}/{p}" for i in range(8) for p in ("kernel", "bias")]
    names += [
        f"batch_normalization{'' if i == 0 else f'_{i}'}/{p}"
        for i in range(11)
        for p in ("gamma", "beta", "moving_mean", "moving_variance")
    ]
    names += [f"dense{s}/{p}" for s in ("", "_1") for p in ("kernel", "bias")]
    return names


_TF_NAMES = _tf_variable_names()


@functools.lru_cache(maxsize=1)
def _shipped_msd_weights() -> dict[str, Tensor]:
    # Read once per process; load_state_dict copies, so sharing is safe.
    from safetensors.torch import load_file

    if not MSD_MUSICNN_WEIGHTS.is_file():
        raise FileNotFoundError(
            f"{MSD_MUSICNN_WEIGHTS}: the MSD_musicnn weights are missing from this stemforge-metrics "
            "installation; reinstall the package (pip install --force-reinstall stemforge-metrics)"
        )
    return load_file(MSD_MUSICNN_WEIGHTS)


@functools.lru_cache(maxsize=4)
def _read_weights(prefix: str) -> dict[str, np.ndarray]:
    # Read (and CRC-checked) once per process; load_tf_variables copies, so sharing is safe.
    return read_tf_checkpoint(prefix, _TF_NAMES)
