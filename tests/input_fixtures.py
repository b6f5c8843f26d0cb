"""Driver videos built at test time: explicit timestamps (variable frame rates) and display rotations (phone clips)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from reenact_core.video import video_encoder

H264 = video_encoder(Path("clip.mp4"))   # this PyAV build's .mp4 encoder: libx264, else MPEG-4 Part 2


def write_clip(path: Path, frames: np.ndarray, pts: list[int], time_base: Fraction, *,
               rotation: int = 0, rate: Fraction | None = None) -> Path:
    """Encode ``frames`` with explicit timestamps ``pts`` (units of ``time_base``); with ``rotation`` the frames are
    stored turned by −rotation and the stream's display matrix turns them back by ``rotation`` (counter-clockwise),
    as phones store portrait clips."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(H264, rate=rate or 1 / time_base)
        stored = [np.ascontiguousarray(np.rot90(f, -rotation // 90)) for f in frames]
        stream.height, stream.width = stored[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = time_base
        if rotation:
            stream.set_display_rotation(rotation)
        for image, t in zip(stored, pts):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = t, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
