"""The ``midirenderer`` backend of the SoundFont renderer: one MIDI track in, one mono stem out.

midirenderer (MIT licence, a binary wheel with no dependencies) wraps a Rust SoundFont synthesiser
behind one function, ``render_wave_from(soundfont_bytes, midi_bytes) -> WAV bytes``: 16-bit stereo
PCM at 48 kHz that lasts until the last MIDI event. So each track is written as a one-track MIDI
file (pretty_midi) whose clock ticks once per 48 kHz sample (24000 ticks per beat at 120 BPM), with
an end marker at the end of the release tail; the WAV is averaged to mono (as ``read_audio`` does),
resampled to the output rate with :func:`stemforge.data.resample` and cut to the requested length.

The synthesiser does not list the SoundFont's presets, so they are read here from the file's
preset headers (the ``phdr`` chunk of SoundFont 2.04, section 7.2).
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pretty_midi
import soundfile
import torch

from stemforge.data.render import DRUM_BANK, MIDIRENDERER_MISSING, RenderError
from stemforge.data.resample import resample

#: The rate midirenderer synthesises at; the MIDI clock below ticks once per sample of it.
NATIVE_RATE = 48000
_TEMPO = 120.0
_TICKS_PER_BEAT = round(NATIVE_RATE * 60 / _TEMPO)  # 24000: one tick per 48 kHz sample
_PHDR_RECORD = 38  # bytes per preset header (SoundFont 2.04, 7.2)


class SoundFontReadError(ValueError):
    """A file whose preset headers cannot be read as SoundFont 2."""


def _chunks(data: bytes, start: int, end: int):
    """(id, payload start, payload end) of the RIFF chunks in ``data[start:end]`` (word aligned)."""
    pos = start
    while pos + 8 <= end:
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if body + size > end:
            raise SoundFontReadError(f"chunk {chunk_id!r} runs past the end of the file")
        yield chunk_id, body, body + size
        pos = body + size + (size & 1)


def soundfont_presets(data: bytes) -> dict[tuple[int, int], str]:
    """``{(bank, program): name}`` of every preset of a SoundFont 2 file's bytes."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
        raise SoundFontReadError("no RIFF/sfbk header")
    for chunk_id, body, end in _chunks(data, 12, len(data)):
        if chunk_id != b"LIST" or data[body : body + 4] != b"pdta":
            continue
        for sub_id, sub_body, sub_end in _chunks(data, body + 4, end):
            if sub_id != b"phdr":
                continue
            count = (sub_end - sub_body) // _PHDR_RECORD
            presets: dict[tuple[int, int], str] = {}
            for index in range(count - 1):  # the last record is the terminal "EOP"
                offset = sub_body + index * _PHDR_RECORD
                raw_name, program, bank = struct.unpack_from("<20sHH", data, offset)
                name = raw_name.split(b"\0", 1)[0].decode("latin-1").strip()
                presets.setdefault((bank, program), name)
            return presets
    raise SoundFontReadError("no preset headers (pdta/phdr chunk)")


class MidiRendererSynth:
    """One SoundFont rendered by midirenderer, resampled to mono float32 at ``sample_rate``."""

    backend = "midirenderer"

    def __init__(self, path: Path, sample_rate: int) -> None:
        try:
            import midirenderer
        except ImportError as err:
            raise RenderError(MIDIRENDERER_MISSING) from err
        self._render_wave = midirenderer.render_wave_from
        self._data = path.read_bytes()
        self.path = path
        self.sample_rate = int(sample_rate)
        try:
            self._presets = soundfont_presets(self._data)
        except SoundFontReadError as err:
            raise RenderError(
                f"{path}: cannot read the SoundFont's presets ({err}); give a .sf2 file"
            ) from err

    def has_preset(self, bank: int, program: int) -> bool:
        return (bank, program) in self._presets

    def preset_name(self, bank: int, program: int) -> str:
        return self._presets.get((bank, program), "")

    def available(self, is_drum: bool) -> list[int]:
        bank = DRUM_BANK if is_drum else 0
        return [p for p in range(128) if (bank, p) in self._presets]

    def midi_bytes(self, instrument: pretty_midi.Instrument, program: int, num_samples: int) -> bytes:
        """``instrument`` alone with ``program``, as a standard MIDI file that lasts ``num_samples``."""
        midi = pretty_midi.PrettyMIDI(resolution=_TICKS_PER_BEAT, initial_tempo=_TEMPO)
        track = pretty_midi.Instrument(program=program, is_drum=instrument.is_drum, name=instrument.name)
        tick = 1 / NATIVE_RATE
        # A note-off on the tick of its note-on may be sorted before it (a stuck note): give every
        # note at least two ticks, as the tinysoundfont backend gives it at least one sample.
        track.notes = [
            pretty_midi.Note(n.velocity, n.pitch, n.start, max(n.end, n.start + 2 * tick))
            for n in instrument.notes
        ]
        track.pitch_bends = list(instrument.pitch_bends)
        track.control_changes = list(instrument.control_changes)
        midi.instruments.append(track)
        # The synthesiser stops at the last event: an end marker keeps the release tail.
        midi.text_events.append(pretty_midi.Text("end", num_samples / self.sample_rate))
        buffer = io.BytesIO()
        midi.write(buffer)
        return buffer.getvalue()

    def render(self, instrument: pretty_midi.Instrument, program: int, num_samples: int) -> np.ndarray:
        """Render one MIDI track with ``program`` into a (num_samples,) float32 array."""
        midi = self.midi_bytes(instrument, program, num_samples)
        try:
            wav = self._render_wave(self._data, midi)
            wave, rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
        except (ValueError, RuntimeError, soundfile.LibsndfileError) as err:
            raise RenderError(f"{self.path}: midirenderer cannot render with this SoundFont ({err})") from err
        mono = torch.from_numpy(wave.mean(axis=1))
        if rate != self.sample_rate:
            mono = resample(mono, rate, self.sample_rate)
        out = np.zeros(num_samples, dtype=np.float32)
        count = min(num_samples, mono.shape[-1])
        out[:count] = mono[:count].numpy()
        return out
