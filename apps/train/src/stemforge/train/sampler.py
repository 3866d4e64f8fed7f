"""A resumable, per-rank-sharded order over a map-style dataset.

Epoch e visits ``randperm(n, seed + e)``; rank r of w takes every w-th index of it (the last
incomplete round is dropped so every rank runs the same number of steps). The position is
(epoch, batch index within the epoch), saved with each checkpoint, so a resumed run sees exactly
the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass
class DataPosition:
    epoch: int = 0
    batch: int = 0


class ShardedBatchSampler:
    """Yields lists of dataset indices for this rank, starting at ``position``."""

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        rank: int,
        world_size: int,
        seed: int,
        position: DataPosition | None = None,
        shuffle: bool = True,
    ) -> None:
        if num_items < batch_size * world_size:
            raise ValueError(
                f"the dataset has {num_items} items, fewer than one global batch "
                f"({batch_size} x {world_size} ranks); use a smaller run.batch_size or more data"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.position = position or DataPosition()
        self._cached: tuple[int, list[int]] | None = None

    @property
    def batches_per_epoch(self) -> int:
        return self.num_items // (self.batch_size * self.world_size)

    def _order(self, epoch: int) -> list[int]:
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self.epoch_order(epoch))
        return self._cached[1]

    def epoch_order(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_items))
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_items, generator=gen).tolist()

    def batch_indices(self, epoch: int, batch: int) -> list[int]:
        order = self._order(epoch)
        start = batch * self.batch_size * self.world_size
        chunk = order[start : start + self.batch_size * self.world_size]
        return chunk[self.rank :: self.world_size]

    def advance(self, position: DataPosition) -> DataPosition:
        """The position after consuming the batch at ``position``."""
        if position.batch + 1 < self.batches_per_epoch:
            return DataPosition(position.epoch, position.batch + 1)
        return DataPosition(position.epoch + 1, 0)

    def __iter__(self) -> Iterator[list[int]]:
        """Endless, from ``position`` on. Loader workers prefetch ahead, so the training loop tracks
        the consumed position itself with :meth:`advance`."""
        pos = DataPosition(self.position.epoch, self.position.batch)
        while True:
            yield self.batch_indices(pos.epoch, pos.batch)
            pos = self.advance(pos)
