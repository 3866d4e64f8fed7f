"""FAD (float64, FAD-infinity), embedders, SI-SDRi (MSDM protocol), Mel-MSE, multi-resolution STFT and MIDI metrics (and a timbre distance) as torchmetrics Metrics."""

from stemforge.metrics.__about__ import __version__
from stemforge.metrics.arrangement import SubMixtureFAD, arrangement_subsets, submixture
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
from stemforge.metrics.mel_mse import MelMSE, mel_mse
from stemforge.metrics.midi_consistency import onset_roll, pitch_class_consistency, rhythm_consistency
from stemforge.metrics.midi_notes import NoteScores, note_scores, notes_from_roll
from stemforge.metrics.musicnn import (
    MSD_MUSICNN_WEIGHTS,
    MSD_TAGS,
    MTT_TAGS,
    MusicnnEmbedder,
    MusicnnFrontEnd,
    MusicnnLayer,
    MusicnnModel,
    MusicnnNet,
    musicnn_checkpoint_prefix,
    musicnn_log_mel,
    slaney_mel_filterbank,
)
from stemforge.metrics.nll import CoconetNLL, coconet_nll
from stemforge.metrics.satb import SATB_RANGES, parallel_fifths_octaves, voice_range_violations
from stemforge.metrics.sisdr import SISDRi, SISDRiWindows, is_silent, si_sdr, si_sdri_windows
from stemforge.metrics.stft import (
    PWG_RESOLUTIONS,
    MultiResolutionSTFTDistance,
    multi_resolution_stft_distance,
)
from stemforge.metrics.tf_checkpoint import TFTensorEntry, crc32c, list_tf_checkpoint, read_tf_checkpoint
from stemforge.metrics.timbre import dct_matrix, mean_mfcc, timbre_distance
from stemforge.metrics.vggish import VGGishEmbedder, VGGishNet, vggish_log_mel

__all__ = [
    "MSD_MUSICNN_WEIGHTS",
    "MSD_TAGS",
    "MTT_TAGS",
    "PWG_RESOLUTIONS",
    "SATB_RANGES",
    "CoconetNLL",
    "Embedder",
    "FADInfinityResult",
    "FADScore",
    "FrechetAudioDistance",
    "GaussianStats",
    "MelMSE",
    "MultiResolutionSTFTDistance",
    "MusicnnEmbedder",
    "MusicnnFrontEnd",
    "MusicnnLayer",
    "MusicnnModel",
    "MusicnnNet",
    "NoteScores",
    "SISDRi",
    "SISDRiWindows",
    "SubMixtureFAD",
    "TFTensorEntry",
    "VGGishEmbedder",
    "VGGishNet",
    "__version__",
    "arrangement_subsets",
    "coconet_nll",
    "crc32c",
    "dct_matrix",
    "fad_infinity",
    "fad_per_file",
    "frechet_distance",
    "gaussian_stats",
    "is_silent",
    "list_tf_checkpoint",
    "mean_mfcc",
    "mel_mse",
    "multi_resolution_stft_distance",
    "musicnn_checkpoint_prefix",
    "musicnn_log_mel",
    "note_scores",
    "notes_from_roll",
    "onset_roll",
    "parallel_fifths_octaves",
    "pitch_class_consistency",
    "read_tf_checkpoint",
    "rhythm_consistency",
    "si_sdr",
    "si_sdri_windows",
    "slaney_mel_filterbank",
    "submixture",
    "timbre_distance",
    "vggish_log_mel",
    "voice_range_violations",
]
