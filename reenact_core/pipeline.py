"""End-to-end jobs used by the command line: a driver file in, a video (or frames / an image) out, streamed.

Memory stays flat on long drivers: frames are decoded and reenacted a chunk at a time, and each output frame is
pasted into the source image and written before the next is made, so a big portrait costs a few full frames,
not a chunk of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

from PIL import Image

from .engine import DriveOptions, DriveSession, PreparedSource, ReenactModels
from .errors import InputError
from .faces.images import to_uint8_rgb
from .files import atomic_write
from .video import IMAGE_SUFFIXES, PngFramesWriter, VideoReader, VideoWriter, driver_chunks

DEFAULT_CHUNK = 32  # driver frames decoded per step


@dataclass(frozen=True)
class RunSummary:
    """What a reenactment run wrote."""

    output: Path
    frames: int
    fps: Fraction
    statuses: dict[str, int]   # frames per status: driven / held / passed
    audio: bool


def reenact_file(models: ReenactModels, source: PreparedSource, driving: str | Path, out: str | Path,
                 options: DriveOptions = DriveOptions(), *, num_frames: int | None = None,
                 length_policy: str = "stop", png_dir: str | Path | None = None, chunk: int = DEFAULT_CHUNK,
                 progress: Callable[[int, int | None], None] | None = None) -> RunSummary:
    """Reenact ``source`` with every frame of ``driving`` (video, image folder or image) and write ``out``.

    ``out`` is a video (the driver's frame rate, its audio muxed in) or, for a one-frame driver, may be an image
    file. ``png_dir`` also writes every frame as PNG. ``num_frames``/``length_policy`` (stop, loop, pingpong) set
    the output length. ``progress(done, total)`` is called after every chunk. Memory stays flat: frames are
    streamed, one full-size output frame at a time (the command line also keeps glibc's heap from growing with
    freed frames, ``reenact_core.memory``).
    """
    reader = VideoReader(driving)
    out = Path(out)
    total = num_frames if num_frames is not None else (reader.frame_count if reader.frame_count_exact else None)
    as_image = out.suffix.lower() in IMAGE_SUFFIXES
    session = DriveSession(models, source, options, fps=float(reader.fps), composite=False)
    writers = [] if as_image else [VideoWriter(out, reader.fps, audio_from=reader.path if reader.has_audio else None)]
    if png_dir is not None:
        writers.append(PngFramesWriter(png_dir))
    statuses: dict[str, int] = {}
    written, last, completed = 0, None, False
    try:
        def emit(driven) -> None:
            nonlocal written, last
            for s in driven.status:
                statuses[s] = statuses.get(s, 0) + 1
            for frame in session.output_frames(driven):   # pasted and written one at a time
                last = to_uint8_rgb(frame)
                for w in writers:
                    w.write(last[None])
                written += 1
            if progress is not None:
                progress(written, total)

        for frames in driver_chunks(reader, chunk, num_frames, length_policy):
            emit(session.process(frames))
        emit(session.finish())
        completed = True
    finally:
        for w in writers:
            if completed:
                w.close()
            else:
                w.abort()
    if as_image:
        if written != 1:
            raise InputError(f"{out.name}: an image output needs a one-frame driver, got {written} frames")
        atomic_write(out, Image.fromarray(last).save)   # the temporary name keeps the suffix that picks the format
    return RunSummary(out, written, reader.fps, statuses, bool(writers) and reader.has_audio)
