"""Frame sinks with one ``write(frames)`` interface: an encoded video file, or a folder of PNG frames."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from ..errors import InputError
from ..files import atomic_write, publish, temporary_beside
from .audio import DriverAudio
from .rate import exact_rate

X264_CRF = 18  # libx264 constant rate factor: visually near-lossless (x264/FFmpeg H.264 encoding guide)
X264_LOOKAHEAD = 40  # libx264's default rc-lookahead (preset medium): frames it holds before encoding one
LOOKAHEAD_BYTES = 256 * 2**20  # yuv420p bytes of the frames libx264 holds for lookahead or threads, at most
MPEG4_QSCALE = 2  # MPEG-4 Part 2 constant quantiser, 2 (best) .. 31, for builds without libx264


def pick_video_codec() -> str:
    """``"libx264"`` (H.264) when PyAV's FFmpeg build has that encoder, else ``"mpeg4"`` (MPEG-4 Part 2)."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def x264_frame_options(height: int, width: int) -> dict[str, str]:
    """libx264 options that bound the frames the encoder holds for frames of ``height`` × ``width``.

    The encoder holds its rc-lookahead frames and one frame per thread (by default 40 and 1.5 per CPU), each in
    yuv420p plus about as much in analysis buffers: a 24-MP video would hold 2-3 GB, and a short video less than a
    long one. Both are cut so that the frames held stay within :data:`LOOKAHEAD_BYTES` (at least 1 each): frames
    up to 4.4 MP keep x264's defaults.
    """
    held = max(1, LOOKAHEAD_BYTES // (height * width * 3 // 2))
    options = {"rc-lookahead": str(min(X264_LOOKAHEAD, held))}
    if held < _cpu_count() * 3 // 2:   # x264's automatic thread count
        options["threads"] = str(held)
    return options


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _FrameSink:
    """The writers' shared contract: ``write`` chunks of one frame size, ``close``, context-manager use."""

    def __init__(self) -> None:
        self.frames_written = 0
        self._size: tuple[int, int] | None = None  # (H, W) of the first chunk

    def write(self, frames: np.ndarray) -> None:
        """Append frames ``(n, H, W, 3)`` uint8 RGB (anything ``np.asarray`` takes); the first call fixes H, W."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"frames must be (n, H, W, 3) uint8 RGB, got {frames.dtype} {tuple(frames.shape)}")
        if self._size is None:
            self._size = frames.shape[1:3]
        elif frames.shape[1:3] != self._size:
            raise InputError(f"frames are {frames.shape[2]}×{frames.shape[1]}, earlier ones were "
                             f"{self._size[1]}×{self._size[0]}")
        self._write(frames)
        self.frames_written += len(frames)

    def _write(self, frames: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output; calling it again does nothing."""

    def abort(self) -> None:
        """Stop after an error: leave no unfinished output behind where the sink can (default: ``close``)."""
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class PngFramesWriter(_FrameSink):
    """Write frames as ``frames_dir/000000.png``, ``000001.png``, ... (RGB PNG; the folder is created)."""

    def __init__(self, frames_dir: str | Path) -> None:
        super().__init__()
        self.frames_dir = Path(frames_dir)
        try:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create frames folder {self.frames_dir}: {exc.strerror or exc}") from exc

    def _write(self, frames: np.ndarray) -> None:
        for offset, rgb in enumerate(frames):
            atomic_write(self.frames_dir / f"{self.frames_written + offset:06d}.png",
                         Image.fromarray(rgb).save)


class VideoWriter(_FrameSink):
    """Encode frames as they come into a video file, with the driver's audio muxed alongside.

    Video: H.264 (libx264, CRF 18) or, without libx264, MPEG-4 Part 2 (constant quantiser 2), see
    ``pick_video_codec``; yuv420p; at the exact rational ``fps`` (frame ``i`` has timestamp ``i / fps``).
    yuv420p needs even sizes: an odd height or width is padded by repeating the last row or column, so 63×47
    frames are stored as 64×48 (crop the last row/column on reading to get the input back).

    Audio: the first audio stream of ``audio_from`` (the driver), kept in sync with its first video frame.
    Packets are copied without re-encoding when the output container accepts the codec, otherwise decoded and
    encoded as AAC. Audio past the last written frame is dropped (at packet granularity, so it may run up to
    one packet, ~20-60 ms, past the video); after the audio ends, an output longer than it is silent. A file
    without audio adds no audio stream. Audio is muxed as the frames arrive, so nothing accumulates.

    The parent folder is created. The video is written under a temporary name beside ``path``; ``close()`` (or
    leaving a ``with`` block normally) finalises it and moves it to ``path`` with mode ``0666 & ~umask``; if no
    frame was written, no file is left. ``abort()`` (leaving the block on an error) removes the unfinished file.

    Args:
        path: output file; its suffix picks the container (``.mp4``, ``.mkv``, ``.mov``, ...).
        fps: frame rate in frames per second, kept exact (pass ``reader.fps``, e.g. ``Fraction(30000, 1001)``).
        audio_from: media file whose audio is copied (usually the driver video), or None.
        codec: video encoder to force (a PyAV codec name), else ``pick_video_codec()``.

    Raises:
        InputError: unknown container suffix, a folder that cannot be created, unreadable ``audio_from``, or
            (from ``write``) frames of the wrong type or size.
    """

    def __init__(self, path: str | Path, fps: Fraction | float, audio_from: str | Path | None = None,
                 *, codec: str | None = None) -> None:
        super().__init__()
        self.path, self.fps, self.codec = Path(path), exact_rate(fps), codec or pick_video_codec()
        try:
            self._temporary = temporary_beside(self.path)   # published to `path` when closed
            self._container = av.open(str(self._temporary), "w")
        except (OSError, ValueError) as exc:  # ValueError: no container format for this suffix
            raise InputError(f"cannot write video {self.path}: {getattr(exc, 'strerror', None) or exc}") from exc
        self._audio = None
        if audio_from is not None:
            try:
                self._audio = DriverAudio(Path(audio_from))
            except InputError:
                self._container.close()
                self._temporary.unlink(missing_ok=True)
                raise
        self._video: av.VideoStream | None = None
        self._closed = False

    def _start(self, height: int, width: int) -> None:
        options = {"crf": str(X264_CRF), **x264_frame_options(height, width)} if self.codec == "libx264" else {
            "flags": "+qscale", "qmin": str(MPEG4_QSCALE), "qmax": str(MPEG4_QSCALE)}
        self._video = self._container.add_stream(self.codec, rate=self.fps, options=options)
        self._video.width, self._video.height = width + width % 2, height + height % 2
        self._video.pix_fmt = "yuv420p"
        self._video.codec_context.time_base = 1 / self.fps
        if self._audio is not None:
            self._audio.attach(self._container)

    def _write(self, frames: np.ndarray) -> None:
        if self._video is None:
            self._start(*frames.shape[1:3])
        height, width = frames.shape[1:3]
        if height % 2 or width % 2:
            frames = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        for offset, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = self.frames_written + offset
            self._container.mux(self._video.encode(frame))
        if self._audio is not None:
            self._audio.mux_until(self._container, (self.frames_written + len(frames)) / self.fps)

    def close(self) -> None:
        """Flush the encoders and finalise the file (audio ends with the last frame)."""
        if self._closed:
            return
        self._closed = True
        finished = False
        try:
            if self._video is not None:
                self._container.mux(self._video.encode(None))
                if self._audio is not None:
                    self._audio.mux_until(self._container, self.frames_written / self.fps)
                    self._audio.flush(self._container)
            finished = True
        finally:
            if self._audio is not None:
                self._audio.close()
            self._container.close()
            if finished and self._video is not None:
                publish(self._temporary, self.path)
            else:
                self._temporary.unlink(missing_ok=True)

    def abort(self) -> None:
        """Close without finishing: the unfinished file is removed and ``path`` is left as it was."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._audio is not None:
                self._audio.close()
            self._container.close()
        finally:
            self._temporary.unlink(missing_ok=True)
