"""Driver length policies: what a driver yields when more (or fewer) frames are wanted than it holds."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from fractions import Fraction
from itertools import islice

import numpy as np

from ..errors import InputError
from ..options import LENGTH
from .reader import VideoReader

LENGTH_POLICIES = LENGTH.choices


def driver_frames(reader: VideoReader, num_frames: int | None = None, policy: str = "stop",
                  *, block: int = 32) -> Iterator[np.ndarray]:
    """Stream a driver's frames ``(H, W, 3)`` uint8 RGB under a length policy.

    Args:
        reader: the driver, of L frames.
        num_frames: frames wanted; None means the driver's own length (one forward pass, any policy).
        policy: ``"stop"`` ends at the driver's end or at ``num_frames``, whichever comes first; ``"loop"``
            restarts from frame 0 (0..L-1, 0..L-1, ...); ``"pingpong"`` plays forward then backward without
            repeating the end frames (0..L-1, L-2..1, 0..L-1, ...).
        block: frames held at once by the backward passes of ``"pingpong"``.

    Nothing is buffered except ``"pingpong"``'s backward passes, which decode the video again in blocks of
    ``block`` frames taken from the end: each block seeks to the key frame before it (recorded during the
    forward pass), decodes up to the block's end and is yielded reversed. Memory is one block
    (``block·H·W·3`` bytes: 25 MB for 32 frames of 512²) instead of the whole video; the price is decoding
    from the key frame to each block again, about ``1 + GOP/block`` times the forward decoding work (a block
    before the first seekable key frame decodes from the start). Image drivers read each file directly.

    Raises:
        InputError: unknown policy or negative ``num_frames``.
    """
    return (frame for _, frame in timed_driver_frames(reader, num_frames, policy, block=block))


def timed_driver_frames(reader: VideoReader, num_frames: int | None = None, policy: str = "stop",
                        *, block: int = 32) -> Iterator[tuple[Fraction, np.ndarray]]:
    """``driver_frames`` with each output frame's time: ``(seconds, frame)``, ``seconds`` a ``Fraction``.

    Under ``"stop"`` a frame's time is its driver frame's (:meth:`VideoReader.timed_frames`: a
    variable-frame-rate driver keeps its own timing). The other policies keep the driver's spacing: a frame
    follows the previous one by the time between their driver frames (backward passes mirror the forward
    ones), and a loop restarts ``1 / fps`` after the driver's last frame.
    """
    if policy not in LENGTH_POLICIES:
        raise InputError(f"unknown length policy {policy!r}: choose one of {', '.join(LENGTH_POLICIES)}")
    if num_frames is not None and num_frames < 0:
        raise InputError(f"the number of frames must be ≥ 0, got {num_frames}")
    if block < 1:
        raise ValueError(f"block must be ≥ 1, got {block}")
    if num_frames is None or policy == "stop":
        frames = _forward(reader)
    else:
        frames = _looped(reader) if policy == "loop" else _pingponged(reader, block)
    previous: tuple[int, Fraction, Fraction] | None = None   # driver index, driver time, output time
    with closing(frames):
        for index, time, frame in islice(frames, num_frames):
            if previous is None:
                seconds = time
            elif abs(index - previous[0]) == 1:
                seconds = previous[2] + abs(time - previous[1])
            else:   # a loop restarting, or a one-frame driver repeated
                seconds = previous[2] + 1 / reader.fps
            previous = (index, time, seconds)
            yield seconds, frame


def timed_driver_chunks(reader: VideoReader, size: int, num_frames: int | None = None, policy: str = "stop",
                        *, block: int = 32) -> Iterator[tuple[list[Fraction], np.ndarray]]:
    """``timed_driver_frames`` grouped into ``(times, frames)`` chunks: ``frames`` ``(n, H, W, 3)`` uint8 RGB of
    ``n = size`` (the last may be shorter) and their ``n`` times in seconds."""
    if size < 1:
        raise ValueError(f"chunk size must be ≥ 1, got {size}")
    with closing(timed_driver_frames(reader, num_frames, policy, block=block)) as timed:
        while batch := list(islice(timed, size)):
            yield [time for time, _ in batch], np.stack([frame for _, frame in batch])


def _forward(reader: VideoReader, start: int = 0) -> Iterator[tuple[int, Fraction, np.ndarray]]:
    """``(driver index, driver time, frame)`` from frame ``start`` to the end."""
    for index, (time, frame) in enumerate(reader.timed_frames(start), start):
        yield index, time, frame


def _looped(reader: VideoReader) -> Iterator[tuple[int, Fraction, np.ndarray]]:
    while True:
        yield from _forward(reader)


def _pingponged(reader: VideoReader, block: int) -> Iterator[tuple[int, Fraction, np.ndarray]]:
    length = 0
    for item in _forward(reader):
        length = item[0] + 1
        yield item
    while True:
        end = length - 1  # backward pass: frames length-2 .. 1, in blocks [begin, end) taken from the end
        while end > 1:
            begin = max(1, end - block)
            with closing(_forward(reader, begin)) as frames:
                window = list(islice(frames, end - begin))
            yield from reversed(window)
            end = begin
        yield from _forward(reader)
