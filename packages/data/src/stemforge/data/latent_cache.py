"""Latent cache: the latents of a dataset of (S, N) waveforms, encoded once, so that a latent
diffusion model trains without running its codec.

Layout (written into a temporary folder and renamed into place when complete)::

    OUT/index.json                        caller's metadata, stem names, sample rate, segment length,
                                          items per split
    OUT/<split>/shard-00000.safetensors   "stems" (n, S, C, T[, F]) and "mix" (n, C, T[, F]), float32
    OUT/<split>/index.json                stem names, shard names and item counts

The mixture latent is the encoding of the sum of the stems (MSG-LD conditions on the mixture's own
latent, not on the sum of the stem latents). The writer takes any ``encode`` callable, so this
module never depends on a codec package.
"""

from __future__ import annotations

import bisect
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset

#: ``(B, S, N) float waveforms -> (B, S, C, T[, F]) latents``, e.g. a stemforge codec's ``encode``.
EncodeFn = Callable[[Tensor], Tensor]


class LatentCacheDataset(Dataset):
    """Items ``{"stems": (S, C, T, F), "mix": (C, T, F)}`` of one split folder of a latent cache.

    ``stem_names`` must be the cache's stem order (an error names both otherwise). The shards are
    loaded into memory when the dataset is built.
    """

    def __init__(self, folder: str | Path, stem_names: Sequence[str]) -> None:
        folder = Path(folder)
        index_path = folder / "index.json"
        if not index_path.is_file():
            raise ValueError(
                f"{folder}: not a latent cache split (no index.json); build it with `stemforge-train cache` "
                "or stemforge.data.write_latent_cache"
            )
        index = json.loads(index_path.read_text())
        if list(index["stem_names"]) != list(stem_names):
            raise ValueError(
                f"{folder}: the cache holds stems {index['stem_names']} but the stems asked for are "
                f"{list(stem_names)}; rebuild the cache or ask for its stems"
            )
        self.stem_names = tuple(stem_names)
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

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} cached items")
        shard = bisect.bisect_right(self.offsets, index) - 1
        j = index - self.offsets[shard]
        return {"stems": self.stems[shard][j], "mix": self.mix[shard][j]}


@torch.no_grad()
def write_latent_split(
    dataset: Dataset,
    folder: str | Path,
    encode: EncodeFn,
    stem_names: Sequence[str],
    *,
    batch_size: int = 4,
    shard_items: int = 256,
) -> int:
    """Encode every (S, N) item of ``dataset`` into the new folder ``folder`` (one split of a cache);
    return the number of items.

    Items are encoded ``batch_size`` at a time, the stems as ``encode(waves)`` and the mixture as
    ``encode(waves.sum(1, keepdim=True))[:, 0]``; a shard is written once it holds at least
    ``shard_items`` items. NaN or infinite latents are an error before their shard is written.
    """
    folder = Path(folder)
    if batch_size <= 0 or shard_items <= 0:
        raise ValueError(f"batch_size ({batch_size}) and shard_items ({shard_items}) must be positive")
    count = len(dataset)  # type: ignore[arg-type]
    if count == 0:
        raise ValueError(f"{folder}: the dataset to cache is empty")
    folder.mkdir(parents=True)
    shards: list[dict[str, Any]] = []
    stems_buf: list[Tensor] = []
    mix_buf: list[Tensor] = []

    def flush() -> None:
        if not stems_buf:
            return
        stems, mix = torch.cat(stems_buf), torch.cat(mix_buf)
        if not (torch.isfinite(stems).all() and torch.isfinite(mix).all()):
            raise ValueError(
                f"{folder}: the encoder produced NaN/inf latents; check the codec and its weights"
            )
        name = f"shard-{len(shards):05d}.safetensors"
        save_file({"stems": stems.contiguous(), "mix": mix.contiguous()}, folder / name)
        shards.append({"file": name, "items": stems.shape[0]})
        stems_buf.clear()
        mix_buf.clear()

    for start in range(0, count, batch_size):
        waves = torch.stack([dataset[i] for i in range(start, min(start + batch_size, count))])
        if waves.dim() != 3 or waves.shape[1] != len(stem_names):
            raise ValueError(
                f"{folder}: items must be (S, N) waveforms with S = {len(stem_names)} stems "
                f"{list(stem_names)}; got a batch of shape {tuple(waves.shape)}"
            )
        stem_latents = encode(waves)
        if stem_latents.dim() < 4 or tuple(stem_latents.shape[:2]) != tuple(waves.shape[:2]):
            raise ValueError(
                f"{folder}: encode must map (B, S, N) {tuple(waves.shape)} to (B, S, C, T[, F]) latents; "
                f"got {tuple(stem_latents.shape)}"
            )
        stems_buf.append(stem_latents.float().cpu())
        mix_buf.append(encode(waves.sum(1, keepdim=True))[:, 0].float().cpu())
        if sum(s.shape[0] for s in stems_buf) >= shard_items:
            flush()
    flush()
    (folder / "index.json").write_text(
        json.dumps({"stem_names": list(stem_names), "shards": shards}, indent=2)
    )
    return count


def write_latent_cache(
    out: str | Path,
    splits: Mapping[str, Dataset],
    encode: EncodeFn,
    stem_names: Sequence[str],
    sample_rate: int,
    segment_samples: int,
    *,
    batch_size: int = 4,
    shard_items: int = 256,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Write a latent cache of the datasets ``splits`` (split name -> dataset of (S, N) waveforms at
    ``sample_rate``, ``segment_samples`` long) to the new folder ``out``; return the items per split.

    ``encode`` maps a (B, S, N) float tensor to (B, S, C, T[, F]) latents (a codec's ``encode`` under
    ``torch.no_grad``). ``metadata`` (JSON-serialisable, e.g. the codec's folder and config) opens
    ``out/index.json``. The cache is written into a temporary folder beside ``out`` and renamed into
    place when complete: a failure leaves nothing behind, and an existing ``out`` is never touched.
    Read a split back with ``LatentCacheDataset(out / split, stem_names)``.
    """
    out = Path(out)
    if out.exists():
        raise ValueError(
            f"{out}: already exists; choose a new folder for the cache (existing caches are never overwritten)"
        )
    if not splits:
        raise ValueError(f"{out}: no split to cache; pass at least one dataset")
    for split in splits:
        if not split or Path(split).name != split or split in (".", ".."):
            raise ValueError(f"{out}: split name {split!r} is not a plain folder name")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    counts: dict[str, int] = {}
    try:
        for split, dataset in splits.items():
            counts[split] = write_latent_split(
                dataset, tmp / split, encode, stem_names, batch_size=batch_size, shard_items=shard_items
            )
        index = {
            **dict(metadata or {}),
            "stem_names": list(stem_names),
            "sample_rate": int(sample_rate),
            "segment_samples": int(segment_samples),
            "items": counts,
        }
        (tmp / "index.json").write_text(json.dumps(index, indent=2))
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts
