"""Streaming video input and output: frames are decoded and encoded a chunk at a time, never all at once.

Frames are ``(H, W, 3)`` uint8 RGB arrays; chunks are ``(n, H, W, 3)`` uint8 RGB. A driver is a video file
(anything FFmpeg reads, through PyAV), a folder of ``*.png``/``*.jpg`` images or a single image. Memory stays
flat on long videos: a reader holds one chunk, a writer one frame plus the encoder's own look-ahead.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # image drivers: the official target folders hold *.png|*.jpg (reference spec §1.1)
DEFAULT_IMAGE_FPS = Fraction(25)  # frame rate given to image drivers: the official videos are written at 25 fps (reference spec §1.10)
LENGTH_POLICIES = ("stop", "loop", "pingpong")  # what a driver does when more frames are wanted than it holds
MAX_RATE_DENOMINATOR = 65535  # MPEG-4 Part 2 time bases must fit 16 bits (FFmpeg mpeg4 encoder); 30000/1001 is kept exactly
X264_CRF = 18  # libx264 constant rate factor: visually near-lossless (x264 documentation, "CRF guide")
MPEG4_QSCALE = 2  # MPEG-4 Part 2 quantiser (2 best .. 31 worst), used when libx264 is not in PyAV's FFmpeg build
_FF_QP2LAMBDA = 118  # FFmpeg's quantiser→lambda scale (libavutil/avutil.h), for `global_quality`


class VideoReader:
    """A driver: video file, folder of images or single image, decoded lazily into RGB frames.

    Args:
        path: video file, folder of ``*.png``/``*.jpg``/``*.jpeg`` images (natural sort: ``2.png`` before
            ``10.png``) or a single image. Images are decoded with PIL, EXIF-rotated, converted to RGB, and must
            all have the first image's size.
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

    def __init__(self, path: str | Path, *, image_fps: Fraction | float = DEFAULT_IMAGE_FPS) -> None:
        self.path = Path(path)
        self._keyframes: dict[int, int] = {}  # frame index → pts of key frames seen while decoding (seek points)
        if not self.path.exists():
            raise InputError(f"driver not found: {self.path}")
        if self.path.is_dir() or self.path.suffix.lower() in IMAGE_SUFFIXES:
            self._images: list[Path] | None = _image_files(self.path)
            self.height, self.width = _read_image(self._images[0]).shape[:2]
            self.fps, self.has_audio = exact_rate(image_fps), False
            self.frame_count, self.frame_count_exact = len(self._images), True
            return
        self._images = None
        with self._open() as container:
            stream = container.streams.video[0]
            self.width, self.height = stream.codec_context.width, stream.codec_context.height
            self.fps = exact_rate(stream.average_rate or stream.guessed_rate or stream.base_rate or DEFAULT_IMAGE_FPS)
            self.has_audio = bool(container.streams.audio)
            duration = stream.duration * stream.time_base if stream.duration else None
            self.frame_count = stream.frames or (round(duration * self.fps) if duration else None)
            self.frame_count_exact = False

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        """Frames ``start, start+1, ...`` to the end, each ``(H, W, 3)`` uint8 RGB, decoded one at a time.

        A video seeks to the last key frame at or before ``start`` when an earlier pass has seen one, and
        otherwise decodes from the first frame, skipping frames before ``start`` without converting them.
        """
        if self._images is not None:
            return (_read_image(p, (self.height, self.width)) for p in self._images[start:])
        return self._video_frames(start)

    def chunks(self, size: int, start: int = 0) -> Iterator[np.ndarray]:
        """Consecutive chunks ``(n, H, W, 3)`` uint8 RGB with ``n = size`` (the last one may be shorter)."""
        return _batched(self.frames(start), size)

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
        """Decode from the key frame ``seek_point`` (or from the beginning), yielding frames from ``start``.

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


def driver_frames(reader: VideoReader, num_frames: int | None = None, policy: str = "stop",
                  *, block: int = 32) -> Iterator[np.ndarray]:
    """Stream a driver's frames ``(H, W, 3)`` uint8 RGB under a length policy.

    Args:
        reader: the driver.
        num_frames: frames wanted; None means the driver's own length (one forward pass, any policy).
        policy: ``"stop"`` ends at the driver's end or at ``num_frames``, whichever comes first; ``"loop"``
            restarts from frame 0 (0..L-1, 0..L-1, ...); ``"pingpong"`` plays forward then backward without
            repeating the end frames (0..L-1, L-2..1, 0..L-1, ...).
        block: frames held at once by the backward passes of ``"pingpong"``.

    The backward pass is decoded in blocks of ``block`` frames from the last one: each block seeks to the key
    frame before it (found during the forward pass), decodes forward to the block's end and is yielded
    reversed. Memory is one block (``block·H·W·3`` bytes, 25 MB for 32 frames of 512²) instead of the whole
    video; the cost is decoding again from the key frame to each block, i.e. about ``1 + GOP/block`` times the
    forward decoding work (a file whose seeks cannot be trusted is decoded from its start for every block).
    """
    if policy not in LENGTH_POLICIES:
        raise InputError(f"unknown length policy {policy!r}: choose one of {', '.join(LENGTH_POLICIES)}")
    if num_frames is not None and num_frames < 0:
        raise InputError(f"the number of frames must be ≥ 0, got {num_frames}")
    if block < 1:
        raise ValueError(f"block must be ≥ 1, got {block}")
    if num_frames is None or policy == "stop":
        frames = reader.frames()
    else:
        frames = _looped(reader) if policy == "loop" else _pingponged(reader, block)
    with closing(frames):
        yield from islice(frames, num_frames)


def driver_chunks(reader: VideoReader, size: int, num_frames: int | None = None, policy: str = "stop",
                  *, block: int = 32) -> Iterator[np.ndarray]:
    """``driver_frames`` grouped into chunks ``(n, H, W, 3)`` uint8 RGB of ``size`` frames (the last may be shorter)."""
    return _batched(driver_frames(reader, num_frames, policy, block=block), size)


def _looped(reader: VideoReader) -> Iterator[np.ndarray]:
    while True:
        yield from reader.frames()


def _pingponged(reader: VideoReader, block: int) -> Iterator[np.ndarray]:
    length = 0
    for length, frame in enumerate(reader.frames(), start=1):
        yield frame
    while True:
        end = length - 1  # backward pass: frames length-2 .. 1, in blocks taken from the end
        while end > 1:
            begin = max(1, end - block)
            with closing(reader.frames(begin)) as frames:
                window = list(islice(frames, end - begin))
            yield from reversed(window)
            end = begin
        yield from reader.frames()


def _batched(frames: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
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
    """One image as ``(H, W, 3)`` uint8 RGB (EXIF orientation applied); ``size`` = required ``(H, W)``."""
    try:
        with Image.open(path) as image:
            rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc
    if size is not None and rgb.shape[:2] != size:
        raise InputError(f"image {path} is {rgb.shape[1]}×{rgb.shape[0]}, other frames are {size[1]}×{size[0]}")
    return rgb


def exact_rate(fps: Fraction | float | int) -> Fraction:
    """A frame rate as an exact ``Fraction`` (floats are snapped to the nearest ratio with denominator ≤ 65535)."""
    rate = Fraction(fps).limit_denominator(MAX_RATE_DENOMINATOR)
    if rate <= 0:
        raise InputError(f"frame rate must be positive, got {fps}")
    return rate


def pick_video_codec() -> str:
    """``"libx264"`` (H.264) when PyAV's FFmpeg build has that encoder, else ``"mpeg4"`` (MPEG-4 Part 2)."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


class _FrameSink:
    """Shared ``write``/``close`` contract of the writers: chunks of one size, context-manager use."""

    def __init__(self) -> None:
        self.frames_written = 0
        self._size: tuple[int, int] | None = None  # (H, W) of the first chunk

    def write(self, frames: np.ndarray) -> None:
        """Append frames ``(n, H, W, 3)`` uint8 RGB (numpy, or anything ``np.asarray`` takes); H, W fixed by the first call."""
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"frames must be (n, H, W, 3) uint8 RGB, got {frames.dtype} {tuple(frames.shape)}")
        if self._size is None:
            self._size = frames.shape[1:3]
        elif frames.shape[1:3] != self._size:
            raise InputError(f"frames are {frames.shape[2]}×{frames.shape[1]}, earlier ones {self._size[1]}×{self._size[0]}")
        self._write(frames)
        self.frames_written += len(frames)

    def _write(self, frames: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output; calling it again does nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class PngFramesWriter(_FrameSink):
    """Write frames as ``frames_dir/000000.png``, ``000001.png``, ... (RGB PNG; the folder is created)."""

    def __init__(self, frames_dir: str | Path) -> None:
        super().__init__()
        self.frames_dir = Path(frames_dir)
        try:
            self.frames_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create frames folder {self.frames_dir}: {exc}") from exc

    def _write(self, frames: np.ndarray) -> None:
        for offset, rgb in enumerate(frames):
            Image.fromarray(rgb).save(self.frames_dir / f"{self.frames_written + offset:06d}.png")


class VideoWriter(_FrameSink):
    """Encode frames as they come into a video file, with the driver's audio muxed alongside.

    Video: H.264 (libx264, CRF 18) or MPEG-4 Part 2 when libx264 is missing (``pick_video_codec``), yuv420p,
    at the exact rational ``fps`` (frame ``i`` has timestamp ``i / fps``). yuv420p needs even sizes: an odd
    height or width is padded by repeating the last row or column, so a 63×47 input is stored as 64×48.

    Audio: the first audio stream of ``audio_from`` (the driver), aligned with its first video frame. Packets
    are copied without re-encoding when the output container accepts the codec, otherwise decoded and encoded
    as AAC. Audio past the last written frame is dropped (cut at packet/frame granularity, ≤ ~25 ms over); an
    output longer than the audio is silent after it ends. A file without audio adds no audio stream.

    The file is finalised by ``close()`` (or leaving a ``with`` block); with no frame written it is removed.

    Args:
        path: output file; its suffix picks the container (``.mp4``, ``.mkv``, ``.mov``, ...).
        fps: frame rate, kept exact (``reader.fps``, e.g. ``Fraction(30000, 1001)``).
        audio_from: file whose audio is copied, or None.
        codec: video encoder name to force, else ``pick_video_codec()``.
    """

    def __init__(self, path: str | Path, fps: Fraction | float, audio_from: str | Path | None = None,
                 *, codec: str | None = None) -> None:
        super().__init__()
        self.path, self.fps, self.codec = Path(path), exact_rate(fps), codec or pick_video_codec()
        self._audio = _AudioCopy(Path(audio_from)) if audio_from is not None else None
        try:
            self._container = av.open(str(self.path), "w")
        except (av.FFmpegError, OSError, ValueError) as exc:
            if self._audio is not None:
                self._audio.close()
            raise InputError(f"cannot write video {self.path}: {getattr(exc, 'strerror', None) or exc}") from exc
        self._video: av.VideoStream | None = None
        self._closed = False

    def _start(self, height: int, width: int) -> None:
        options = {"crf": str(X264_CRF)} if self.codec == "libx264" else {
            "flags": "+qscale", "global_quality": str(MPEG4_QSCALE * _FF_QP2LAMBDA)}
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
            self._audio.copy_until(self._container, (self.frames_written + len(frames)) / self.fps)

    def close(self) -> None:
        """Flush the encoder, copy the audio up to the last frame's end and finalise the file."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._video is not None:
                self._container.mux(self._video.encode(None))
                if self._audio is not None:
                    self._audio.copy_until(self._container, self.frames_written / self.fps)
                    self._audio.flush(self._container)
        finally:
            if self._audio is not None:
                self._audio.close()
            self._container.close()
            if self._video is None:
                self.path.unlink(missing_ok=True)


class _AudioCopy:
    """The first audio stream of a driver, copied (or transcoded to AAC) into an output up to a given time."""

    def __init__(self, path: Path) -> None:
        try:
            self._input = av.open(str(path))
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot read audio of {path}: {getattr(exc, 'strerror', None) or exc}") from exc
        self._stream = self._input.streams.audio[0] if self._input.streams.audio else None
        video = self._input.streams.video[0] if self._input.streams.video else None
        self._offset = video.start_time * video.time_base if video is not None and video.start_time else 0  # seconds
        self._output: av.AudioStream | None = None  # the output's audio stream, once attached
        self._encoder: av.AudioStream | None = None  # the same stream when it is AAC-encoded, None when copied
        self._packets: Iterator[av.Packet] = iter(())
        self._pending: av.Packet | None = None  # first packet past the time copied so far

    def attach(self, container: av.container.OutputContainer) -> None:
        """Add the output audio stream: a copy of the input's when the container accepts its codec, else AAC."""
        if self._stream is None:
            return
        if self._stream.codec_context.name in container.supported_codecs:
            self._output = container.add_stream_from_template(self._stream)
        else:
            rates = av.Codec("aac", "w").audio_rates
            rate = self._stream.rate if self._stream.rate in rates else 48000
            self._output = self._encoder = container.add_stream("aac", rate=rate, layout=self._stream.layout.name)
        self._packets = self._input.demux(self._stream)

    def copy_until(self, container: av.container.OutputContainer, seconds: Fraction) -> None:
        """Mux the input's audio that starts before ``seconds`` (output time, 0 = the driver's first frame)."""
        if self._output is None:
            return
        while True:
            packet = self._pending or next(self._packets, None)
            self._pending = None
            if packet is None:
                return
            if packet.pts is None or packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            start = packet.pts * packet.time_base - self._offset
            if start >= seconds:
                self._pending = packet
                return
            if start + (packet.duration or 0) * packet.time_base <= 0:
                continue  # entirely before the first video frame
            if self._encoder is None:
                shift = round(self._offset / packet.time_base)
                packet.pts, packet.dts = packet.pts - shift, (packet.dts - shift if packet.dts is not None else None)
                packet.stream = self._output
                container.mux(packet)
            else:
                for frame in packet.decode():
                    frame.pts = round(max(frame.pts * frame.time_base - self._offset, 0) * self._encoder.rate)
                    frame.time_base = Fraction(1, self._encoder.rate)
                    container.mux(self._encoder.encode(frame))

    def flush(self, container: av.container.OutputContainer) -> None:
        if self._encoder is not None:
            container.mux(self._encoder.encode(None))

    def close(self) -> None:
        self._input.close()
