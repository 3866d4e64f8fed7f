"""The two synthesisers behind ``render_midi``: midirenderer on a real chorale, the choice of
``backend="auto"`` (in real processes where a backend cannot be imported), the backend recorded in
the metadata, and tinysoundfont's output unchanged against the shipped fixture chorale."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import yaml

from stemforge.data import (
    RenderConfig,
    SlakhFormatError,
    available_backends,
    render_jsb,
    render_midi,
    renderer_problem,
    resolve_backend,
)
from stemforge.midi import JSB_PROGRAMS, JSB_STEMS, jsb_midi, load_jsb, load_midi, voices_to_midi

ROOT = Path(__file__).resolve().parents[3]
SR = 16000
#: JSB valid[50]: alto, tenor and bass rest for 1.8 s (5.4-7.2 s at 100 BPM) while the soprano sings.
CHORALE = ("valid", 50)


def _rms_db(wave: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(wave.astype(np.float64) ** 2)) + 1e-12))


def _middle(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    """The middle half of [start, end] seconds: away from the attack and the release."""
    quarter = (end - start) / 4
    return audio[int((start + quarter) * SR) : int((end - quarter) * SR)]


@pytest.fixture(scope="module")
def chorale() -> pretty_midi.PrettyMIDI:
    return jsb_midi(*CHORALE)


@pytest.fixture(scope="module")
def midirenderer_track(chorale):
    return render_midi(
        chorale, config=RenderConfig(sample_rate=SR, program_policy="keep", backend="midirenderer")
    )


def test_midirenderer_track_has_the_slakh_layout(midirenderer_track, chorale):
    track = midirenderer_track
    assert track.backend == "midirenderer" and track.backend_version == version("midirenderer")
    assert [s.preset_name for s in track.stems] == ["Flute TB", "Oboe (Orch)", "Clarinet", "Bassoon"]
    assert track.num_samples == int(np.ceil((chorale.get_end_time() + 1.0) * SR))
    for stem in track.stems:
        assert stem.audio is not None and stem.audio.dtype == np.float32 and stem.audio.ndim == 1
        assert np.isfinite(stem.audio).all()
    # Same loudness recipe as with tinysoundfont: equal stems, mix peak at -1 dBFS.
    peak_db = 20 * np.log10(np.abs(track.mix()).max())
    assert -1.05 < peak_db < -1.0


def test_midirenderer_stems_sound_where_there_are_notes(midirenderer_track):
    for stem in midirenderer_track.stems:
        stem_db = _rms_db(stem.audio)
        notes = [n for n in stem.instrument.notes if n.end - n.start >= 0.1]
        assert len(notes) > 30
        # Every note sounds at a level close to the stem's (-24 to -16 dBFS here, stems at -20).
        quietest = min(_rms_db(_middle(stem.audio, n.start, n.end)) for n in notes)
        assert quietest > stem_db - 12, (stem.stem_name, quietest, stem_db)


def test_midirenderer_stems_are_silent_where_they_rest(midirenderer_track):
    by_name = {s.stem_name: s for s in midirenderer_track.stems}
    for name in ("alto", "tenor", "bass"):
        stem = by_name[name]
        notes = sorted(stem.instrument.notes, key=lambda n: n.start)
        before, after = next((a, b) for a, b in pairwise(notes) if b.start - a.end > 1.5)
        assert before.end == pytest.approx(5.4) and after.start == pytest.approx(7.2)
        # The release and reverb of the last note fade within ~1.3 s; the resampler's filter
        # reaches ~4 ms before the next onset: look at 0.4 s just before it, 50 ms of margin.
        rest = stem.audio[int((after.start - 0.45) * SR) : int((after.start - 0.05) * SR)]
        assert _rms_db(rest) < _rms_db(stem.audio) - 60, name
        soprano = by_name["soprano"].audio[int((after.start - 0.45) * SR) : int((after.start - 0.05) * SR)]
        assert _rms_db(soprano) > _rms_db(by_name["soprano"].audio) - 12  # the soprano sings on


@pytest.mark.parametrize("voice", ["soprano", "tenor"])
def test_midirenderer_note_has_the_pitch_of_its_midi_note(midirenderer_track, voice):
    """The dominant frequency of a long note is its MIDI pitch's (flute and clarinet, whose
    fundamental is their strongest partial; TimGM6mb's oboe and bassoon peak on a harmonic).
    1.5 % is a quarter of a semitone: a wrong resampling ratio or a transposition fails it."""
    stem = next(s for s in midirenderer_track.stems if s.stem_name == voice)
    note = max(stem.instrument.notes, key=lambda n: n.end - n.start)
    assert note.end - note.start > 1.5
    segment = _middle(stem.audio, note.start, note.end).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(segment.size), n=1 << 18))
    dominant = np.fft.rfftfreq(1 << 18, 1 / SR)[spectrum.argmax()]
    expected = pretty_midi.note_number_to_hz(note.pitch)
    assert abs(dominant / expected - 1) < 0.015, (dominant, expected)


def test_midirenderer_is_deterministic_and_draws_presets_it_has():
    band = load_midi(ROOT / "tests" / "fixtures" / "midi" / "band_tempo_changes.mid")
    config = RenderConfig(sample_rate=22050, backend="midirenderer")
    a, b = render_midi(band, config=config, seed=4), render_midi(band, config=config, seed=4)
    for sa, sb in zip(a.stems, b.stems):
        assert sa.program == sb.program and sa.preset_name  # a preset of the SoundFont, by its name
        np.testing.assert_array_equal(sa.audio, sb.audio)
    drums = a.stems[0]
    assert drums.is_drum and np.abs(drums.audio[: 22050 // 2]).max() > 0.05  # the kit plays at once


def test_backend_is_recorded_and_resuming_compares_it(tmp_path):
    config = RenderConfig(sample_rate=SR, program_policy="keep", backend="midirenderer")
    (path,) = render_jsb(tmp_path, "test", limit=1, config=config)
    render = yaml.safe_load((path / "metadata.yaml").read_text())["render"]
    assert render["backend"] == "midirenderer" and render["backend_version"] == version("midirenderer")
    stamp = (path / "mix.flac").stat().st_mtime_ns
    render_jsb(tmp_path, "test", limit=1, config=config, existing="skip")  # same backend: kept
    assert (path / "mix.flac").stat().st_mtime_ns == stamp
    if "tinysoundfont" in available_backends():  # another synthesiser is another setting
        other = RenderConfig(sample_rate=SR, program_policy="keep", backend="tinysoundfont")
        with pytest.raises(SlakhFormatError, match="other render settings"):
            render_jsb(tmp_path, "test", limit=1, config=other, existing="skip")


def test_bad_backend_name_is_refused():
    with pytest.raises(
        ValueError, match="backend='fluidsynth'; use 'auto', 'tinysoundfont' or 'midirenderer'"
    ):
        RenderConfig(backend="fluidsynth")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend='sfz'"):
        renderer_problem("sfz")  # type: ignore[arg-type]


def test_auto_backend_picks_tinysoundfont_when_it_is_installed():
    pytest.importorskip("tinysoundfont")
    assert available_backends() == ("tinysoundfont", "midirenderer")
    assert resolve_backend("auto") == "tinysoundfont" and renderer_problem() is None
    track = render_midi(jsb_midi("test", 0), config=RenderConfig(program_policy="keep"))
    assert track.backend == "tinysoundfont"


#: Runs in a fresh interpreter where the top-level modules in argv[1] (comma-separated) cannot be
#: imported, as when their wheels are not installed, and prints what the renderer decides.
PROBE = """
import json, sys

blocked = set(filter(None, sys.argv[1].split(",")))


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"No module named {name!r} (blocked)")
        return None


sys.meta_path.insert(0, Blocker())
from stemforge.data import RenderConfig, RenderError, available_backends, render_midi, renderer_problem
from stemforge.midi import jsb_midi

report = {"available": list(available_backends()), "problem": renderer_problem()}
report["explicit"] = {b: renderer_problem(b) for b in ("tinysoundfont", "midirenderer")}
for backend in ("auto", "tinysoundfont", "midirenderer"):
    try:
        track = render_midi(jsb_midi("test", 0), config=RenderConfig(program_policy="keep", backend=backend))
        report[backend] = [track.backend, float(abs(track.mix()).max())]
    except RenderError as err:
        report[backend] = str(err)
print(json.dumps(report))
"""


def _probe(blocked: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, blocked], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_auto_backend_falls_back_to_midirenderer_without_tinysoundfont():
    report = _probe("tinysoundfont")
    assert report["available"] == ["midirenderer"] and report["problem"] is None
    assert report["auto"][0] == "midirenderer" and report["auto"][1] > 0.5  # rendered, mix near -1 dBFS
    assert report["midirenderer"][0] == "midirenderer"
    # Asking for the missing one by name says how to install it.
    assert "pip install --no-deps tinysoundfont==0.3.7" in report["tinysoundfont"]
    assert report["explicit"] == {"tinysoundfont": report["tinysoundfont"], "midirenderer": None}


def test_no_backend_at_all_is_one_problem_naming_both_fixes():
    report = _probe("tinysoundfont,midirenderer")
    assert report["available"] == []
    problem = report["problem"]
    assert problem.startswith("no SoundFont renderer is installed")
    assert "pip install 'midirenderer>=0.1.3,<0.2'" in problem and "tinysoundfont==0.3.7" in problem
    assert report["auto"] == problem
    assert report["midirenderer"].startswith("midirenderer is not installed")


def test_tinysoundfont_output_is_unchanged_against_the_shipped_fixture():
    """tests/fixtures/audio/chorale_16k was rendered by tinysoundfont (tests/fixtures/make_fixtures.py);
    the same recipe gives the same 16-bit stems, sample for sample."""
    pytest.importorskip("tinysoundfont")
    tokens = load_jsb("train")[0][:, :64]
    midi = voices_to_midi(tokens, JSB_STEMS, JSB_PROGRAMS, steps_per_quarter=4, bpm=88.0)
    config = RenderConfig(sample_rate=SR, program_policy="keep", backend="tinysoundfont")
    track = render_midi(midi, config=config, seed=0, stem_names=JSB_STEMS)
    for stem in track.stems:
        pcm = np.clip(np.round(stem.audio.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
        shipped, rate = sf.read(
            ROOT / "tests" / "fixtures" / "audio" / "chorale_16k" / f"{stem.stem_name}.flac", dtype="int16"
        )
        assert rate == SR
        np.testing.assert_array_equal(pcm, shipped)
