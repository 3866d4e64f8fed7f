"""Composed stemforge models as a tensor-level Python API: ``MultiTrackPipeline`` (separate,
generate, arrange, insert, accompany; any length), ``VoiceInsertionPipeline`` (MIDI insertion, NLL)
and one on-disk pipeline format."""

from stemforge.pipelines.__about__ import __version__
from stemforge.pipelines.chunked import ChunkOptions, OutputChecks, limit_mix
from stemforge.pipelines.chunking import chunk_plan, crossfade_weights, run_chunked, run_continued
from stemforge.pipelines.errors import PipelineError
from stemforge.pipelines.format import FORMAT, FORMAT_VERSION, PIPELINE_KINDS, folder_kind
from stemforge.pipelines.loading import AudioModel, load_audio_model
from stemforge.pipelines.msgld import load_msgld_checkpoint
from stemforge.pipelines.multitrack import MAX_GENERATE_SECONDS, MultiTrackPipeline
from stemforge.pipelines.progress import Reporter, SilentReporter
from stemforge.pipelines.sampling import SamplingOptions
from stemforge.pipelines.style_unet import StyleConditionedUNet
from stemforge.pipelines.voice import VoiceInsertion, VoiceInsertionPipeline
from stemforge.pipelines.voice_model import VoiceInsertionModel, VoiceModelConfig

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_GENERATE_SECONDS",
    "PIPELINE_KINDS",
    "AudioModel",
    "ChunkOptions",
    "MultiTrackPipeline",
    "OutputChecks",
    "PipelineError",
    "Reporter",
    "SamplingOptions",
    "SilentReporter",
    "StyleConditionedUNet",
    "VoiceInsertion",
    "VoiceInsertionModel",
    "VoiceInsertionPipeline",
    "VoiceModelConfig",
    "__version__",
    "chunk_plan",
    "crossfade_weights",
    "folder_kind",
    "limit_mix",
    "load_audio_model",
    "load_msgld_checkpoint",
    "run_chunked",
    "run_continued",
]
