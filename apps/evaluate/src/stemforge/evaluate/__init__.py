"""stemforge-evaluate: the papers' evaluation protocols on any stemforge pipeline folder, sharded
across processes with accelerate and resumable."""

from stemforge.evaluate.__about__ import __version__
from stemforge.evaluate.fad import FadOptions
from stemforge.evaluate.midi import MidiSettings, coconet_ranks, run_midi
from stemforge.evaluate.runner import EvaluationError, ItemStore, Shard
from stemforge.evaluate.separation import SeparationSettings, run_separation
from stemforge.evaluate.subtractive import SubtractiveSettings, run_subtractive
from stemforge.evaluate.testset import TestSetError, Track, slakh_tracks, stem_folder_tracks

__all__ = [
    "EvaluationError",
    "FadOptions",
    "ItemStore",
    "MidiSettings",
    "SeparationSettings",
    "Shard",
    "SubtractiveSettings",
    "TestSetError",
    "Track",
    "__version__",
    "coconet_ranks",
    "run_midi",
    "run_separation",
    "run_subtractive",
    "slakh_tracks",
    "stem_folder_tracks",
]
