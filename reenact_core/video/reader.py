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
from PIL import Image, ImageOps

from ..errors import InputError
from ..options import FPS
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
            by their EXIF orientation, converted to RGB, and must all have the first image's size.
        image_fps: frame rate reported for image drivers (a video reports its own).

    Attributes:
        path: the driver's path.
        fps: exact frame rate as a ``Fraction`` (e.g. ``30000/1001``); ``float(reader.fps)`` for a float.
        width, height: frame size in pixels (the coded size; sample aspect ratio and rotation tags are ignored).
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
            self.frame_count, self.frame_count_exact = len(self._images), True
            return
        self._images = None
        with self._open() as container:
            stream = container.streams.video[0]
            self.width, self.height = stream.codec_context.width, stream.codec_context.height
            self.fps = exact_rate(stream.average_rate or stream.guessed_rate or stream.base_rate or DEFAULT_FPS)
            self.has_audio = bool(container.streams.audio)
            duration = stream.duration * stream.time_base if stream.duration else None
            self.frame_count = stream.frames or (round(duration * self.fps) if duration else None)
            self.frame_count_exact = False

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        """Frames ``start, start+1, ...`` to the end, each ``(H, W, 3)`` uint8 RGB, decoded one at a time.

        A video seeks to the last key frame at or before ``start`` that an earlier pass has decoded, else it
        decodes from the first frame; frames before ``start`` are decoded but not converted.
        """
        if self._images is not None:
            return (_read_image(p, (self.height, self.width)) for p in self._images[start:])
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

    def _video_frames(self, start: int) -> Iterator[np.ndarray]:
        seek_point = max((i for i in self._keyframes if 0 < i <= start), default=None)
        if seek_point is not None:
            try:
                yield from self._decode(start, seek_point)
                return
            except _SeekMissed:
                self._keyframes.clear()
        yield from self._decode(start, None)

    def _decode(self, start: int, seek_point: int | None) -> Iterator[np.ndarray]:
        """Decode from the key frame ``seek_point`` (None: from the beginning), yielding frames from ``start``.

        Raises _SeekMissed, before yielding anything, when seeking did not land on that key frame.
        """
        index, key_pts = (0, None) if seek_point is None else (seek_point, self._keyframes[seek_point])
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
                    if index >= start:
                        yield frame.to_ndarray(format="rgb24")
                    index += 1
            except av.FFmpegError as exc:
                raise InputError(f"cannot decode {self.path} at frame {index}: {exc.strerror or exc}") from exc
        if index == 0:
            raise InputError(f"{self.path} holds no decodable video frames")
        self.frame_count, self.frame_count_exact = index, True


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
    """One image as ``(H, W, 3)`` uint8 RGB, EXIF orientation applied; ``size`` = the required ``(H, W)``."""
    try:
        with Image.open(path) as image:
            rgb = np.array(ImageOps.exif_transpose(image).convert("RGB"))
    except OSError as exc:  # PIL's UnidentifiedImageError included
        raise InputError(f"cannot read image {path}: {exc}") from exc
    if size is not None and rgb.shape[:2] != size:
        raise InputError(f"image {path} is {rgb.shape[1]}×{rgb.shape[0]}, other frames are {size[1]}×{size[0]}")
    return rgb
