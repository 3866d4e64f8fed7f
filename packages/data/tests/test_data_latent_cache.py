"""The latent cache: writer and reader, the on-disk format of the first writer (a fixture cache),
NaN and shape errors, atomic writes; with real audio segments of the chorale fixture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from stemforge.data import LatentCacheDataset, StemSegmentDataset, write_latent_cache, write_latent_split

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
V1 = Path(__file__).resolve().parent / "fixtures" / "latent_cache_v1"
SATB = ("soprano", "alto", "tenor", "bass")


class ExactItems(Dataset):
    """The input of fixtures/latent_cache_v1 (see its README)."""

    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int) -> torch.Tensor:
        n = torch.arange(3 * 64, dtype=torch.int64).reshape(3, 64)
        return (((n * 7 + i * 5) % 17) - 8).float() / 8


def exact_encode(waves: torch.Tensor) -> torch.Tensor:
    b, s, _ = waves.shape
    return waves.reshape(b, s, 2, 4, 8) * 0.5 + 0.25


def frame_encode(waves: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in for a codec: (B, S, N) -> (B, S, 2, T, 8) frame statistics."""
    frames = waves.unfold(-1, 256, 256)[..., : (waves.shape[-1] // 2048) * 8, :]
    frames = frames.reshape(*waves.shape[:2], -1, 8, 256)
    return torch.stack([frames.mean(-1), frames.abs().amax(-1)], dim=2)


def test_the_first_writers_cache_loads_and_is_rewritten_byte_for_byte(tmp_path):
    stems = ("bass", "drums", "piano")
    for split in ("train", "val"):
        cached = LatentCacheDataset(V1 / split, stems)
        assert len(cached) == 5
        for i in range(5):
            waves = ExactItems()[i]
            torch.testing.assert_close(cached[i]["stems"], exact_encode(waves[None])[0], atol=0, rtol=0)
            torch.testing.assert_close(
                cached[i]["mix"], exact_encode(waves.sum(0, keepdim=True)[None])[0, 0], atol=0, rtol=0
            )
    out = tmp_path / "cache"
    counts = write_latent_cache(
        out,
        {"train": ExactItems(), "val": ExactItems()},
        exact_encode,
        stems,
        16000,
        64,
        batch_size=2,
        shard_items=3,
        metadata={"codec": "codec", "codec_config": {"name": "exact-reshape"}},
    )
    assert counts == {"train": 5, "val": 5}
    files = sorted(str(p.relative_to(V1)) for p in V1.rglob("*") if p.is_file() and p.name != "README.md")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == files
    for name in files:
        assert (out / name).read_bytes() == (V1 / name).read_bytes(), name


def test_cache_of_real_segments_holds_their_latents_and_the_mix_latent(tmp_path):
    segments = StemSegmentDataset([CHORALE], SATB, 16000, 20480, hop=10240)
    out = tmp_path / "latents"
    counts = write_latent_cache(
        out, {"train": segments}, frame_encode, SATB, 16000, 20480, batch_size=3, shard_items=5
    )
    assert counts == {"train": len(segments)} and len(segments) == 17
    index = json.loads((out / "index.json").read_text())
    assert index == {
        "stem_names": list(SATB),
        "sample_rate": 16000,
        "segment_samples": 20480,
        "items": {"train": 17},
    }
    shards = json.loads((out / "train" / "index.json").read_text())["shards"]
    assert [s["items"] for s in shards] == [6, 6, 5]  # a shard is flushed once it holds >= 5 items
    cached = LatentCacheDataset(out / "train", SATB)
    assert len(cached) == 17
    for i in (0, 5, 6, 16):
        waves = segments[i]
        assert waves.abs().amax() > 0.01  # real audio, not silence
        torch.testing.assert_close(cached[i]["stems"], frame_encode(waves[None])[0], atol=0, rtol=0)
        torch.testing.assert_close(
            cached[i]["mix"], frame_encode(waves.sum(0)[None, None])[0, 0], atol=0, rtol=0
        )
    assert cached[16]["stems"].shape == (4, 2, 10, 8)
    with pytest.raises(IndexError):
        cached[17]


def test_reader_names_a_stem_order_mismatch_and_a_missing_index(tmp_path):
    with pytest.raises(ValueError, match=r"holds stems \['bass', 'drums', 'piano'\]"):
        LatentCacheDataset(V1 / "train", ("piano", "drums", "bass"))
    with pytest.raises(ValueError, match="not a latent cache split"):
        LatentCacheDataset(tmp_path, ("bass",))


def test_nan_latents_fail_and_leave_nothing_behind(tmp_path):
    def bad_encode(waves: torch.Tensor) -> torch.Tensor:
        latent = exact_encode(waves)
        latent[0, 0, 0, 0, 0] = float("nan")
        return latent

    out = tmp_path / "cache"
    with pytest.raises(ValueError, match="NaN/inf latents"):
        write_latent_cache(out, {"train": ExactItems()}, bad_encode, ("bass", "drums", "piano"), 16000, 64)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_is_never_touched(tmp_path):
    out = tmp_path / "cache"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists"):
        write_latent_cache(out, {"train": ExactItems()}, exact_encode, ("bass", "drums", "piano"), 16000, 64)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_wrong_stem_count_and_wrong_latent_shape_are_named(tmp_path):
    with pytest.raises(ValueError, match=r"S = 4 stems"):
        write_latent_split(ExactItems(), tmp_path / "a", exact_encode, SATB)
    with pytest.raises(ValueError, match=r"encode must map \(B, S, N\)"):
        write_latent_split(ExactItems(), tmp_path / "b", lambda w: w.sum(1), ("bass", "drums", "piano"))
