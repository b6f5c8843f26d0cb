"""A video's display orientation: the stream's display matrix turned into quarter turns and mirrors of frames.

Phones store portrait clips sideways and record how to show them in the container (the ``tkhd`` matrix of
MP4/MOV, FFmpeg's display-matrix side data; the old ``rotate`` tag maps to it). Players and FFmpeg's command
line turn the frames upright by it; a reader that ignores it sees faces lying on their side. The matrix is
read as FFmpeg's command line reads it (``fftools``' automatic rotation): the clockwise angle
``θ = atan2(m1 / |(m1, m4)|, m0 / |(m0, m3)|)`` picks a transpose, flip or quarter turn, and the signs of the
matrix entries pick the mirrored variants.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..errors import InputError

_MATRIX_BYTES = 36   # nine int32, FFmpeg's AV_PKT_DATA_DISPLAYMATRIX layout (16.16 fixed point, 2.30 last column)
_ANGLE_TOLERANCE = 1.0  # degrees: FFmpeg's own tolerance when it matches the angle to a quarter turn


@dataclass(frozen=True)
class Orientation:
    """Turn ``quarter_turns`` × 90° counter-clockwise, then mirror top-bottom (``vflip``) and left-right
    (``hflip``)."""

    quarter_turns: int = 0
    vflip: bool = False
    hflip: bool = False

    def shape(self, coded: tuple[int, int]) -> tuple[int, int]:
        """The upright ``(H, W)`` of frames coded ``(H, W)``."""
        return coded[::-1] if self.quarter_turns % 2 else coded

    def apply(self, frame: np.ndarray) -> np.ndarray:
        """A ``(H, W, C)`` frame upright (the frame itself when nothing is to be done, else a C-contiguous copy)."""
        if self == Orientation():
            return frame
        upright = np.rot90(frame, self.quarter_turns)
        if self.vflip:
            upright = upright[::-1]
        if self.hflip:
            upright = upright[:, ::-1]
        return np.ascontiguousarray(upright)


def display_orientation(frame: av.VideoFrame | None, path: Path) -> Orientation:
    """The orientation of a decoded frame's display matrix (none: upright as coded).

    Raises:
        InputError: a rotation that is not a multiple of 90°.
    """
    side_data = frame.side_data.get("DISPLAYMATRIX") if frame is not None else None
    if side_data is None:
        return Orientation()
    raw = bytes(side_data)
    if len(raw) != _MATRIX_BYTES:
        return Orientation()
    return matrix_orientation(struct.unpack("<9i", raw), path)


def matrix_orientation(m: tuple[int, ...], path: Path | str = "video") -> Orientation:
    """The orientation of a display matrix ``m`` (nine integers, FFmpeg's layout), as FFmpeg applies it."""
    scale_x, scale_y = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if scale_x == 0 or scale_y == 0:
        return Orientation()
    theta = math.degrees(math.atan2(m[1] / scale_y, m[0] / scale_x)) % 360.0   # clockwise
    quarter = round(theta / 90.0) % 4
    if abs((theta - 90.0 * round(theta / 90.0))) > _ANGLE_TOLERANCE:
        raise InputError(f"{path}: display rotation of {theta:.1f}° is not a multiple of 90°, which is not supported")
    if quarter == 1:      # clockwise; with m3 > 0 FFmpeg transposes (counter-clockwise, then top-bottom mirror)
        return Orientation(1, vflip=True) if m[3] > 0 else Orientation(-1)
    if quarter == 3:      # counter-clockwise; with m3 < 0 FFmpeg anti-transposes (clockwise, then mirror)
        return Orientation(-1, vflip=True) if m[3] < 0 else Orientation(1)
    if quarter == 2:
        return Orientation(0, vflip=m[4] < 0, hflip=m[0] < 0)
    return Orientation(0, vflip=m[4] < 0)
