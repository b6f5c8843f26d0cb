"""Data loading for training: epoch-tagged distributed sampling, so that workers hold no random state.

``EpochSampler`` wraps ``DistributedSampler`` and yields ``(epoch, index)``; a dataset's ``__getitem__`` draws
whatever it needs (e.g. a paired target frame) from (seed, epoch, index) with :mod:`.randomness`. A resumed
run skips the batches already done in its epoch without loading them.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .distributed import DistContext


class EpochSampler(Sampler):
    """This rank's share of a dataset's indices for one epoch (shuffled by (seed, epoch)), from ``start`` on,
    each tagged with the epoch: ``(epoch, index)``."""

    def __init__(self, size: int, ctx: DistContext, seed: int, epoch: int, start: int = 0, shuffle: bool = True):
        self.sampler = DistributedSampler(range(size), num_replicas=ctx.world_size, rank=ctx.rank,
                                          shuffle=shuffle, seed=seed, drop_last=True)
        self.sampler.set_epoch(epoch)
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, i) for i in itertools.islice(iter(self.sampler), self.start, None))

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.start)


def epoch_loader(dataset: Dataset, ctx: DistContext, seed: int, epoch: int, skip_batches: int,
                 local_batch: int, num_workers: int) -> DataLoader:
    """Batches of ``local_batch`` samples for this rank in ``epoch``, after the first ``skip_batches``.

    Incomplete last batches are dropped (as the reference trainer does), so every rank runs the same steps.
    """
    sampler = EpochSampler(len(dataset), ctx, seed, epoch, skip_batches * local_batch)
    return DataLoader(dataset, batch_size=local_batch, sampler=sampler, drop_last=True, num_workers=num_workers,
                      pin_memory=ctx.device.type == "cuda", persistent_workers=False,
                      worker_init_fn=_one_thread if num_workers else None)


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)
