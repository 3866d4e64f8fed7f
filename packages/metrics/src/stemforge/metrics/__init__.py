"""FAD (float64, FAD-infinity), embedders, SI-SDRi (MSDM protocol), Mel-MSE, multi-resolution STFT and MIDI metrics as torchmetrics Metrics."""

from stemforge.metrics.__about__ import __version__
from stemforge.metrics.embedder import Embedder
from stemforge.metrics.frechet import (
    FADInfinityResult,
    FADScore,
    FrechetAudioDistance,
    GaussianStats,
    fad_infinity,
    fad_per_file,
    frechet_distance,
    gaussian_stats,
)
from stemforge.metrics.musicnn import (
    MSD_TAGS,
    MusicnnEmbedder,
    MusicnnNet,
    musicnn_checkpoint_prefix,
    musicnn_log_mel,
    slaney_mel_filterbank,
)
from stemforge.metrics.sisdr import SISDRi, SISDRiWindows, is_silent, si_sdr, si_sdri_windows
from stemforge.metrics.tf_checkpoint import TFTensorEntry, crc32c, list_tf_checkpoint, read_tf_checkpoint

__all__ = [
    "MSD_TAGS",
    "Embedder",
    "FADInfinityResult",
    "FADScore",
    "FrechetAudioDistance",
    "GaussianStats",
    "MusicnnEmbedder",
    "MusicnnNet",
    "SISDRi",
    "SISDRiWindows",
    "TFTensorEntry",
    "__version__",
    "crc32c",
    "fad_infinity",
    "fad_per_file",
    "frechet_distance",
    "gaussian_stats",
    "is_silent",
    "list_tf_checkpoint",
    "musicnn_checkpoint_prefix",
    "musicnn_log_mel",
    "read_tf_checkpoint",
    "si_sdr",
    "si_sdri_windows",
    "slaney_mel_filterbank",
]
