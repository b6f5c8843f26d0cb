"""Drivers read lazily: a video file through PyAV, or a folder of images or a single image through PIL."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np

from ..errors import InputError
from ..faces.images import read_image, to_uint8_rgb
from ..options import FPS
from .orientation import Orientation, display_orientation
from .rate import exact_rate

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # official target folders hold *.png|*.jpg (reference spec §1.1)
DEFAULT_FPS = Fraction(FPS.default).limit_denominator(1001)  # the rate of drivers without one (images)


def is_image_driver(path: str | Path) -> bool:
    """Whether ``path`` names an image or a folder of images (read by PIL, at a given rate) and not a video."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES


class VideoReader:
    """A driver: video file, folder of images or single image, decoded lazily into RGB frames.

    Args:
        path: video file, folder of ``*.png``/``*.jpg``/``*.jpeg`` images (natural sort: ``2.png`` before
            ``10.png``; other files are ignored) or a single image. Images are decoded with PIL, turned upright
            by their EXIF orientation, read at their real range (16-bit, float, 1-bit, CMYK, ...:
            :func:`~reenact_core.faces.images.from_pil`), reduced to 8-bit RGB, and must all have the first
            image's size.
        image_fps: frame rate reported for image drivers (a video reports its own).

    A video's frames are turned upright as players show them: by the display matrix of the stream (phones store
    portrait clips sideways with a rotation of 90°, 180° or 270°, possibly mirrored), the way FFmpeg's player
    and command line turn them; ``width`` and ``height`` are the upright size.

    Attributes:
        path: the driver's path.
        fps: exact frame rate as a ``Fraction`` (e.g. ``30000/1001``); ``float(reader.fps)`` for a float. For a
            variable-frame-rate video it is the average rate; :meth:`timed_frames` gives each frame's own time.
        time_base: the unit of the video's timestamps in seconds (``1 / fps`` for images), as a ``Fraction``.
        width, height: upright frame size in pixels (sample aspect ratio ignored).
        has_audio: whether the file holds an audio stream (always False for images).
        frame_count: number of frames, or None when unknown. For a video it is the container's declared count
            (or duration × fps) until a decoding pass has reached the end, then the exact decoded count.
        frame_count_exact: whether ``frame_count`` was counted (images, or a video decoded to its end).

    Raises:
        InputError: missing path, empty folder, unreadable or corrupt file, or a file without a video stream.
            Iterating a video that holds no decodable frame also raises InputError naming the file.
    """

    def __init__(self, path: str | Path, *, image_fps: Fraction | float = DEFAULT_FPS) -> None:
        self.path = Path(path)
        self._keyframes: dict[int, int] = {}  # frame index → pts of the key frames decoded so far (seek points)
        if not self.path.exists():
            raise InputError(f"driver not found: {self.path}")
        if is_image_driver(self.path):
            self._images: list[Path] | None = _image_files(self.path)
            self.height, self.width = _read_image(self._images[0]).shape[:2]
            self.fps, self.has_audio = exact_rate(image_fps), False
            self.time_base = 1 / self.fps
            self.frame_count, self.frame_count_exact = len(self._images), True
            return
        self._images = None
        with self._open() as container:
            stream = container.streams.video[0]
            self.fps = exact_rate(stream.average_rate or stream.guessed_rate or stream.base_rate or DEFAULT_FPS)
            self.time_base = stream.time_base or 1 / self.fps
            self.has_audio = bool(container.streams.audio)
            duration = stream.duration * stream.time_base if stream.duration else None
            self.frame_count = stream.frames or (round(duration * self.fps) if duration else None)
            self.frame_count_exact = False
            first = _first_frame(container, stream)
        coded = (stream.codec_context.height, stream.codec_context.width)
        self._orientation: Orientation = display_orientation(first, self.path)
        self.height, self.width = self._orientation.shape(coded)
        # timestamps count from the first frame (the audio keeps its offset to it, see DriverAudio)
        self._origin = self._seconds(first.pts) if first is not None and first.pts is not None else Fraction(0)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        """Frames ``start, start+1, ...`` to the end, each ``(H, W, 3)`` uint8 RGB, decoded one at a time.

        A video seeks to the last key frame at or before ``start`` that an earlier pass has decoded, else it
        decodes from the first frame; frames before ``start`` are decoded but not converted.
        """
        return (frame for _, frame in self.timed_frames(start))

    def timed_frames(self, start: int = 0) -> Iterator[tuple[Fraction, np.ndarray]]:
        """``(time, frame)`` of frames ``start, start+1, ...``: ``frames(start)`` with each frame's time.

        ``time`` is the frame's presentation time in seconds as a ``Fraction``, counted from the first frame
        (0 for frame 0): a variable-frame-rate video gives each frame its own time, an image ``i`` has ``i / fps``.
        Times strictly increase: a frame without a timestamp, or with one not after the previous frame's, is
        placed ``1 / fps`` after the previous frame.
        """
        if self._images is not None:
            return ((index / self.fps, _read_image(p, (self.height, self.width)))
                    for index, p in enumerate(self._images[start:], start))
        return self._video_frames(start)

    def chunks(self, size: int, start: int = 0) -> Iterator[np.ndarray]:
        """Consecutive chunks ``(n, H, W, 3)`` uint8 RGB of ``n = size`` frames (the last may be shorter)."""
        return batched(self.frames(start), size)

    def _open(self) -> av.container.InputContainer:
        try:
            container = av.open(str(self.path))
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot read video {self.path}: {exc.strerror or exc}") from exc
        if not container.streams.video:
            container.close()
            raise InputError(f"{self.path} holds no video stream")
        return container

    def _seconds(self, pts: int) -> Fraction:
        return pts * Fraction(self.time_base)

    def _video_frames(self, start: int) -> Iterator[tuple[Fraction, np.ndarray]]:
        seek_point = max((i for i in self._keyframes if 0 < i <= start), default=None)
        if seek_point is not None:
            try:
                yield from self._decode(start, seek_point)
                return
            except _SeekMissed:
                self._keyframes.clear()
        yield from self._decode(start, None)

    def _decode(self, start: int, seek_point: int | None) -> Iterator[tuple[Fraction, np.ndarray]]:
        """Decode from the key frame ``seek_point`` (None: from the beginning), yielding frames from ``start``.

        Raises _SeekMissed, before yielding anything, when seeking did not land on that key frame.
        """
        index, key_pts = (0, None) if seek_point is None else (seek_point, self._keyframes[seek_point])
        time: Fraction | None = None   # the previous frame's time
        with self._open() as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if key_pts is not None:
                container.seek(key_pts, stream=stream)
            try:
                for frame in container.decode(stream):
                    if key_pts is not None:
                        if frame.pts is None or frame.pts < key_pts:
                            continue  # leading frames of an open GOP, shown before the key frame
                        if frame.pts != key_pts:
                            raise _SeekMissed
                        key_pts = None
                    if frame.key_frame and frame.pts is not None:
                        self._keyframes[index] = frame.pts
                    time = self._frame_time(frame.pts, time, index)
                    if index >= start:
                        yield time, self._orientation.apply(frame.to_ndarray(format="rgb24"))
                    index += 1
            except av.FFmpegError as exc:
                raise InputError(f"cannot decode {self.path} at frame {index}: {exc.strerror or exc}") from exc
        if index == 0:
            raise InputError(f"{self.path} holds no decodable video frames")
        self.frame_count, self.frame_count_exact = index, True


    def _frame_time(self, pts: int | None, previous: Fraction | None, index: int) -> Fraction:
        """A frame's time from the first frame (see :meth:`timed_frames`)."""
        step = 1 / self.fps
        if pts is None or (previous is not None and self._seconds(pts) - self._origin <= previous):
            return index * step if previous is None else previous + step
        return self._seconds(pts) - self._origin


def _first_frame(container: av.container.InputContainer, stream: av.VideoStream) -> av.VideoFrame | None:
    """The first decodable frame of ``stream`` (its timestamp and display matrix), or None."""
    try:
        return next(container.decode(stream), None)
    except av.FFmpegError:
        return None   # reported, naming the frame, when the video is decoded


class _SeekMissed(Exception):
    """Seeking landed elsewhere than the recorded key frame; the caller decodes from the beginning instead."""


def batched(frames: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Group ``(H, W, 3)`` frames into chunks ``(n, H, W, 3)`` of ``n = size`` (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"chunk size must be ≥ 1, got {size}")
    with closing(frames):
        while batch := list(islice(frames, size)):
            yield np.stack(batch)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def _image_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted((p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise InputError(f"no {'/'.join(IMAGE_SUFFIXES)} images in folder {path}")
    return files


def _read_image(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image as ``(H, W, 3)`` uint8 RGB, upright, from its real range; ``size`` = the required ``(H, W)``."""
    rgb = to_uint8_rgb(read_image(path))
    if size is not None and rgb.shape[:2] != size:
        raise InputError(f"image {path} is {rgb.shape[1]}×{rgb.shape[0]}, other frames are {size[1]}×{size[0]}")
    return rgb
