"""The SoundFont renderer on real MIDI files: loudness, headroom, determinism, programs, drums."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pretty_midi
import pytest

from stemforge.data import RenderConfig, RenderError, integrated_loudness, render_midi, resolve_soundfont
from stemforge.midi import load_midi

ROOT = Path(__file__).resolve().parents[3]
MIDI = ROOT / "tests" / "fixtures" / "midi"


@pytest.fixture(scope="module")
def band():
    return load_midi(MIDI / "band_tempo_changes.mid")


def test_render_band_stems_are_normalised_and_mix_has_headroom(band):
    track = render_midi(band, config=RenderConfig(sample_rate=16000), seed=3)
    assert [s.key for s in track.stems] == ["S00", "S01", "S02", "S03", "S04"]
    assert [s.inst_class for s in track.stems] == ["Drums", "Piano", "Guitar", "Bass", "Strings (continued)"]
    # Length: last note end + 1 s tail.
    assert track.num_samples == int(np.ceil((band.get_end_time() + 1.0) * 16000))
    loud = [integrated_loudness(s.audio, 16000) for s in track.stems]
    # Every stem was set to -13 LUFS and then all got the same overall gain: equal loudness
    # (within 0.05 LU: the gating of each stem is recomputed after the gain).
    assert max(loud) - min(loud) < 0.05
    assert abs(loud[0] - (-13.0 + 20 * np.log10(track.overall_gain))) < 0.05
    peak_db = 20 * np.log10(np.abs(track.mix()).max())
    assert -1.05 < peak_db < -1.0
    # Each stem sounds only while its notes play (plus release): the silent lead-in is absent,
    # so check the drums are loud in the first beat and the strings track is not silent.
    assert np.abs(track.stems[0].audio[:8000]).max() > 0.05
    assert np.abs(track.stems[4].audio).max() > 0.01


def test_render_is_deterministic_and_family_draw_depends_on_seed(band):
    a = render_midi(band, seed=11)
    b = render_midi(band, seed=11)
    for sa, sb in zip(a.stems, b.stems):
        assert sa.program == sb.program
        np.testing.assert_array_equal(sa.audio, sb.audio)
    programs = {tuple(s.program for s in render_midi(band, seed=s).stems) for s in range(6)}
    assert len(programs) > 1  # the presets are drawn per track from the seed
    for prog_set in programs:
        # Drawn within the General MIDI family of the source program (piano 0-7, guitar 24-31 ...).
        assert (
            prog_set[1] // 8 == 0
            and prog_set[2] // 8 == 3
            and prog_set[3] // 8 == 4
            and prog_set[4] // 8 == 6
        )


def test_keep_policy_keeps_programs(band):
    track = render_midi(band, config=RenderConfig(program_policy="keep"))
    assert [s.program for s in track.stems[1:]] == [0, 25, 33, 48]


def test_soundfont_errors_name_the_file(tmp_path):
    with pytest.raises(RenderError, match="no such SoundFont"):
        resolve_soundfont(tmp_path / "missing.sf2")
    bogus = tmp_path / "bogus.sf2"
    bogus.write_bytes(b"not a soundfont at all")
    with pytest.raises(RenderError, match=r"bogus\.sf2: not a SoundFont 2 file"):
        resolve_soundfont(bogus)
    assert resolve_soundfont(None).name == "TimGM6mb.sf2"


def test_soundfont_by_path_and_fluidr3_hint(band, tmp_path):
    copy = tmp_path / "my_font.sf2"
    copy.write_bytes(resolve_soundfont(None).read_bytes())
    by_path = render_midi(band, config=RenderConfig(soundfont=str(copy), program_policy="keep"))
    default = render_midi(band, config=RenderConfig(program_policy="keep"))
    assert by_path.soundfont == copy
    for a, b in zip(by_path.stems, default.stems):
        np.testing.assert_array_equal(a.audio, b.audio)
    try:
        path = resolve_soundfont("fluidr3_gm")
    except RenderError as err:  # not installed here: the message says how to get it
        assert "fluid-soundfont-gm" in str(err)
    else:
        assert path.name == "FluidR3_GM.sf2"


def test_render_limits_and_bad_config(band):
    with pytest.raises(RenderError, match="max_seconds=5"):
        render_midi(band, config=RenderConfig(max_seconds=5.0))
    with pytest.raises(ValueError, match="program_policy"):
        RenderConfig(program_policy="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="would clip"):
        RenderConfig(peak_dbfs=1.0)
    empty = pretty_midi.PrettyMIDI()
    with pytest.raises(RenderError, match="no tracks"):
        render_midi(empty)
    empty.instruments.append(pretty_midi.Instrument(program=0))
    with pytest.raises(RenderError, match="no notes"):
        render_midi(empty)


def test_pitch_bend_changes_the_synth_output_from_its_time_on(band):
    import copy as copy_module

    from stemforge.data.render import load_synth

    guitar = band.instruments[2]
    flat = copy_module.deepcopy(guitar)
    flat.pitch_bends = []
    synth = load_synth(resolve_soundfont(None), 16000)
    bent = synth.render(guitar, 25, 40000)
    straight = synth.render(flat, 25, 40000)
    # The bend starts on beat 2 (1.0 s at 120 BPM): identical samples before, different after.
    assert guitar.pitch_bends[0].time == pytest.approx(1.0)
    np.testing.assert_array_equal(bent[:16000], straight[:16000])
    assert np.abs(bent[16000:24000] - straight[16000:24000]).max() > 1e-3
