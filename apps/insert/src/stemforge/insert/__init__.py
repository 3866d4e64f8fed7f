"""stemforge-insert: separate, generate, arrange and insert stems in audio and MIDI from the command line, on any length."""

from stemforge.insert.__about__ import __version__
from stemforge.insert.audio_commands import (
    InputOptions,
    parse_given,
    run_accompany,
    run_arrange,
    run_generate,
    run_insert_audio,
    run_separate,
)
from stemforge.insert.baselines import most_frequent_pitch, voice_leading, voice_statistics
from stemforge.insert.embedded import demo_audio_checkpoint, example_chorale, jsb_checkpoint
from stemforge.insert.errors import InsertError
from stemforge.insert.midi_command import insert_midi_stems
from stemforge.insert.pianoroll_png import save_pianoroll_png
from stemforge.insert.preview import render_preview
from stemforge.insert.progress import Reporter
from stemforge.pipelines import (
    AudioModel,
    ChunkOptions,
    SamplingOptions,
    chunk_plan,
    crossfade_weights,
    load_audio_model,
    run_chunked,
    run_continued,
)

__all__ = [
    "AudioModel",
    "ChunkOptions",
    "InputOptions",
    "InsertError",
    "Reporter",
    "SamplingOptions",
    "__version__",
    "chunk_plan",
    "crossfade_weights",
    "demo_audio_checkpoint",
    "example_chorale",
    "insert_midi_stems",
    "jsb_checkpoint",
    "load_audio_model",
    "most_frequent_pitch",
    "parse_given",
    "render_preview",
    "run_accompany",
    "run_arrange",
    "run_chunked",
    "run_continued",
    "run_generate",
    "run_insert_audio",
    "run_separate",
    "save_pianoroll_png",
    "voice_leading",
    "voice_statistics",
]
