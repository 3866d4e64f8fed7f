"""The Slakh2100 reader on real tracks written by the renderer: grouping, drop rules, segments, sharding."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pretty_midi
import pytest
import soundfile as sf
import torch
import yaml

from stemforge.data import SlakhDataset, SlakhFormatError, list_tracks, read_metadata, resample, scan_tracks
from stemforge.midi import JSB_STEMS


def test_renderer_writes_slakh_layout(slakh_root):
    tracks = list_tracks(slakh_root, "train")
    assert [t.name for t in tracks] == ["Track00001", "Track00002", "Track00003", "Track00004"]
    band = read_metadata(tracks[0])  # files are sorted: band_tempo_changes.mid first
    assert band.metadata["lmd_midi_dir"] == "band_tempo_changes.mid"
    assert [s.inst_class for s in band.stems] == ["Drums", "Piano", "Guitar", "Bass", "Strings (continued)"]
    for name in ("all_src.mid", "mix.flac", "MIDI/S00.mid", "stems/S04.flac"):
        assert (tracks[0] / name).is_file()
    meta = yaml.safe_load((tracks[0] / "metadata.yaml").read_text())
    assert meta["normalization_factor"] == -13.0 and meta["target_peak"] == -1.0
    assert meta["stems"]["S00"]["is_drum"] is True and meta["stems"]["S03"]["program_num"] // 8 == 4
    # mix.flac is the sum of the stems and stays under -1 dBFS.
    mix, sr = sf.read(tracks[0] / "mix.flac")
    stems = sum(sf.read(tracks[0] / "stems" / f"S0{i}.flac")[0] for i in range(5))
    assert sr == 16000 and np.abs(mix - stems).max() < 4 / 32768
    assert 20 * np.log10(np.abs(mix).max()) < -0.99
    assert not list(slakh_root.glob("**/*.tmp"))
    # Per-stem MIDI files keep the notes and the tempo map of the piece.
    full = pretty_midi.PrettyMIDI(str(tracks[0] / "all_src.mid"))
    for i, inst in enumerate(full.instruments):
        single = pretty_midi.PrettyMIDI(str(tracks[0] / "MIDI" / f"S0{i}.mid"))
        np.testing.assert_allclose(single.get_tempo_changes()[1], full.get_tempo_changes()[1], rtol=1e-6)
        np.testing.assert_allclose(single.get_tempo_changes()[0], full.get_tempo_changes()[0], atol=1e-6)
        assert [(n.pitch, n.velocity) for n in single.instruments[0].notes] == [
            (n.pitch, n.velocity) for n in inst.notes
        ]
        np.testing.assert_allclose(
            [n.start for n in single.instruments[0].notes], [n.start for n in inst.notes], atol=1e-3
        )


def test_grouping_by_inst_class_and_drop_rules(slakh_root):
    tracks, dropped = scan_tracks(slakh_root, "train", ("bass", "drums", "guitar", "piano"))
    names = {t.name: t for t in tracks}
    assert set(names) == {"Track00001", "Track00004"}  # band and waltz; the chorales have no such stems
    assert {d.name: d.reason for d in dropped} == {
        "Track00002": "none of the stems ('bass', 'drums', 'guitar', 'piano')",
        "Track00003": "none of the stems ('bass', 'drums', 'guitar', 'piano')",
    }
    waltz = names["Track00004"]
    assert [len(f) for f in waltz.files] == [1, 0, 0, 1]  # bass, (no drums), (no guitar), piano


def test_items_are_sums_of_stem_files(slakh_root):
    ds = SlakhDataset(slakh_root, "train", segment_samples=16000, train=False)
    assert len(ds) == sum(t.num_frames // 16000 for t in ds.tracks)
    item = ds[3]
    t, start = ds.segment_start(3)
    assert item["track"] == ds.tracks[t].name and item["start"] == start == 3 * 16000
    band = ds.tracks[t].path
    expected = {
        "drums": ["S00"],
        "piano": ["S01"],
        "guitar": ["S02"],
        "bass": ["S03"],
    }
    for s, stem in enumerate(ds.stem_names):
        ref = sum(
            sf.read(band / "stems" / f"{k}.flac", dtype="float32")[0][start : start + 16000]
            for k in expected[stem]
        )
        np.testing.assert_allclose(item["stems"][s].numpy(), ref, atol=1e-7)
    torch.testing.assert_close(item["mix"], item["stems"].sum(0))
    # A class absent from a track is silence.
    waltz_items = [ds[i] for i in range(len(ds)) if ds[i]["track"] == "Track00004"]
    assert waltz_items and all(float(it["stems"][1].abs().max()) == 0.0 for it in waltz_items)


def test_segments_too_long_drop_short_tracks(slakh_root):
    ds = SlakhDataset(slakh_root, "train", segment_samples=16000 * 8, train=False)
    assert [t.name for t in ds.tracks] == ["Track00001"]  # the waltz lasts 6.2 s
    assert any(d.name == "Track00004" and d.reason.startswith("shorter than a segment") for d in ds.dropped)


def test_unequal_lengths_and_unrendered_stems(slakh_root, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(slakh_root / "train" / "Track00001", root / "train" / "Track00001")
    shutil.copytree(slakh_root / "train" / "Track00004", root / "train" / "Track00004")
    # Waltz: mark the piano stem as not rendered and remove its file: it is skipped.
    meta_path = root / "train" / "Track00004" / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    meta["stems"]["S00"]["audio_rendered"] = False
    meta_path.write_text(yaml.safe_dump(meta))
    (root / "train" / "Track00004" / "stems" / "S00.flac").unlink()
    # Band: cut the guitar stem short: the track is dropped (MSDM: unequal lengths).
    guitar = root / "train" / "Track00001" / "stems" / "S02.flac"
    audio, sr = sf.read(guitar)
    sf.write(guitar, audio[:-100], sr, subtype="PCM_16")
    tracks, dropped = scan_tracks(root, "train", ("bass", "drums", "guitar", "piano"))
    assert [t.name for t in tracks] == ["Track00004"]
    assert [len(f) for f in tracks[0].files] == [1, 0, 0, 0]
    assert dropped[0].name == "Track00001" and "unequal lengths" in dropped[0].reason


def test_group_by_stem_name_reads_jsb_render(slakh_root):
    ds = SlakhDataset(
        slakh_root, "test", stems=JSB_STEMS, group_by="stem_name", segment_samples=32000, train=False
    )
    assert len(ds.tracks) == 2
    item = ds[0]
    soprano, _ = sf.read(ds.tracks[0].path / "stems" / "S00.flac", dtype="float32")
    np.testing.assert_allclose(item["stems"][0].numpy(), soprano[:32000], atol=1e-7)
    assert all(float(item["stems"][s].abs().max()) > 0.01 for s in range(4))


def test_training_shifts_order_and_sharding(slakh_root):
    kwargs = dict(segment_samples=8000, train=True, seed=3)
    ds = SlakhDataset(slakh_root, "train", **kwargs)
    starts = [ds.segment_start(i) for i in range(len(ds))]
    assert starts == [SlakhDataset(slakh_root, "train", **kwargs).segment_start(i) for i in range(len(ds))]
    assert any(s % 8000 for _, s in starts)  # random shifts, not multiples of the segment
    ds.set_epoch(1)
    assert [ds.segment_start(i) for i in range(len(ds))] != starts
    # Two ranks: equal lengths, together they cover every segment of the epoch.
    ranks = [SlakhDataset(slakh_root, "train", rank=r, world_size=2, **kwargs) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == -(-len(ds.segments) // 2)
    seen = [int(r._order()[i]) for r in ranks for i in range(len(r))]
    assert set(seen) == set(range(len(ds.segments)))
    # Every shifted segment stays inside its track.
    for i in range(len(ds)):
        t, s = ds.segment_start(i)
        assert 0 <= s <= ds.tracks[t].num_frames - 8000


def test_resampled_reads_match_resampling_the_file(slakh_root):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = SlakhDataset(slakh_root, "train", sample_rate=8000, segment_samples=8000, train=False)
    assert any("resampled to 8000 Hz" in str(w.message) for w in caught)
    item = ds[2]
    t, start = ds.segment_start(2)
    bass_file = ds.tracks[t].files[0][0]
    full, _ = sf.read(bass_file, dtype="float32")
    ref = resample(torch.from_numpy(full), 16000, 8000)[start : start + 8000]
    # Reading a window and resampling it differs from resampling the whole file only near the
    # window edges (the sinc kernel reaches 64 zero crossings), so compare the middle.
    torch.testing.assert_close(item["stems"][0][200:-200], ref[200:-200], atol=2e-3, rtol=0)


def test_no_usable_track_is_an_error(slakh_root):
    with pytest.raises(SlakhFormatError, match=r"no usable track .* none of the stems"):
        SlakhDataset(slakh_root, "test")  # the chorales have no bass/drums/guitar/piano classes
    with pytest.raises(SlakhFormatError, match="shorter than a segment"):
        SlakhDataset(slakh_root, "train", segment_samples=16000 * 600)


def test_not_a_slakh_folder(tmp_path):
    with pytest.raises(SlakhFormatError, match="no 'train' split folder"):
        SlakhDataset(tmp_path, "train")
    (tmp_path / "train" / "Track00001").mkdir(parents=True)
    (tmp_path / "train" / "Track00001" / "metadata.yaml").write_text("stems: [1, 2\n")
    with pytest.raises(SlakhFormatError, match="invalid YAML"):
        SlakhDataset(tmp_path, "train")
    with pytest.raises(SlakhFormatError, match="use one of"):
        SlakhDataset(tmp_path, "training")
    # Safe YAML only: a Python object tag is refused, never constructed.
    marker = tmp_path / "constructed"
    (tmp_path / "train" / "Track00001" / "metadata.yaml").write_text(
        f'stems: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ["{marker}"]]\n'
    )
    with pytest.raises(SlakhFormatError, match="invalid YAML"):
        SlakhDataset(tmp_path, "train")
    assert not marker.exists()


def test_redux_leaves_out_omitted_tracks(slakh_root, tmp_path):
    root = tmp_path / "redux"
    for name in ("Track00001", "Track00004"):
        shutil.copytree(slakh_root / "train" / name, root / "train" / name)
    (root / "omitted" / "Track00004").mkdir(parents=True)  # redux moved a duplicate of it
    redux, _ = scan_tracks(root, "train", ("bass", "piano"), variant="redux")
    orig, _ = scan_tracks(root, "train", ("bass", "piano"), variant="orig")
    assert [t.name for t in redux] == ["Track00001"]
    assert [t.name for t in orig] == ["Track00001", "Track00004"]
    listed, _ = scan_tracks(root, "train", ("bass", "piano"), variant="orig", exclude=["Track00001"])
    assert [t.name for t in listed] == ["Track00004"]


def test_dataloader_with_workers_batches_items(slakh_root):
    ds = SlakhDataset(slakh_root, "train", segment_samples=16000, train=True, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(b["stems"].shape[0] for b in batches) == len(ds)
    first = batches[0]
    assert first["stems"].shape == (3, 4, 16000) and first["mix"].shape == (3, 16000)
    # Workers read the same items as the main process (the order lives in the dataset).
    torch.testing.assert_close(first["stems"][1], ds[1]["stems"])
    assert list(first["track"]) == [ds[i]["track"] for i in range(3)]
