"""``stemforge-train cache``: encode an LDM config's audio once with a trained codec, so that LDM
training never runs it.

The cache format, its writer (``write_latent_cache``) and its reader (``LatentCacheDataset``) live in
stemforge-data; this module only reads the config, loads the codec and records it in the cache's
``index.json`` (``codec``: its folder, ``codec_config``: its JSON config).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stemforge.data import LatentCacheDataset, write_latent_cache

__all__ = ["LatentCacheDataset", "build_latent_cache"]


def build_latent_cache(codec_dir: Path, out: Path, config_path: Path, overrides: Sequence[str] = ()) -> str:
    """Encode the train (and val, if configured) segments of an LDM config's data section."""
    from stemforge.codec import load_codec
    from stemforge.train.config import ConfigError, load_config
    from stemforge.train.datasets import audio_segments, has_split
    from stemforge.train.options import LDMData

    config = load_config(config_path, overrides)
    data = config.options(str(config_path)).data
    if not isinstance(data, LDMData):
        raise ConfigError(
            f"{config_path}: task {config.task!r} is not the LDM; give the LDM config to cache for"
        )
    stem_names = data.stems
    out = Path(out)
    if out.exists():  # before loading the codec
        raise ValueError(
            f"{out}: already exists; choose a new folder for the cache (existing caches are never overwritten)"
        )
    codec = load_codec(codec_dir).eval()
    samples = round(data.segment_seconds * codec.sample_rate)
    splits = {
        split: audio_segments(data, split, stem_names, codec.sample_rate, samples)
        for split in ("train", "val")
        if has_split(data, split)
    }
    counts = write_latent_cache(
        out,
        splits,
        codec.encode,
        stem_names,
        codec.sample_rate,
        samples,
        batch_size=data.cache_batch,
        shard_items=data.shard_items,
        metadata={"codec": str(codec_dir), "codec_config": codec.config_dict()},
    )
    return f"cached {counts} segments of {len(stem_names)} stems to {out}"
