"""A resumable, shardable random order over a map-style dataset.

The order is a function of (seed, epoch) only, so a run restarted from a checkpoint that
recorded how many samples were consumed continues with exactly the samples it would have
seen. With several ranks, each takes every ``world_size``-th index of the same order.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Endless indices: epoch after epoch, each a permutation (or identity if not shuffled)."""

    def __init__(
        self, num_samples: int, *, shuffle: bool = True, seed: int = 0, start: int = 0,
        rank: int = 0, world_size: int = 1,
    ) -> None:
        if num_samples <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        self.start = start  # samples this rank already consumed
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        position = self.start * self.world_size + self.rank  # position in the global stream
        epoch, order = -1, torch.empty(0, dtype=torch.int64)
        while True:
            position_epoch, offset = divmod(position, self.num_samples)
            if position_epoch != epoch:
                epoch, order = position_epoch, self._order(position_epoch)
            yield int(order[offset])
            position += self.world_size

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_samples)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.num_samples, generator=generator)
