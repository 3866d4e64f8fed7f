"""``stemforge-train data render`` and ``data info`` on real renders, in-process and as a real process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import yaml

from stemforge.data import available_backends
from stemforge.train.cli import main

ROOT = Path(__file__).resolve().parents[3]
MIDI = ROOT / "tests" / "fixtures" / "midi"


@pytest.fixture(scope="module")
def jsb_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "jsb"
    assert (
        main(["data", "render", "--source", "jsb", "--split", "test", "--out", str(out), "--limit", "2"]) == 0
    )
    return out


def test_render_jsb_writes_slakh_tracks(jsb_out, capsys):
    tracks = sorted((jsb_out / "test").iterdir())
    assert [t.name for t in tracks] == ["Track00001", "Track00002"]
    meta = yaml.safe_load((tracks[0] / "metadata.yaml").read_text())
    assert [meta["stems"][k]["stem_name"] for k in ("S00", "S01", "S02", "S03")] == [
        "soprano",
        "alto",
        "tenor",
        "bass",
    ]
    assert meta["sample_rate"] == 16000 and meta["lmd_midi_dir"] == "jsb:test:0"
    assert sf.info(tracks[0] / "mix.flac").samplerate == 16000
    # --renderer auto: the first synthesiser installed, recorded by name.
    assert meta["render"]["backend"] == available_backends()[0]


def test_info_prints_tracks_durations_and_splits(jsb_out, capsys):
    assert main(["data", "info", str(jsb_out)]) == 0
    out = capsys.readouterr().out
    frames = sf.info(jsb_out / "test" / "Track00002" / "mix.flac").frames
    assert "Track00002" in out and f"{frames / 16000:.1f} s" in out
    assert "soprano, alto, tenor, bass" in out and "jsb:test:1" in out
    assert "summary" in out and "test" in out


def test_rerun_resumes_and_other_settings_need_overwrite(jsb_out, capsys):
    args = ["data", "render", "--source", "jsb", "--split", "test", "--out", str(jsb_out), "--limit", "2"]
    mix = jsb_out / "test" / "Track00001" / "mix.flac"
    before = mix.stat().st_mtime_ns
    assert main(args) == 0  # same source and settings: the tracks are kept, not re-rendered
    assert mix.stat().st_mtime_ns == before
    assert main([*args, "--seed", "9"]) == 2
    err = capsys.readouterr().err
    assert "Track00001: exists with another source or other render settings" in err and "Traceback" not in err
    assert main([*args, "--overwrite"]) == 0
    assert mix.stat().st_mtime_ns != before


def test_render_jsb_with_programs(tmp_path):
    out = tmp_path / "strings"
    args = ["data", "render", "--source", "jsb", "--split", "valid", "--out", str(out), "--limit", "1"]
    assert main([*args, "--programs", "soprano=40, alto=41,tenor=42,bass=43"]) == 0
    meta = yaml.safe_load((out / "validation" / "Track00001" / "metadata.yaml").read_text())
    assert [s["program_num"] for s in meta["stems"].values()] == [40, 41, 42, 43]


def test_render_with_midirenderer_records_it_and_resumes_only_with_it(tmp_path, capsys):
    out = tmp_path / "mr"
    args = ["data", "render", "--source", "jsb", "--split", "valid", "--out", str(out), "--limit", "1"]
    assert main([*args, "--renderer", "midirenderer"]) == 0
    assert "midirenderer 0.1" in capsys.readouterr().out
    track = out / "validation" / "Track00001"
    meta = yaml.safe_load((track / "metadata.yaml").read_text())
    assert meta["render"]["backend"] == "midirenderer"
    assert sf.info(track / "stems" / "S00.flac").samplerate == 16000
    if "tinysoundfont" in available_backends():
        assert main([*args, "--renderer", "tinysoundfont"]) == 2
        assert "exists with another source or other render settings" in capsys.readouterr().err


#: The command in a real process where tinysoundfont cannot be imported (as after installing the
#: wheels alone): a meta-path finder refuses it.
WITHOUT_TINYSOUNDFONT = """
import sys


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tinysoundfont":
            raise ImportError("No module named 'tinysoundfont' (blocked)")
        return None


sys.meta_path.insert(0, Blocker())
from stemforge.train.cli import main

sys.exit(main(sys.argv[1:]))
"""


def test_render_without_tinysoundfont_uses_midirenderer_or_says_so_first(tmp_path):
    out = tmp_path / "out"
    args = ["data", "render", "--source", "jsb", "--split", "test", "--limit", "1", "--out", str(out)]
    run = [sys.executable, "-c", WITHOUT_TINYSOUNDFONT, *args]
    asked = subprocess.run([*run, "--renderer", "tinysoundfont"], capture_output=True, text=True, timeout=300)
    assert asked.returncode == 2 and "Traceback" not in asked.stderr
    assert "--renderer tinysoundfont: tinysoundfont is not installed" in asked.stderr
    assert "pip install --no-deps tinysoundfont==0.3.7" in asked.stderr
    assert not out.exists()  # refused before any work
    auto = subprocess.run(run, capture_output=True, text=True, timeout=300)
    assert auto.returncode == 0, auto.stderr[-3000:]
    meta = yaml.safe_load((out / "test" / "Track00001" / "metadata.yaml").read_text())
    assert meta["render"]["backend"] == "midirenderer"
    assert sorted(p.name for p in (out / "test" / "Track00001" / "stems").iterdir()) == [
        "S00.flac",
        "S01.flac",
        "S02.flac",
        "S03.flac",
    ]


def test_render_midi_folder(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        ["data", "render", "--source", str(MIDI), "--split", "validation", "--out", str(out), "--seed", "4"]
    )
    assert code == 0
    tracks = sorted((out / "validation").iterdir())
    assert len(tracks) == 4
    band = yaml.safe_load((tracks[0] / "metadata.yaml").read_text())
    assert band["lmd_midi_dir"] == "band_tempo_changes.mid"
    assert [s["inst_class"] for s in band["stems"].values()] == [
        "Drums",
        "Piano",
        "Guitar",
        "Bass",
        "Strings (continued)",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "jsb", "--split", "validation"], "splits train, valid, test"),
        (["--source", "jsb", "--limit", "0"], "--limit 0"),
        (["--source", "jsb", "--jobs", "0"], "--jobs 0"),
        (["--source", "jsb", "--soundfont", "/nonexistent/x.sf2"], "no such SoundFont"),
        (["--source", "jsb", "--sample-rate", "100"], "sample_rate=100"),
        (["--source", "/nonexistent/folder"], "give 'jsb' or an existing folder"),
        (["--source", "jsb", "--programs", "soprano=300"], "VOICE=PROGRAM"),
        (["--source", "jsb", "--programs", "lead=3"], "VOICE=PROGRAM"),
        (["--source", str(MIDI), "--programs", "soprano=3"], "applies to --source jsb"),
    ],
)
def test_render_user_errors(tmp_path, capsys, args, message):
    assert main(["data", "render", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o" / "train").exists() or not any((tmp_path / "o" / "train").iterdir())


def test_bad_midi_file_in_folder_is_named(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(MIDI / "waltz_fixed.mid", src / "a.mid")
    (src / "b.mid").write_bytes((MIDI / "band_tempo_changes.mid").read_bytes()[:50])
    assert main(["data", "render", "--source", str(src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "b.mid" in err and "truncated or corrupt" in err
    assert not (tmp_path / "o" / "train").exists()  # every file is checked before any is written


def test_info_on_a_folder_that_is_not_slakh(tmp_path, capsys):
    (tmp_path / "train").mkdir()
    assert main(["data", "info", str(tmp_path)]) == 2
    assert "not a Slakh-format folder" in capsys.readouterr().err
    assert main(["data", "info", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "train" / "Track00001").mkdir()
    (tmp_path / "train" / "Track00001" / "metadata.yaml").write_text("- just a list\n")
    assert main(["data", "info", str(tmp_path)]) == 2
    assert "no 'stems' mapping" in capsys.readouterr().err


def test_console_script_runs_as_a_process(jsb_out):
    result = subprocess.run(
        [sys.executable, "-m", "stemforge.train.cli", "data", "info", str(jsb_out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Track00001" in result.stdout


@pytest.mark.slow
def test_render_whole_test_split_and_read_it_back(tmp_path, capsys):
    import numpy as np

    from stemforge.data import SlakhDataset
    from stemforge.midi import JSB_STEMS, jsb_midi

    out = tmp_path / "jsb"
    assert main(["data", "render", "--source", "jsb", "--split", "test", "--out", str(out)]) == 0
    tracks = sorted((out / "test").iterdir())
    assert len(tracks) == 77
    for index in (0, 38, 76):
        end = jsb_midi("test", index).get_end_time()
        assert sf.info(tracks[index] / "mix.flac").frames == int(np.ceil((end + 1.0) * 16000))
    ds = SlakhDataset(out, "test", stems=JSB_STEMS, group_by="stem_name", segment_samples=163840, train=False)
    assert len(ds.tracks) + len(ds.dropped) == 77
    assert all(d.reason.startswith("shorter than a segment") for d in ds.dropped)
    item = ds[len(ds) - 1]
    assert item["stems"].shape == (4, 163840)
    assert "77" in capsys.readouterr().out
