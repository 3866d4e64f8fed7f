"""Reading and writing Standard MIDI files with validation.

``load_midi`` wraps :class:`pretty_midi.PrettyMIDI` so that every kind of bad input (missing, empty,
truncated or non-MIDI file, a file without notes, absurd tempos, a file too large to be music)
fails with a :class:`MidiError` that names the file, the problem and the fix, instead of an
exception from deep inside mido. ``write_midi`` writes to a temporary file and renames it, so a
failure never leaves a half-written file.
"""

from __future__ import annotations

import io
import os
import uuid
import warnings
from pathlib import Path

import pretty_midi

#: Tempos outside this range (beats per minute) are rejected as corrupt.
MIN_TEMPO_BPM = 4.0
MAX_TEMPO_BPM = 1000.0
#: Files larger than this are rejected unless ``max_bytes`` is raised (the largest Lakh MIDI file is ~1 MB).
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: Pieces longer than this (seconds) are rejected unless ``max_seconds`` is raised.
DEFAULT_MAX_SECONDS = 3 * 3600.0


class MidiError(ValueError):
    """A MIDI file or MIDI object that stemforge cannot use; the message names the file and the fix."""


def _describe(source: str | os.PathLike[str] | bytes) -> str:
    return "<bytes>" if isinstance(source, bytes | bytearray) else str(source)


def load_midi(
    source: str | os.PathLike[str] | bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    require_notes: bool = True,
) -> pretty_midi.PrettyMIDI:
    """Load a Standard MIDI file (path or bytes) and validate it.

    Raises :class:`MidiError` for a missing, empty, oversized, truncated or non-MIDI file, a file
    with no notes (unless ``require_notes=False``), tempos outside
    [``MIN_TEMPO_BPM``, ``MAX_TEMPO_BPM``] or a piece longer than ``max_seconds``.
    """
    name = _describe(source)
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise MidiError(f"{name}: no such MIDI file; check the path")
        size = path.stat().st_size
        if size > max_bytes:
            raise MidiError(
                f"{name}: file is {size} bytes, more than max_bytes={max_bytes}; "
                "this is unlikely to be a music MIDI file (raise max_bytes if it is)"
            )
        data = path.read_bytes()
    if len(data) == 0:
        raise MidiError(f"{name}: file is empty; give a Standard MIDI file (.mid)")
    if len(data) > max_bytes:
        raise MidiError(f"{name}: {len(data)} bytes, more than max_bytes={max_bytes}")
    if data[:4] != b"MThd":
        raise MidiError(f"{name}: not a Standard MIDI file (it does not start with 'MThd'); give a .mid file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            midi = pretty_midi.PrettyMIDI(io.BytesIO(data))
    except Exception as err:  # mido raises EOFError, OSError, KeyError, ValueError ...
        raise MidiError(
            f"{name}: the MIDI data is truncated or corrupt ({type(err).__name__}: {err})"
        ) from err
    check_midi(midi, name=name, max_seconds=max_seconds, require_notes=require_notes)
    return midi


def check_midi(
    midi: pretty_midi.PrettyMIDI,
    *,
    name: str = "<midi>",
    max_seconds: float = DEFAULT_MAX_SECONDS,
    require_notes: bool = True,
) -> None:
    """Validate a loaded MIDI object: notes present, sane tempos, bounded length."""
    _, tempi = midi.get_tempo_changes()
    for bpm in tempi:
        if not (MIN_TEMPO_BPM <= bpm <= MAX_TEMPO_BPM):
            raise MidiError(
                f"{name}: tempo {bpm:.3g} BPM is outside [{MIN_TEMPO_BPM}, {MAX_TEMPO_BPM}]; "
                "the file's tempo events are corrupt (fix them in a MIDI editor)"
            )
    n_notes = sum(len(inst.notes) for inst in midi.instruments)
    if require_notes and n_notes == 0:
        raise MidiError(f"{name}: the file has no notes; give a MIDI file with at least one note")
    end = midi.get_end_time()
    if end > max_seconds:
        raise MidiError(
            f"{name}: the piece lasts {end:.0f} s, more than max_seconds={max_seconds:.0f}; "
            "split it or raise max_seconds"
        )


def write_midi(midi: pretty_midi.PrettyMIDI, path: str | os.PathLike[str]) -> Path:
    """Write ``midi`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        midi.write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
