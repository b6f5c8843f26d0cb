"""End-to-end jobs used by the command line: a driver file in, a video (or frames / an image) out, streamed.

Memory stays flat on long drivers: frames are decoded, reenacted and encoded a chunk at a time (the next chunk
decoded and the previous one encoded in background threads while the networks run, ``video.overlap``), and each
output frame is pasted into the source image and handed to the writers before the next is made, so a big
portrait costs a few full frames, not a chunk of them.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

from .engine import DriveOptions, DriveSession, PreparedSource, ReenactModels
from .errors import InputError
from .method import CROP_SIZE
from .faces.images import save_image, to_uint8_rgb
from .video import IMAGE_SUFFIXES, PngFramesWriter, VideoReader, VideoWriter, timed_driver_chunks
from .video.overlap import DEPTH, BackgroundWriter, Prefetched

DEFAULT_CHUNK = 32  # driver frames decoded per step
WRITE_QUEUE_BYTES = 128 * 2**20  # output frames waiting for the writers (overlap): a chunk of 1-MP frames; frames
                                 # too big for DEPTH of them in it (over ~21 MP) are written in line


@dataclass(frozen=True)
class RunSummary:
    """What a reenactment run wrote."""

    output: Path
    frames: int
    fps: Fraction
    statuses: dict[str, int]   # frames per status: driven / held / passed
    audio: bool                # driver audio went into the video (over the driver's length, never looped)
    driver_frames: int | None = None   # the driver's length when known (an output past it was looped)


def reenact_file(models: ReenactModels, source: PreparedSource, driving: str | Path, out: str | Path,
                 options: DriveOptions = DriveOptions(), *, num_frames: int | None = None,
                 length_policy: str = "stop", png_dir: str | Path | None = None, chunk: int = DEFAULT_CHUNK,
                 progress: Callable[[int, int | None], None] | None = None,
                 image_fps: float | None = None, overlap: bool = True) -> RunSummary:
    """Reenact ``source`` with every frame of ``driving`` (video, image folder or image) and write ``out``.

    ``out`` is a video (one frame per driver frame at that frame's time, so a variable frame rate is kept; the
    driver's audio muxed in; 8-bit RGB, container by suffix, see ``reenact_core.video.VideoWriter``) or, for a
    one-frame driver, may be an image file. The smoothers step by the real time between driver frames.
    ``png_dir`` also writes every frame as PNG. PNG frames and a PNG ``out`` keep the source image's channels
    (alpha included) and bit depth (``faces.images.save_image``). ``num_frames``/``length_policy`` (stop, loop,
    pingpong) set the output length; the driver's audio is not repeated past its end. ``image_fps`` is the rate
    of an image or image-folder driver (default :data:`~reenact_core.video.DEFAULT_FPS`; a video keeps its own).
    ``progress(done, total)`` is called after every chunk. Every output appears whole when the run ends and not
    at all after an error or interrupt (earlier files at those paths are left as they were). Memory stays flat:
    frames are streamed (the command line also keeps glibc's heap from growing with freed frames,
    ``reenact_core.memory``), and each full-size output frame is pasted and handed to the writers before the
    next is made. ``overlap`` decodes and encodes in background threads while the networks run (False: in line).
    """
    reader = VideoReader(driving) if image_fps is None else VideoReader(driving, image_fps=image_fps)
    out = Path(out)
    total = num_frames if num_frames is not None else (reader.frame_count if reader.frame_count_exact else None)
    as_image = out.suffix.lower() in IMAGE_SUFFIXES
    session = DriveSession(models, source, options, fps=float(reader.fps), composite=False)
    statuses: dict[str, int] = {}
    written, last, completed = 0, None, False
    pending: deque[Fraction] = deque()   # times of the frames fed but not yet settled by the session
    video = None if as_image else VideoWriter(out, reader.fps, audio_from=reader.path if reader.has_audio else None,
                                              time_base=reader.time_base)
    try:
        pngs = None if png_dir is None else PngFramesWriter(png_dir)
    except BaseException:
        if video is not None:
            video.abort()
        raise
    writers = [w for w in (video, pngs) if w is not None]
    # the next chunk is decoded, and the frames made so far encoded, while the networks run
    height, width = source.image.shape[:2] if options.paste_back else (CROP_SIZE, CROP_SIZE)
    frame_bytes = 3 * height * width + (0 if pngs is None else source.image.nbytes)   # video + PNG layouts
    chunks = Prefetched(timed_driver_chunks(reader, chunk, num_frames, length_policy), DEPTH if overlap else 0)
    queued = min(chunk, WRITE_QUEUE_BYTES // frame_bytes) if overlap else 0
    sink = BackgroundWriter(writers, queued if queued >= DEPTH else 0)   # frames too big to queue: written in line
    try:
        def emit(driven) -> None:
            nonlocal written, last
            for s in driven.status:
                statuses[s] = statuses.get(s, 0) + 1
            times = [pending.popleft() for _ in range(len(driven))]
            for frame, time in zip(session.output_frames(driven), times):   # pasted and written one at a time
                parts = [] if video is None else [(to_uint8_rgb(frame)[None], [time])]
                sink.write(parts + ([] if pngs is None else [(frame[None],)]))   # one tuple per writer: its layout
                last = frame
                written += 1
            if progress is not None:
                progress(written, total)

        for times, frames in chunks:
            pending.extend(times)
            emit(session.process(frames, times))
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
        save_image(out, last)
    return RunSummary(out, written, reader.fps, statuses, video is not None and video.audio_written,
                      reader.frame_count if reader.frame_count_exact else None)

