"""Latent cache: encode a dataset once with a trained codec so that LDM training never runs it.

Layout (written into a temporary folder and renamed into place when complete)::

    OUT/index.json                   codec config, stem names, sample rate, segment length
    OUT/<split>/shard-00000.safetensors   "stems" (n, S, C, T, F) and "mix" (n, C, T, F), float32
    OUT/<split>/index.json           shard names and item counts

Latents are the codec's scaled latents (``codec.encode``); the mixture latent is the encoding of the
sum of the stems (MSG-LD conditions on the mixture's own latent, not the sum of stem latents).
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset


class LatentCacheDataset(Dataset):
    """Items ``{"stems": (S, C, T, F), "mix": (C, T, F)}`` of one split of a latent cache."""

    def __init__(self, folder: Path, stem_names: Sequence[str]) -> None:
        folder = Path(folder)
        index_path = folder / "index.json"
        if not index_path.is_file():
            raise ValueError(
                f"{folder}: not a latent cache split (no index.json); build it with `stemforge-train cache`"
            )
        index = json.loads(index_path.read_text())
        if list(index["stem_names"]) != list(stem_names):
            raise ValueError(
                f"{folder}: the cache holds stems {index['stem_names']} but data.stems is {list(stem_names)}; "
                "rebuild the cache or fix data.stems"
            )
        self.stems: list[Tensor] = []
        self.mix: list[Tensor] = []
        for shard in index["shards"]:
            tensors = load_file(folder / shard["file"])
            self.stems.append(tensors["stems"])
            self.mix.append(tensors["mix"])
        self.offsets = [0]
        for s in self.stems:
            self.offsets.append(self.offsets[-1] + s.shape[0])

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        shard = bisect.bisect_right(self.offsets, i) - 1
        j = i - self.offsets[shard]
        return {"stems": self.stems[shard][j], "mix": self.mix[shard][j]}


@torch.no_grad()
def _encode_split(
    codec, dataset: Dataset, folder: Path, stem_names: Sequence[str], batch: int, shard_items: int
) -> int:
    folder.mkdir(parents=True)
    shards: list[dict[str, Any]] = []
    stems_buf: list[Tensor] = []
    mix_buf: list[Tensor] = []
    total = 0

    def flush() -> None:
        if not stems_buf:
            return
        stems, mix = torch.cat(stems_buf), torch.cat(mix_buf)
        if not (torch.isfinite(stems).all() and torch.isfinite(mix).all()):
            raise ValueError(f"{folder}: the codec produced NaN/inf latents; check the codec checkpoint")
        name = f"shard-{len(shards):05d}.safetensors"
        save_file({"stems": stems.contiguous(), "mix": mix.contiguous()}, folder / name)
        shards.append({"file": name, "items": stems.shape[0]})
        stems_buf.clear()
        mix_buf.clear()

    for start in range(0, len(dataset), batch):  # type: ignore[arg-type]
        waves = torch.stack([dataset[i] for i in range(start, min(start + batch, len(dataset)))])  # type: ignore[arg-type]
        stems_buf.append(codec.encode(waves).float().cpu())
        mix_buf.append(codec.encode(waves.sum(1, keepdim=True))[:, 0].float().cpu())
        total += waves.shape[0]
        if sum(s.shape[0] for s in stems_buf) >= shard_items:
            flush()
    flush()
    (folder / "index.json").write_text(
        json.dumps({"stem_names": list(stem_names), "shards": shards}, indent=2)
    )
    return total


def build_latent_cache(codec_dir: Path, out: Path, config_path: Path, overrides: Sequence[str] = ()) -> str:
    """Encode the train (and val, if configured) segments of an LDM config's data section."""
    from stemforge.codec import load_codec
    from stemforge.train.config import load_config
    from stemforge.train.datasets import audio_segments, has_split

    config = load_config(config_path, overrides)
    data = {k: v for k, v in dict(config.data).items() if k != "latent_cache"}
    stem_names = tuple(data.get("stems", ("bass", "drums", "guitar", "piano")))
    out = Path(out)
    if out.exists():
        raise ValueError(
            f"{out}: already exists; choose a new folder for the cache (existing caches are never overwritten)"
        )
    codec = load_codec(codec_dir).eval()
    samples = round(float(data.get("segment_seconds", 10.24)) * codec.sample_rate)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    counts = {}
    try:
        for split in ("train", "val"):
            if not has_split(data, split):
                continue
            dataset = audio_segments(data, split, stem_names, codec.sample_rate, samples)
            counts[split] = _encode_split(
                codec,
                dataset,
                tmp / split,
                stem_names,
                int(data.get("cache_batch", 4)),
                int(data.get("shard_items", 256)),
            )
        meta = {
            "codec": str(codec_dir),
            "codec_config": codec.config_dict(),
            "stem_names": list(stem_names),
            "sample_rate": codec.sample_rate,
            "segment_samples": samples,
            "items": counts,
        }
        (tmp / "index.json").write_text(json.dumps(meta, indent=2))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return f"cached {counts} segments of {len(stem_names)} stems to {out}"
