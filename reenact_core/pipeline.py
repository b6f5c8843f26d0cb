"""End-to-end jobs used by the command line: a driver file in, a video (or frames / an image) out, streamed.

Memory stays flat on long drivers: frames are decoded, reenacted and encoded a chunk at a time, the next chunk
decoded and the previous one encoded in background threads while the networks run (``video.overlap``).
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from .engine import DriveOptions, DriveSession, PreparedSource, ReenactModels
from .errors import InputError
from .files import atomic_write
from .video import IMAGE_SUFFIXES, PngFramesWriter, VideoReader, VideoWriter, driver_chunks
from .video.overlap import DEPTH, BackgroundWriter, Prefetched

DEFAULT_CHUNK = 32  # driver frames decoded per step


@dataclass(frozen=True)
class RunSummary:
    """What a reenactment run wrote."""

    output: Path
    frames: int
    fps: Fraction
    statuses: dict[str, int]   # frames per status: driven / held / passed
    audio: bool                # the output carries the driver's audio (over the driver's length, never looped)
    driver_frames: int | None = None   # the driver's length when known (an output past it was looped)


def output_frames(chunk, paste_back: bool) -> np.ndarray:
    """The frames to write: pasted frames as 8-bit RGB, or the 256-px crops without paste-back."""
    from .faces.images import to_uint8_rgb

    if not paste_back:
        return chunk.crops
    return np.stack([to_uint8_rgb(f) for f in chunk.frames]) if len(chunk) else chunk.crops


def reenact_file(models: ReenactModels, source: PreparedSource, driving: str | Path, out: str | Path,
                 options: DriveOptions = DriveOptions(), *, num_frames: int | None = None,
                 length_policy: str = "stop", png_dir: str | Path | None = None, chunk: int = DEFAULT_CHUNK,
                 progress: Callable[[int, int | None], None] | None = None,
                 image_fps: float | None = None, overlap: bool = True) -> RunSummary:
    """Reenact ``source`` with every frame of ``driving`` (video, image folder or image) and write ``out``.

    ``out`` is a video (the driver's frame rate, its audio muxed in) or, for a one-frame driver, may be an image
    file. ``png_dir`` also writes every frame as PNG. ``num_frames``/``length_policy`` (stop, loop, pingpong) set
    the output length; the driver's audio is not repeated past its end. ``image_fps`` is the rate of an image
    or image-folder driver (default :data:`~reenact_core.video.DEFAULT_FPS`; a video keeps its own).
    ``progress(done, total)`` is called after every chunk. Memory stays flat: frames are
    streamed (the command line also keeps glibc's heap from growing with freed frames, ``reenact_core.memory``).
    ``overlap`` decodes and encodes in background threads while the networks run (False: in line).
    """
    reader = VideoReader(driving) if image_fps is None else VideoReader(driving, image_fps=image_fps)
    out = Path(out)
    total = num_frames if num_frames is not None else (reader.frame_count if reader.frame_count_exact else None)
    as_image = out.suffix.lower() in IMAGE_SUFFIXES
    session = DriveSession(models, source, options, fps=float(reader.fps))
    writers = [] if as_image else [VideoWriter(out, reader.fps, audio_from=reader.path if reader.has_audio else None)]
    if png_dir is not None:
        writers.append(PngFramesWriter(png_dir))
    statuses: dict[str, int] = {}
    written, last, completed = 0, None, False
    # the next chunk is decoded and the last one encoded while the networks run
    depth = DEPTH if overlap else 0
    chunks = Prefetched(driver_chunks(reader, chunk, num_frames, length_policy), depth)
    sink = BackgroundWriter(writers, depth)
    try:
        def emit(driven) -> None:
            nonlocal written, last
            frames = output_frames(driven, options.paste_back)
            for s in driven.status:
                statuses[s] = statuses.get(s, 0) + 1
            if len(frames):
                sink.write(frames)
            written += len(frames)
            if len(frames):
                last = frames[-1]
            if progress is not None:
                progress(written, total)

        for frames in chunks:
            emit(session.process(frames))
        emit(session.finish())
        completed = True
    finally:
        chunks.close()
        if completed:
            sink.close()
        else:
            sink.abort()
    if as_image:
        if written != 1:
            raise InputError(f"{out.name}: an image output needs a one-frame driver, got {written} frames")
        atomic_write(out, Image.fromarray(last).save)   # the temporary name keeps the suffix that picks the format
    return RunSummary(out, written, reader.fps, statuses, bool(writers) and reader.has_audio,
                      reader.frame_count if reader.frame_count_exact else None)
