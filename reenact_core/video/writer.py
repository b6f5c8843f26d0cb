"""Frame sinks with one ``write(frames, times=None)`` interface: an encoded video file, or a folder of PNG frames.

Both appear whole or not at all: they are written under a temporary name beside the target and renamed to it
when closed (``reenact_core.files``); after an error or an interrupt the target is left as it was.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from ..errors import InputError
from ..faces.images import check_image, save_image
from ..files import publish, publish_folder, temporary_beside
from .audio import DriverAudio
from .rate import MAX_RATE_DENOMINATOR, exact_rate

X264_CRF = 18  # libx264 constant rate factor: visually near-lossless (x264/FFmpeg H.264 encoding guide)
X264_LOOKAHEAD = 40  # libx264's default rc-lookahead (preset medium): frames it holds before encoding one
LOOKAHEAD_BYTES = 256 * 2**20  # yuv420p bytes of the frames an encoder holds for lookahead or threads, at most
X264_MIN_LOOKAHEAD = 12  # frames of lookahead below which frame_size_options switches libx264 to X264_LOW_MEMORY
X264_LOW_MEMORY = "ref=2:bframes=1:rc-lookahead=1"  # x264-params of huge frames: ~20 frames held, not ~40 (2 CPUs)
VPX_LAG = 25  # libvpx-vp9's default lag-in-frames: frames it holds before encoding one
MPEG4_QSCALE = 2  # MPEG-4 Part 2 constant quantiser, 2 (best) .. 31, for builds without libx264
VP9_CRF = 31  # libvpx-vp9 constant quality (0..63; FFmpeg's VP9 guide suggests 31 for 1080p, lower is better)
VP9_SPEED = 4  # libvpx cpu-used: 0 (slowest, best) .. 8; 4 keeps CPU encoding a few times faster than 1
VP8_CRF, VP8_BITRATE = 10, "4M"  # libvpx (VP8) needs a bitrate cap with its quality setting
GIF_COLOURS = 256  # a palette per frame, median cut with Floyd-Steinberg dithering (PIL)
FRAME_FILE = re.compile(r"\d{6}\.png")  # the names PngFramesWriter gives: 000000.png, 000001.png, ...
_ENCODER_OPTIONS = {
    "libx264": {"crf": str(X264_CRF)},
    "mpeg4": {"flags": "+qscale", "qmin": str(MPEG4_QSCALE), "qmax": str(MPEG4_QSCALE)},
    "libvpx-vp9": {"crf": str(VP9_CRF), "b": "0", "row-mt": "1", "cpu-used": str(VP9_SPEED)},
    "libvpx": {"crf": str(VP8_CRF), "b": VP8_BITRATE},
}


@dataclass(frozen=True)
class OutputFormat:
    """How a video container is written: its video encoders and the audio that fits it.

    Attributes:
        video: video encoders in order of preference (the first this FFmpeg build has is used).
        pix_fmt: pixel format of the encoded frames (8 bits per channel).
        audio: encoders for driver audio the container does not take as it is, in order of preference;
            empty: the container holds no audio.
        copied: audio codecs copied without re-encoding; None: any codec the container accepts.
    """

    video: tuple[str, ...]
    pix_fmt: str
    audio: tuple[str, ...]
    copied: frozenset[str] | None


_H264 = ("libx264", "mpeg4")
_AAC = OutputFormat(_H264, "yuv420p", ("aac",), frozenset({"aac"}))
OUTPUT_FORMATS = {
    ".mp4": _AAC, ".m4v": _AAC, ".mov": _AAC,
    ".mkv": OutputFormat(_H264, "yuv420p", ("aac",), None),
    ".webm": OutputFormat(("libvpx-vp9", "libvpx"), "yuv420p", ("libopus", "libvorbis"), frozenset({"opus", "vorbis"})),
    ".gif": OutputFormat(("gif",), "pal8", (), frozenset()),
}
VIDEO_SUFFIXES = tuple(OUTPUT_FORMATS)


def output_format(path: str | Path) -> OutputFormat:
    """The :class:`OutputFormat` of a video file by its suffix (InputError for a suffix not in ``VIDEO_SUFFIXES``)."""
    fmt = OUTPUT_FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InputError(f"cannot write video {Path(path).name}: unknown container {Path(path).suffix or '(none)'}; "
                         f"give one of {', '.join(VIDEO_SUFFIXES)}")
    return fmt


def video_encoder(path: str | Path) -> str:
    """The encoder a video file gets: the first of its format's ``video`` encoders this FFmpeg build has.

    Raises:
        InputError: unknown suffix, or no such encoder in this build.
    """
    fmt = output_format(path)
    encoder = _available(fmt.video)
    if encoder is None:
        raise InputError(f"cannot write {Path(path).suffix} video: this FFmpeg build has none of the encoders "
                         f"{', '.join(fmt.video)}")
    return encoder


def _available(encoders: tuple[str, ...]) -> str | None:
    return next((name for name in encoders if name in av.codecs_available), None)


def check_frames_folder(frames_dir: str | Path) -> Path:
    """``frames_dir`` if a PNG frames folder may be written there: absent, empty, or holding only frame files
    (``000000.png``, ... of an earlier run, which the new frames replace as a whole); else InputError."""
    frames_dir = Path(frames_dir)
    if frames_dir.exists() and not frames_dir.is_dir():
        raise InputError(f"frames folder {frames_dir} is a file")
    if frames_dir.is_dir():
        others = [p.name for p in frames_dir.iterdir() if not FRAME_FILE.fullmatch(p.name)]
        if others:
            raise InputError(f"frames folder {frames_dir} holds other files ({others[0]}, ...): the frames replace "
                             "the folder as a whole; give a new or empty folder")
    return frames_dir


def _time_base(unit: Fraction, codec: str) -> Fraction:
    """The encoder's time base: ``unit``, coarsened to 1/65535 s for MPEG-4 Part 2 (16-bit time bases)."""
    if codec == "mpeg4" and unit.denominator > MAX_RATE_DENOMINATOR:
        return Fraction(1, MAX_RATE_DENOMINATOR)
    return unit


def frame_size_options(codec: str, height: int, width: int) -> dict[str, str]:
    """Encoder options that bound the frames ``codec`` holds for frames of ``height`` × ``width``.

    libx264 holds its rc-lookahead frames, one frame per thread (by default 40 and 1.5 per CPU), its reference and
    B-frames, each in yuv420p plus about twice as much in half-pel planes and analysis buffers: with its defaults a
    24-MP video would hold 2-3 GB. Lookahead and threads are cut so that the frames held for them stay within
    :data:`LOOKAHEAD_BYTES` (frames up to 4.4 MP keep x264's defaults); frames so big that fewer than
    :data:`X264_MIN_LOOKAHEAD` fit (above ~15 MP) are encoded with :data:`X264_LOW_MEMORY` (2 references, 1
    B-frame, 1 frame of lookahead: at 24 MP on 2 CPUs the encoder holds ~0.75 GiB, ~1.4 GiB with only lookahead
    and threads cut). libvpx-vp9 holds ``lag-in-frames`` frames (25) beyond its fixed ~1.7 GiB at 24 MP: cut to
    fit :data:`LOOKAHEAD_BYTES`. Other encoders (VP8 included) hold one frame or two: no options.
    """
    held = LOOKAHEAD_BYTES // (height * width * 3 // 2)
    if codec == "libvpx-vp9":
        return {"lag-in-frames": str(held)} if held < VPX_LAG else {}
    if codec != "libx264":
        return {}
    options = ({"x264-params": X264_LOW_MEMORY} if held < X264_MIN_LOOKAHEAD
               else {"rc-lookahead": str(min(X264_LOOKAHEAD, held))})
    if held < _cpu_count() * 3 // 2:   # x264's automatic thread count
        options["threads"] = str(max(1, held))   # 0 would be x264's automatic count
    return options


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class _FrameSink:
    """The writers' shared contract: ``write`` chunks of one frame size, ``close``, context-manager use."""

    def __init__(self) -> None:
        self.frames_written = 0
        self._size: tuple[int, int] | None = None  # (H, W) of the first chunk

    def write(self, frames: np.ndarray, times=None) -> None:
        """Append frames ``(n, H, W, 3)`` uint8 RGB (anything ``np.asarray`` takes; ``PngFramesWriter`` also takes
        grey, RGBA, 16-bit and float frames); the first call fixes H, W.

        ``times``: optional (n,) presentation times in seconds (numbers or ``Fraction``), counted from the
        first frame written; a video places each frame at its time, a frames folder ignores them.
        """
        frames = self._checked(np.asarray(frames))
        if times is not None and len(times) != len(frames):
            raise InputError(f"{len(times)} frame times for {len(frames)} frames")
        if self._size is None:
            self._size = frames.shape[1:3]
        elif frames.shape[1:3] != self._size:
            raise InputError(f"frames are {frames.shape[2]}×{frames.shape[1]}, earlier ones were "
                             f"{self._size[1]}×{self._size[0]}")
        self._write(frames, times)
        self.frames_written += len(frames)

    def _checked(self, frames: np.ndarray) -> np.ndarray:
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"frames must be (n, H, W, 3) uint8 RGB, got {frames.dtype} {tuple(frames.shape)}")
        return frames

    def _write(self, frames: np.ndarray, times) -> None:
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
    """Write frames as ``frames_dir/000000.png``, ``000001.png``, ... in the frames' own layout and depth.

    Frames are ``(n, H, W)`` or ``(n, H, W, C)`` with C = 1 (grey), 3 (RGB) or 4 (RGBA), uint8, uint16 or float in
    [0, 1]: each PNG keeps the channels, alpha included, and the bit depth (8 or 16; float is stored as 16-bit),
    see ``reenact_core.faces.images.save_image``.

    The folder appears whole: frames go to a temporary folder beside ``frames_dir``, which ``close()`` renames to
    ``frames_dir`` (replacing the frames of an earlier run there); ``abort()`` removes it and leaves
    ``frames_dir`` as it was, as does closing without a frame written.

    Raises:
        InputError: ``frames_dir`` is a file or holds files other than frames (``check_frames_folder``), or the
            folder cannot be created.
    """

    def __init__(self, frames_dir: str | Path) -> None:
        super().__init__()
        self.frames_dir = check_frames_folder(frames_dir)
        try:
            self._temporary = temporary_beside(self.frames_dir)
            self._temporary.mkdir()
        except OSError as exc:
            raise InputError(f"cannot create frames folder {self.frames_dir}: {exc.strerror or exc}") from exc
        self._closed = False

    def _checked(self, frames: np.ndarray) -> np.ndarray:
        if frames.ndim not in (3, 4) or not len(frames):
            raise InputError(f"frames must be (n, H, W) or (n, H, W, C) images, got {tuple(frames.shape)}")
        check_image(frames[0], min_side=1)
        return frames

    def _write(self, frames: np.ndarray, times) -> None:
        for offset, image in enumerate(frames):
            save_image(self._temporary / f"{self.frames_written + offset:06d}.png", image)

    def close(self) -> None:
        """Rename the finished folder to ``frames_dir`` (nothing happens when no frame was written)."""
        if self._closed:
            return
        self._closed = True
        if self.frames_written:
            publish_folder(self._temporary, self.frames_dir)
        else:
            shutil.rmtree(self._temporary, ignore_errors=True)

    def abort(self) -> None:
        """Remove the unfinished folder: ``frames_dir`` is left as it was."""
        self._closed = True
        shutil.rmtree(self._temporary, ignore_errors=True)


class VideoWriter(_FrameSink):
    """Encode frames as they come into a video file, with the driver's audio muxed alongside.

    Video: the container (the suffix of ``path``) picks the encoder, see ``OUTPUT_FORMATS``: ``.mp4``, ``.m4v``,
    ``.mov`` and ``.mkv`` get H.264 (libx264, CRF 18) or, without libx264, MPEG-4 Part 2 (constant quantiser 2);
    ``.webm`` VP9 (libvpx-vp9, CRF 31) or, without it, VP8; ``.gif`` GIF with a 256-colour palette per frame. All
    are 8-bit RGB content (yuv420p, or pal8 for GIF): deeper or alpha frames are not accepted. Frames are timed
    at the exact rational ``fps`` (frame ``i`` has timestamp ``i / fps``), or at the times given to ``write`` (a
    variable frame rate: timestamps in units of ``time_base``, rounded, and kept strictly increasing).
    libx264 takes only even sizes: there an odd height or width is padded by repeating the last row or column, so
    63×47 frames are stored as 64×48 (crop the last row/column on reading to get the input back); the other
    encoders keep the frames' size.

    Audio: the first audio stream of ``audio_from`` (the driver), kept in sync with its first video frame.
    Packets are copied without re-encoding when the container takes the codec as it is (AAC in mp4/m4v/mov,
    Opus or Vorbis in webm, anything Matroska accepts in mkv), otherwise decoded and encoded (AAC; Opus, else
    Vorbis, for webm) at the input's sample rate, or 48 kHz when the encoder lacks it. GIF holds no audio.
    Audio that ends before the first video frame is dropped, and when nothing is left no audio stream is added;
    audio past the last written frame is dropped (at packet granularity, so it may run up to one packet,
    ~20-60 ms, past the video); after the audio ends, an output longer than it is silent. ``audio_written``
    says whether any audio packet went into the file. Audio is muxed as the frames arrive: nothing accumulates.

    The parent folder is created. The video is written under a temporary name beside ``path``; ``close()`` (or
    leaving a ``with`` block normally) finalises it and moves it to ``path`` with mode ``0666 & ~umask``; if no
    frame was written, no file is left. ``abort()`` (leaving the block on an error or interrupt) removes the
    unfinished file and leaves ``path`` as it was.

    Args:
        path: output file; its suffix picks the container (one of ``VIDEO_SUFFIXES``).
        fps: frame rate in frames per second, kept exact (pass ``reader.fps``, e.g. ``Fraction(30000, 1001)``).
        audio_from: media file whose audio is copied (usually the driver video), or None.
        codec: video encoder to force (a PyAV codec name), else the container's (``video_encoder``).
        time_base: unit of the timestamps in seconds (pass the driver's ``reader.time_base`` with frame times);
            default ``1 / fps``. MPEG-4 Part 2 takes units down to 1/65535 s; a finer one is coarsened to that.

    Raises:
        InputError: unknown container suffix or no encoder for it, a folder that cannot be created, unreadable
            ``audio_from``, or (from ``write``) frames of the wrong type or size.
    """

    def __init__(self, path: str | Path, fps: Fraction | float, audio_from: str | Path | None = None,
                 *, codec: str | None = None, time_base: Fraction | None = None) -> None:
        super().__init__()
        self.path, self.fps = Path(path), exact_rate(fps)
        self._format = output_format(self.path)
        self.codec = codec or video_encoder(self.path)
        self.time_base = _time_base(Fraction(time_base) if time_base else 1 / self.fps, self.codec)
        self._pts, self._end = -1, Fraction(0)   # the last frame's timestamp; the end of the last frame (seconds)
        try:
            self._temporary = temporary_beside(self.path)   # published to `path` when closed
            self._container = av.open(str(self._temporary), "w")
        except (OSError, ValueError) as exc:  # ValueError: no container format for this suffix
            raise InputError(f"cannot write video {self.path}: {getattr(exc, 'strerror', None) or exc}") from exc
        self._audio = None
        if audio_from is not None and self._format.audio:
            try:
                self._audio = DriverAudio(Path(audio_from))
            except InputError:
                self._container.close()
                self._temporary.unlink(missing_ok=True)
                raise
        self._video: av.VideoStream | None = None
        self._closed = False

    @property
    def audio_written(self) -> bool:
        """Whether any audio packet has been muxed into the file."""
        return self._audio is not None and self._audio.packets_muxed > 0

    def _start(self, height: int, width: int) -> None:
        options = {**_ENCODER_OPTIONS.get(self.codec, {}), **frame_size_options(self.codec, height, width)}
        self._video = self._container.add_stream(self.codec, rate=self.fps, options=options)
        even = self.codec == "libx264"
        self._video.width, self._video.height = width + even * (width % 2), height + even * (height % 2)
        self._video.pix_fmt = self._format.pix_fmt
        self._video.codec_context.time_base = self.time_base
        if self._audio is not None:
            self._audio.attach(self._container, self._format.copied, self._format.audio)

    def _write(self, frames: np.ndarray, times) -> None:
        if self._video is None:
            self._start(*frames.shape[1:3])
        height, width = frames.shape[1:3]
        pad_h, pad_w = self._video.height - height, self._video.width - width
        if pad_h or pad_w:
            frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        for offset, rgb in enumerate(frames):
            frame = self._frame(np.ascontiguousarray(rgb))
            seconds = Fraction(times[offset]) if times is not None else (self.frames_written + offset) / self.fps
            frame.pts = self._pts = max(round(seconds / self.time_base), self._pts + 1)
            self._end = self._pts * self.time_base + 1 / self.fps
            self._container.mux(self._video.encode(frame))
        if self._audio is not None:
            self._audio.mux_until(self._container, self._end)

    def _frame(self, rgb: np.ndarray) -> av.VideoFrame:
        if self._format.pix_fmt != "pal8":
            return av.VideoFrame.from_ndarray(rgb, format="rgb24")   # the encoder converts to its pix_fmt
        indexed = Image.fromarray(rgb).quantize(GIF_COLOURS, method=Image.Quantize.MEDIANCUT)
        colours = np.asarray(indexed.getpalette()[:3 * GIF_COLOURS], np.uint8).reshape(-1, 3)
        palette = np.zeros((GIF_COLOURS, 4), np.uint8)   # ARGB, opaque
        palette[:, 0], palette[:len(colours), 1:] = 255, colours
        return av.VideoFrame.from_ndarray((np.asarray(indexed), palette), format="pal8")

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
                    self._audio.mux_until(self._container, self._end)
                    self._audio.flush(self._container)
            finished = True
        finally:
            try:
                if self._audio is not None:
                    self._audio.close()
                self._container.close()
                if finished and self._video is not None:
                    publish(self._temporary, self.path)
            finally:
                self._temporary.unlink(missing_ok=True)   # gone once published; else the unfinished file

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
