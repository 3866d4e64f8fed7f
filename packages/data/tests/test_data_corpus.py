"""The embedded corpus renderers: JSB chorales and MIDI folders, resuming, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from stemforge.data import RenderConfig, SlakhFormatError, render_jsb, render_midi_folder
from stemforge.midi import JSB_PROGRAMS, MidiError, jsb_midi

ROOT = Path(__file__).resolve().parents[3]
MIDI = ROOT / "tests" / "fixtures" / "midi"


def test_render_jsb_valid_split_and_custom_programs(tmp_path):
    programs = {"soprano": 40, "alto": 41, "tenor": 42, "bass": 43}  # string quartet
    paths = render_jsb(tmp_path, "valid", limit=1, programs=programs, seed=2)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["validation/Track00001"]
    meta = yaml.safe_load((paths[0] / "metadata.yaml").read_text())
    assert [s["program_num"] for s in meta["stems"].values()] == [40, 41, 42, 43]
    assert {s["inst_class"] for s in meta["stems"].values()} == {"Strings"}
    assert meta["render"]["seed"] == 2 and meta["render"]["program_policy"] == "keep"
    # The track lasts as long as the chorale plus the 1 s tail.
    end = jsb_midi("valid", 0).get_end_time()
    assert sf.info(paths[0] / "mix.flac").frames == int(np.ceil((end + 1.0) * 16000))


def test_default_programs_are_the_woodwind_quartet(tmp_path):
    (path,) = render_jsb(tmp_path, "test", limit=1)
    meta = yaml.safe_load((path / "metadata.yaml").read_text())
    assert [s["program_num"] for s in meta["stems"].values()] == [
        JSB_PROGRAMS[v] for v in ("soprano", "alto", "tenor", "bass")
    ]


def test_existing_tracks_error_skip_or_overwrite(tmp_path):
    render_jsb(tmp_path, "test", limit=1)
    mix = tmp_path / "test" / "Track00001" / "mix.flac"
    stamp = mix.stat().st_mtime_ns
    with pytest.raises(SlakhFormatError, match="already exists"):
        render_jsb(tmp_path, "test", limit=1)
    render_jsb(tmp_path, "test", limit=2, existing="skip")  # resumes: keeps 1, renders 2
    assert mix.stat().st_mtime_ns == stamp and (tmp_path / "test" / "Track00002" / "mix.flac").is_file()
    with pytest.raises(SlakhFormatError, match="other render settings"):
        render_jsb(
            tmp_path,
            "test",
            limit=1,
            existing="skip",
            config=RenderConfig(sample_rate=22050, program_policy="keep"),
        )
    render_jsb(
        tmp_path,
        "test",
        limit=1,
        existing="overwrite",
        config=RenderConfig(sample_rate=22050, program_policy="keep"),
    )
    assert sf.info(mix).samplerate == 22050
    # A half-finished folder (no metadata) is never taken for a finished track.
    (tmp_path / "test" / "Track00002" / "metadata.yaml").unlink()
    with pytest.raises(SlakhFormatError, match="not a complete track"):
        render_jsb(
            tmp_path,
            "test",
            limit=2,
            existing="skip",
            config=RenderConfig(sample_rate=22050, program_policy="keep"),
        )


def test_midi_folder_bad_file_stops_before_writing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(MIDI / "waltz_fixed.mid", src / "a.mid")
    (src / "z.mid").write_bytes(b"")
    with pytest.raises(MidiError, match=r"z\.mid: file is empty"):
        render_midi_folder(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no \.mid or \.midi files"):
        render_midi_folder(empty, tmp_path / "o")


def test_render_jsb_arguments():
    with pytest.raises(ValueError, match="split"):
        render_jsb("unused", "validation")
    with pytest.raises(ValueError, match="limit"):
        render_jsb("unused", "test", limit=0)


@pytest.mark.slow  # spawning workers imports torch in each: > 10 s on 2 busy cores
def test_worker_processes_write_the_same_files(tmp_path):
    one = render_jsb(tmp_path / "one", "test", limit=3, seed=4)
    seen = []
    two = render_jsb(
        tmp_path / "two", "test", limit=3, seed=4, jobs=2, progress=lambda d, t, n: seen.append((d, t))
    )
    assert [p.name for p in one] == [p.name for p in two]
    assert sorted(seen) == [(1, 3), (2, 3), (3, 3)]
    for a, b in zip(one, two):
        files = sorted(f.relative_to(a) for f in a.rglob("*") if f.is_file())
        assert files == sorted(f.relative_to(b) for f in b.rglob("*") if f.is_file())
        for f in files:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f
    with pytest.raises(ValueError, match="jobs=0"):
        render_jsb(tmp_path / "three", "test", limit=2, jobs=0)


@pytest.mark.slow
def test_worker_error_is_raised_with_the_file_name(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(MIDI / "waltz_fixed.mid", src / "a.mid")
    shutil.copy(MIDI / "band_tempo_changes.mid", src / "b.mid")
    # A SoundFont that is not one fails in the workers; the error reaches the caller.
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00sfbk" + b"\x00" * 64)
    with pytest.raises(Exception, match=r"bad\.sf2"):
        render_midi_folder(src, tmp_path / "out", config=RenderConfig(soundfont=str(bad)), jobs=2)
