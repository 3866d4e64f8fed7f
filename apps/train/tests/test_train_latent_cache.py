"""``build_latent_cache``: an LDM config's segments encoded by a real (untrained, seeded) tiny mel VAE
into stemforge-data's cache format, with the codec recorded; the format itself is tested in
stemforge-data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from stemforge.train import LatentCacheDataset, build_latent_cache
from stemforge.train.config import ConfigError

ROOT = Path(__file__).resolve().parents[3]
CHORALE = ROOT / "tests" / "fixtures" / "audio" / "chorale_16k"
TINY_LDM = ROOT / "configs" / "tiny-ldm.yaml"
STEMS = ("soprano", "alto", "tenor", "bass")


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory) -> Path:
    from stemforge.codec import MelVAECodec, MelVAECodecConfig, save_codec

    torch.manual_seed(0)
    return save_codec(
        MelVAECodec(MelVAECodecConfig.from_name("tiny")), tmp_path_factory.mktemp("codec") / "c"
    )


def test_cache_holds_the_codec_latents_of_the_config_segments(codec_dir, tmp_path):
    from stemforge.codec import load_codec
    from stemforge.data import StemSegmentDataset

    out = tmp_path / "latents"
    overrides = [f"data.train_tracks=[{CHORALE}]", "data.val_tracks=[]", "data.hop_fraction=1.0"]
    summary = build_latent_cache(codec_dir, out, TINY_LDM, [*overrides, "data.shard_items=4"])
    assert summary == f"cached {{'train': 9}} segments of 4 stems to {out}"  # 11.9 s in 1.28 s segments
    codec = load_codec(codec_dir).eval()
    index = json.loads((out / "index.json").read_text())
    assert index == {
        "codec": str(codec_dir),
        "codec_config": json.loads(json.dumps(codec.config_dict())),
        "stem_names": list(STEMS),
        "sample_rate": 16000,
        "segment_samples": 20480,
        "items": {"train": 9},
    }
    assert sorted(p.name for p in (out / "train").iterdir()) == [
        "index.json",
        "shard-00000.safetensors",  # 4 items (cache_batch 4)
        "shard-00001.safetensors",  # 4
        "shard-00002.safetensors",  # 1
    ]
    assert not (out / "val").exists()
    cached = LatentCacheDataset(out / "train", STEMS)
    segments = StemSegmentDataset([CHORALE], STEMS, 16000, 20480)
    assert len(cached) == len(segments) == 9
    with torch.no_grad():
        waves = torch.stack([segments[4], segments[8]])
        stems, mix = codec.encode(waves), codec.encode(waves.sum(1, keepdim=True))[:, 0]
    assert stems.shape == (2, 4, 8, 32, 16)
    for k, i in enumerate((4, 8)):
        torch.testing.assert_close(cached[i]["stems"], stems[k], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(cached[i]["mix"], mix[k], atol=1e-5, rtol=1e-5)

    with pytest.raises(ValueError, match="already exists"):
        build_latent_cache(codec_dir, out, TINY_LDM, overrides)
    with pytest.raises(ValueError, match=r"holds stems .* but the stems asked for"):
        LatentCacheDataset(out / "train", STEMS[::-1])


def test_cache_needs_an_ldm_config(codec_dir, tmp_path):
    with pytest.raises(ConfigError, match="is not the LDM"):
        build_latent_cache(codec_dir, tmp_path / "latents", ROOT / "configs" / "jsb-insertion.yaml")
    assert not (tmp_path / "latents").exists()
