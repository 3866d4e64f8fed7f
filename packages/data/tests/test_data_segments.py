"""Training Datasets on real audio: segments of the chorale fixture's stem files, the rendered
Slakh-format corpus (conftest's ``slakh_root``), style-reference pairs, Subtractive-Training items and
JSB chorale crops."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from stemforge.data import (
    ChoraleCropDataset,
    SlakhDataset,
    SlakhStems,
    StemSegmentDataset,
    StyleReferenceSegments,
    SubtractiveItems,
    SubtractiveTripletDataset,
    read_audio,
)

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
SATB = ("soprano", "alto", "tenor", "bass")
CHORALE_SAMPLES = 190546


def test_stem_segments_are_the_stem_files_cut_every_hop():
    segments = StemSegmentDataset([CHORALE], SATB, 16000, 20480, hop=10240)
    assert len(segments) == (CHORALE_SAMPLES - 20480) // 10240 + 1 == 17
    waves = {name: read_audio(CHORALE / f"{name}.flac", sample_rate=16000)[0] for name in SATB}
    for i in (0, 7, 16):
        track, start = segments.segment_start(i)
        assert track == 0 and start == i * 10240
        item = segments[i]
        assert item.shape == (4, 20480) and item.dtype == torch.float32
        for s, name in enumerate(SATB):
            torch.testing.assert_close(item[s], waves[name][start : start + 20480], atol=0, rtol=0)
    # The mix file is the exact sum of the 16-bit stems (the fixture's README).
    mix, _ = read_audio(CHORALE / "mix.flac", sample_rate=16000)
    torch.testing.assert_close(segments[3].sum(0), mix[3 * 10240 : 3 * 10240 + 20480], atol=1e-6, rtol=0)
    segments[0].zero_()  # items are copies
    assert segments[0].abs().amax() > 0


def test_a_missing_stem_is_silence_and_tracks_are_resampled(tmp_path):
    track = tmp_path / "track"
    track.mkdir()
    for name in ("soprano", "bass"):
        shutil.copy(CHORALE / f"{name}.flac", track / f"{name}.flac")
    segments = StemSegmentDataset([track, CHORALE], SATB, 8000, 8000)
    per_track = (CHORALE_SAMPLES // 2) // 8000
    assert len(segments) == 2 * per_track
    assert segments.segment_start(per_track) == (1, 0)
    first = segments[1]
    assert first[1].abs().amax() == 0 and first[2].abs().amax() == 0
    assert first[0].abs().amax() > 0.01 and first[3].abs().amax() > 0.01
    torch.testing.assert_close(first[0], segments[per_track + 1][0], atol=0, rtol=0)


def test_stem_segment_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="no track folders"):
        StemSegmentDataset([], SATB, 16000, 1024)
    with pytest.raises(ValueError, match="not a folder"):
        StemSegmentDataset([tmp_path / "nowhere"], SATB, 16000, 1024)
    with pytest.raises(ValueError, match=r"none of the stems \['bass', 'drums'\]"):
        StemSegmentDataset([CHORALE], ("bass", "drums"), 16000, 1024, extension="wav")
    with pytest.raises(ValueError, match="shorter than one segment"):
        StemSegmentDataset([CHORALE], SATB, 16000, CHORALE_SAMPLES + 1)


def test_slakh_stems_are_the_readers_stems_with_their_positions(slakh_root):
    reader = SlakhDataset(
        slakh_root, "test", stems=SATB, group_by="stem_name", segment_samples=16000, train=False
    )
    stems = SlakhStems(reader)
    assert len(stems) == len(reader) > 4 and stems.stem_names == SATB and stems.sample_rate == 16000
    for i in (0, len(stems) - 1):
        torch.testing.assert_close(stems[i], reader[i]["stems"], atol=0, rtol=0)
        assert stems.segment_start(i) == reader.segment_start(i)
        assert stems[i].abs().amax() > 0.01


def test_style_reference_is_the_target_stem_of_another_segment_of_the_same_track():
    segments = StemSegmentDataset([CHORALE], SATB, 16000, 20480, hop=10240)
    pairs = StyleReferenceSegments(segments, target=3, segment_samples=20480, seed=0)
    same = StyleReferenceSegments(segments, target=3, segment_samples=20480, seed=0)
    other = StyleReferenceSegments(segments, target=3, segment_samples=20480, seed=1)
    assert pairs.partner == same.partner and pairs.partner != other.partner
    for i, j in enumerate(pairs.partner):
        (ti, si), (tj, sj) = segments.index[i], segments.index[j]
        assert ti == tj and abs(si - sj) >= 20480  # same track, no shared sample
    item = pairs[5]
    torch.testing.assert_close(item["waves"], segments[5])
    torch.testing.assert_close(item["reference"], segments[pairs.partner[5]][3])


def test_style_partners_stay_within_a_slakh_track(slakh_root):
    reader = SlakhDataset(slakh_root, "test", stems=SATB, group_by="stem_name", segment_samples=16000)
    pairs = StyleReferenceSegments(SlakhStems(reader), target=1, segment_samples=16000, seed=3)
    keys = [reader.segment_start(i) for i in range(len(reader))]
    assert len({t for t, _ in keys}) == 2  # two chorales
    for i, j in enumerate(pairs.partner):
        assert keys[i][0] == keys[j][0] and i != j
    torch.testing.assert_close(pairs[2]["reference"], reader[pairs.partner[2]]["stems"][1])
    with pytest.raises(TypeError, match="no segment_start"):
        StyleReferenceSegments([torch.zeros(4, 16000)], target=0, segment_samples=16000)  # type: ignore[arg-type]


def test_subtractive_items_are_exact_triplets_restricted_to_the_chosen_stems(slakh_root):
    def triplets(seed: int = 0) -> SubtractiveTripletDataset:
        return SubtractiveTripletDataset(
            slakh_root, "test", stems=SATB, group_by="stem_name", segment_samples=16000, seed=seed
        )

    every = SubtractiveItems(triplets())
    assert len(every) == len(every.triplets) > 8
    basses = SubtractiveItems(triplets(), insert_stems=[3])
    assert 0 < len(basses) < len(every)
    assert {int(basses[i]["stem_index"]) for i in range(len(basses))} == {3}
    assert every.triplets.items == triplets().items  # the triplets are left as they were
    again = SubtractiveItems(triplets())
    other_seed = SubtractiveItems(triplets(seed=7))
    picks = list(range(0, len(every), max(1, len(every) // 6)))
    assert [every[i]["instruction"] for i in picks] == [again[i]["instruction"] for i in reversed(picks)][
        ::-1
    ]
    assert any(other_seed[i]["instruction"] != every[i]["instruction"] for i in picks)
    for i in (0, len(basses) // 2, len(basses) - 1):
        item = basses[i]
        seg_index, s = basses.triplets.items[basses.index[i]]
        stems = basses.triplets.segments[seg_index]["stems"]
        assert item["stem_index"].dtype == torch.int64 and int(item["stem_index"]) == s == 3
        torch.testing.assert_close(item["stem"], stems[s], atol=0, rtol=0)
        torch.testing.assert_close(item["mix_minus"], stems.sum(0) - stems[s], atol=1e-6, rtol=0)
        assert "bassoon" in item["instruction"].lower()  # programs kept: bass = bassoon
    with pytest.raises(ValueError, match=r"stems \[\] of"):
        SubtractiveItems(triplets(), insert_stems=[])


def test_chorale_crops_are_windows_of_the_jsb_voices():
    from stemforge.midi import load_jsb

    chorales = [c for c in load_jsb("valid") if c.shape[-1] >= 32]
    one_each = ChoraleCropDataset("valid", 32)
    assert len(one_each) == len(chorales) == len(load_jsb("valid"))  # every chorale is 2 bars long
    torch.testing.assert_close(one_each[0], chorales[0][:, :32], atol=0, rtol=0)
    crops = ChoraleCropDataset("valid", 32, hop=16)
    assert len(crops) == sum((c.shape[-1] - 32) // 16 + 1 for c in chorales)
    c, start = crops.index[5]
    assert crops[5].shape == (4, 32) and crops[5].dtype == torch.int64
    torch.testing.assert_close(crops[5], chorales[c][:, start : start + 32], atol=0, rtol=0)
    with pytest.raises(ValueError, match="no JSB valid chorale is 100000 steps long"):
        ChoraleCropDataset("valid", 100000)
