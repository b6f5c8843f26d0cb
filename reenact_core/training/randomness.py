"""Random draws as pure functions of (seed, step, global sample index, stream).

Nothing random in training depends on a generator's running state: a sample's z, its chosen direction or its
paired target are the same whichever rank, DataLoader worker or resumed process draws them. That is what makes
``--resume`` bit for bit and 2 processes × batch b equal to 1 process × batch 2b.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .sampling import sample_seed

# Independent streams, one per kind of draw (stream 0 is ``sampling.draw_shifts``'s), so that adding a draw of
# one kind never changes those of another.
STREAMS = ("shifts", "z_source", "z_target", "pair_target", "validation")


def sample_generator(seed: int, step: int, index: int, stream: str) -> torch.Generator:
    """A fresh CPU ``torch.Generator`` for one sample's draws of one stream."""
    return torch.Generator().manual_seed(sample_seed(seed, step, index, STREAMS.index(stream)))


def per_sample(draw, seed: int, step: int, indices: Sequence[int], stream: str) -> torch.Tensor:
    """``torch.stack([draw(generator_i) for each global index i])`` on the CPU (move it to the device after)."""
    return torch.stack([draw(sample_generator(seed, step, i, stream)) for i in indices])


def normal(shape: Sequence[int], seed: int, step: int, indices: Sequence[int], stream: str) -> torch.Tensor:
    """Standard-normal float32 ``(len(indices), *shape)``, row i a function of (seed, step, indices[i], stream)."""
    return per_sample(lambda g: torch.randn(tuple(shape), generator=g), seed, step, indices, stream)
