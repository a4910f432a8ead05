"""A seeded, distributed, resumable sampler for training loops.

Like ``DistributedSampler`` (each rank takes every W-th index of one shared permutation), plus
two things a resumable engine needs: the permutation is a pure function of (seed, epoch), and
``start_at(batch)`` skips the batches already consumed in the current epoch without loading them.
``keyed=True`` yields (index, epoch) pairs, for data sets whose items are random per epoch
(``common.data.crops``): loader workers keep no epoch of their own.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Sampler

from common.errors import ConfigError


class ResumableSampler(Sampler[int]):
    def __init__(self, size: int, batch_size: int, seed: int = 0, num_replicas: int = 1,
                 rank: int = 0, shuffle: bool = True, keyed: bool = False):
        per_step = batch_size * num_replicas
        if size < per_step:
            raise ConfigError(f"batch_size: a global batch of {per_step} needs at least that many "
                              f"images; the dataset has {size}")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.num_replicas, self.rank, self.shuffle, self.keyed = num_replicas, rank, shuffle, keyed
        self.batches_per_epoch = size // per_step  # the last short batch is dropped
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.start_batch = epoch, 0

    def start_at(self, batch: int) -> None:
        """Begin the current epoch at its ``batch``-th batch (resume mid-epoch)."""
        self.start_batch = batch

    def _permutation(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return torch.randperm(self.size, generator=g)

    def __iter__(self) -> Iterator[int]:
        used = self.batches_per_epoch * self.batch_size * self.num_replicas
        mine = self._permutation()[:used][self.rank::self.num_replicas]
        indices = mine[self.start_batch * self.batch_size:].tolist()
        return iter([(i, self.epoch) for i in indices] if self.keyed else indices)

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size
