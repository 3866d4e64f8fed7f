"""Multi-track MIDI <-> piano-roll tensors, categorical voices, stem grouping, the JSB chorales, pieces
read onto a voice model's stems and the counterpoint constraints of symbolic decoding."""

from stemforge.midi.__about__ import __version__
from stemforge.midi.constraints import NoParallelsModel, parallel_ban
from stemforge.midi.grouping import (
    DEFAULT_STEMS,
    DRUMS_CLASS,
    GM_FAMILIES,
    StemMap,
    family_programs,
    group_instruments,
    instrument_class,
)
from stemforge.midi.io import MidiError, check_midi, load_midi, write_midi
from stemforge.midi.jsb import JSB_PROGRAMS, JSB_SPLITS, JSB_STEMS, jsb_midi, load_jsb, load_jsb_splits
from stemforge.midi.music21_corpus import iter_music21_corpus, music21_corpus_paths, music21_to_midi
from stemforge.midi.roll import MAX_STEPS, PianoRoll, TempoMap, midi_to_roll, notes_on_grid, roll_to_midi
from stemforge.midi.song import STEPS_PER_QUARTER, VoiceSong, check_context, read_voice_song, song_with_voices
from stemforge.midi.voice_map import REGISTER_VOICES, VoiceMapping, map_tracks_to_voices, parse_voice_map
from stemforge.midi.voices import NUM_CLASSES, REST, roll_to_voices, voices_to_midi, voices_to_roll

__all__ = [
    "DEFAULT_STEMS",
    "DRUMS_CLASS",
    "GM_FAMILIES",
    "JSB_PROGRAMS",
    "JSB_SPLITS",
    "JSB_STEMS",
    "MAX_STEPS",
    "NUM_CLASSES",
    "REGISTER_VOICES",
    "REST",
    "STEPS_PER_QUARTER",
    "MidiError",
    "NoParallelsModel",
    "PianoRoll",
    "StemMap",
    "TempoMap",
    "VoiceMapping",
    "VoiceSong",
    "__version__",
    "check_context",
    "check_midi",
    "family_programs",
    "group_instruments",
    "instrument_class",
    "iter_music21_corpus",
    "jsb_midi",
    "load_jsb",
    "load_jsb_splits",
    "load_midi",
    "map_tracks_to_voices",
    "midi_to_roll",
    "music21_corpus_paths",
    "music21_to_midi",
    "notes_on_grid",
    "parallel_ban",
    "parse_voice_map",
    "read_voice_song",
    "roll_to_midi",
    "roll_to_voices",
    "song_with_voices",
    "voices_to_midi",
    "voices_to_roll",
    "write_midi",
]
