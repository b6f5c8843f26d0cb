"""Data loading for training: epoch-tagged distributed sampling, so that workers hold no random state.

``EpochSampler`` wraps ``DistributedSampler`` and yields ``(epoch, index)``; a dataset's ``__getitem__`` draws
whatever it needs (e.g. a paired target frame) from (seed, epoch, index) with :mod:`.randomness`. A resumed
run skips the batches already done in its epoch without loading them.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..command import command
from ..data import PreparedFrame, iter_videos, load_crop, load_deca_codes, load_w_plus
from ..errors import InputError
from .distributed import DistContext
from .randomness import sample_generator


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


def _frame_tensors(frame: PreparedFrame, w_shape: tuple[int, int], size: int) -> dict[str, torch.Tensor]:
    """A prepared frame as tensors: ``image`` (3, size, size) in [-1, 1] (area-resampled from the 256-px crop
    when the generator is smaller), ``w_plus`` (n_latent, style_dim), ``codes`` (236,)."""
    crop = torch.from_numpy(np.array(load_crop(frame.crop))).permute(2, 0, 1).float() / 127.5 - 1
    if crop.shape[-1] != size:
        crop = F.interpolate(crop[None], size=(size, size), mode="area" if crop.shape[-1] > size else "bilinear",
                             align_corners=None if crop.shape[-1] > size else False)[0]
    return {"image": crop, "w_plus": torch.from_numpy(load_w_plus(frame.w_plus, w_shape)),
            "codes": torch.from_numpy(load_deca_codes(frame.deca_codes))}


class PreparedFrames(Dataset):
    """The frames of a prepared tree (``dataset prepare``) for training A.

    ``pairs=False`` (real sources): item ``(epoch, i)`` is frame i: ``{"image", "w_plus", "codes"}``.
    ``pairs=True`` (paired): item ``(epoch, i)`` is frame i of the videos with at least two frames as the source
    and, as the target, another frame of the same video drawn uniformly from (seed, epoch, i); keys ``source_*``
    and ``target_*``. Every frame is a source once per epoch (the reference draws 2 sources per video).

    Only paths are held in memory (loaded per item). Raises InputError for an empty tree or W+ codes whose
    shape does not fit the generator.
    """

    def __init__(self, root: str | Path, w_shape: tuple[int, int], image_size: int, pairs: bool, seed: int):
        self.w_shape, self.size, self.pairs, self.seed = tuple(w_shape), image_size, pairs, seed
        self.frames: list[PreparedFrame] = []
        self.video_of: list[tuple[int, int]] = []   # (first frame index of the video, its frame count)
        for video in iter_videos(root, min_frames=2 if pairs else 1):
            first = len(self.frames)
            self.frames.extend(video.frames)
            self.video_of.extend([(first, len(video.frames))] * len(video.frames))
        if not self.frames:
            need = "videos with at least 2 prepared frames" if pairs else "prepared frames"
            raise InputError(f"no {need} in {root}: run `{command()} dataset prepare` first")
        n_latent = load_w_plus(self.frames[0].w_plus).shape
        if tuple(n_latent) != self.w_shape:
            raise InputError(f"the W+ codes in {root} are {tuple(n_latent)}, the generator takes {self.w_shape}: "
                             "prepare the data with an e4e encoder for this generator")

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, i = key
        source = _frame_tensors(self.frames[i], self.w_shape, self.size)
        if not self.pairs:
            return source
        first, count = self.video_of[i]
        other = int(torch.randint(count - 1, (), generator=sample_generator(self.seed, epoch, i, "pair_target")))
        j = first + (other if first + other < i else other + 1)
        target = _frame_tensors(self.frames[j], self.w_shape, self.size)
        return {**{f"source_{k}": v for k, v in source.items()}, **{f"target_{k}": v for k, v in target.items()}}
