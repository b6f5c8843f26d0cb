"""Driving a prepared source with the frames of a video, chunk by chunk: the five steps composed.

Per driver frame: align (``faces.alignment``: detect faces → track one person → smooth its landmarks →
reference crop, spec §1.2) → measure (:mod:`.measure`: DECA on the crop, the frame landmarks mapped into it) →
motion (:mod:`.motion`: smoothed normalised parameters → Δp) → render (:mod:`.render`: A, shift of W+ rows
0..L−1, truncation ψ toward w̄, checkpoint noise, spec §1.12; refined by the FSR encoder when the models have one,
its source half computed once per session) → composite (:mod:`.composite`: paste into the source image).

DECA, A and G run on windows of ``batch_size`` consecutive frames that start at multiples of ``batch_size`` in
the video (:func:`.plan.windows`, as the step nodes batch them), whatever the chunks fed to
:meth:`DriveSession.process` are, so a chunked run computes exactly what a one-shot run computes. A window is
rendered once it is full (or at :meth:`DriveSession.finish`), so a call returns the frames settled so far, in
order, and the state carried from one call to the next is bounded: the tracker's last face, the smoothers' last
values, the relative mode's reference, the last output (for "hold") and at most ``batch_size − 1`` cropped
frames.

With ``composite=False`` the chunks hold the crops only and :meth:`DriveSession.output_frames` pastes each
frame when it is asked for: a file-to-file job then holds one full frame at a time, whatever the portrait's
size and the chunk's length (a chunk of pasted frames with their float32 masks is 7 bytes a pixel a frame).

No-face policies (:func:`.plan.frame_rows`), for frames without the tracked face: ``"raise"`` (NoFaceError
naming the frame), ``"pass"`` (the source image itself, status ``"passed"``) and ``"hold"`` (the previous output
repeated bit for bit, status ``"held"``; frames before the first face get the first output, and a video without any face raises
NoFaceError at :meth:`DriveSession.finish`).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, NoFaceError
from ..faces.alignment import AlignedFace, FaceAligner
from ..landmarks import DEFAULT_BACKEND, LandmarkBackend, smallest_face_note
from ..method import CROP_SIZE
from ..options import (BATCH_SIZE, FACE, FPS, MODE, NO_FACE, SMOOTHING, STRENGTH, TRUNCATION, face_select)
from .composite import composite_frame
from .measure import estimate_codes
from .models import ReenactModels
from .motion import DriverMotion
from .plan import frame_rows
from .render import Rendered, fsr_context, render
from .source import PreparedSource

@dataclass(frozen=True)
class DriveOptions:
    """How a driver moves the source (choices, ranges and defaults: :mod:`reenact_core.options`).

    Args:
        mode: ``"absolute"`` (official: the source takes the driver's pose and expression,
            ``Δp = n(p_t) − n(p_s)``) or ``"relative"`` (the source keeps its own and moves as the driver moves
            from its first face, ``Δp = n(p_t) − n(p_first)``).
        pose: transfer the head pose (yaw, pitch, roll).
        expression: transfer the jaw and the 11 expressions.
        strength: factor on Δp (1 = as measured).
        smoothing: One-Euro smoothing strength in [0, 1] of the driver's landmarks and parameters (0 = off).
        no_face: ``"raise"``, ``"pass"`` or ``"hold"`` for frames without the tracked face (module docstring).
        select: driver face to track: index in left-to-right order, ``"largest"`` or ``"score"``.
        backend: landmark backend name or instance.
        paste_back: paste each rendered crop into the source image.
        color_match: match the crops' colours to the source image under the mask before pasting.
        truncation: ψ toward the source's mean latent (official 0.7).
        batch_size: frames per DECA / A / G window (:func:`reenact_core.engine.plan.windows`).

    Raises:
        InputError: a value outside its declaration.
    """

    mode: str = MODE.default
    pose: bool = True
    expression: bool = True
    strength: float = STRENGTH.default
    smoothing: float = SMOOTHING.default
    no_face: str = NO_FACE.default
    select: int | str = FACE.default
    backend: str | LandmarkBackend = DEFAULT_BACKEND
    paste_back: bool = True
    color_match: bool = False
    truncation: float = TRUNCATION.default
    batch_size: int = BATCH_SIZE.default

    def __post_init__(self) -> None:
        MODE.check(self.mode)
        NO_FACE.check(self.no_face)
        face_select(self.select)
        for option in (SMOOTHING, STRENGTH, TRUNCATION, BATCH_SIZE):
            option.check(getattr(self, option.name))


@dataclass
class DrivenChunk(Rendered):
    """Consecutive output frames of a session (see :class:`~reenact_core.engine.render.Rendered` for the
    crops, frames and masks; frames and masks are None too from a session with ``composite=False``).

    Attributes:
        indices: (n,) int64 driver frame indices, consecutive from the first frame not returned before.
        status: per frame, ``"driven"``, ``"held"`` or ``"passed"``.
    """

    indices: np.ndarray
    status: tuple[str, ...]


class _Outputs:
    """Output frames collected in order, stacked into a DrivenChunk."""

    def __init__(self, source: PreparedSource, paste: bool):
        self.source, self.paste = source, paste
        self.indices, self.status, self.items = [], [], []

    def add(self, index: int, item: tuple, status: str) -> None:
        self.indices.append(index)
        self.status.append(status)
        self.items.append(item)

    def chunk(self) -> DrivenChunk:
        image = self.source.image
        if self.items:
            crops, frames, masks = (np.stack(parts) if parts[0] is not None else None
                                    for parts in zip(*self.items))
        else:
            crops = np.zeros((0, CROP_SIZE, CROP_SIZE, 3), np.uint8)
            frames = np.zeros((0, *image.shape), image.dtype) if self.paste else None
            masks = np.zeros((0, *image.shape[:2]), np.float32) if self.paste else None
        return DrivenChunk(crops, frames, masks, np.array(self.indices, np.int64), tuple(self.status))


class DriveSession:
    """Reenacts a prepared source with driver frames fed in chunks of any size (see the module docstring).

    Args:
        models: the loaded networks.
        source: the prepared source (any device; moved to the models').
        options: driving options.
        fps: driver frame rate, for the smoothers' time constants (frames given without times are ``1 / fps``
            apart).
        composite: paste the frames into the chunks (``frames`` and ``masks``); False leaves those None, for
            :meth:`output_frames` to paste one frame at a time.
    """

    def __init__(self, models: ReenactModels, source: PreparedSource, options: DriveOptions = DriveOptions(), *,
                 fps: float = FPS.default, composite: bool = True):
        self.models = models
        self.options = options
        self.source = source.to(models.device, models.dtype)
        self._aligner = FaceAligner(options.select, options.no_face, options.smoothing, fps, options.backend)
        self._motion = DriverMotion(self.source.params, models.normaliser, options, fps=fps)
        self._window: list[AlignedFace | None] = []   # the current window's frames: aligned face or None
        self._last: tuple | None = None                # the last face's output (for "hold")
        self._waiting = 0  # leading frames without a face, under "hold": frames 0 .. _waiting − 1
        self._paste = paste = options.paste_back and composite
        self._passed = (self.source.crop, self.source.image if paste else None,
                        np.zeros(self.source.image.shape[:2], np.float32) if paste else None)
        self._context = None if models.fsr is None else fsr_context(models.generator.module, models.refiner,
                                                                    self.source, options.truncation)

    def process(self, frames: Iterable[np.ndarray], times=None) -> DrivenChunk:
        """Takes the next driver frames and returns the output frames settled so far.

        Args:
            frames: (n, H, W, 3) array or an iterable of images ((H, W) grey, (H, W, 1|3|4); uint8, uint16 or
                float in [0, 1]).
            times: optional (n,) increasing times of the frames in seconds (a variable-frame-rate driver's
                timestamps, :func:`reenact_core.video.timed_driver_frames`): the smoothers step by the real
                time between frames. Give times with every call or with none.

        Returns:
            The next output frames in order; frames of an unfinished batch window come with a later call.

        Raises:
            NoFaceError: a frame without the tracked face under the ``"raise"`` policy.
        """
        out = _Outputs(self.source, self._paste)
        frames = list(frames) if times is not None else frames
        if times is not None and len(times) != len(frames):
            raise InputError(f"{len(times)} frame times for {len(frames)} frames")
        for offset, frame in enumerate(frames):
            self._window.append(self._aligner(frame, None if times is None else float(times[offset])))
            if self.frames_seen % self.options.batch_size == 0:
                self._flush(out)
        return out.chunk()

    def finish(self) -> DrivenChunk:
        """Renders the last, partial window and returns its frames; ends the video.

        Raises:
            NoFaceError: under ``"hold"``, when no frame had a face.
        """
        out = _Outputs(self.source, self._paste)
        self._flush(out)
        if self._waiting:
            raise NoFaceError(f"no face found in any of the {self.frames_seen} driver frames"
                              + smallest_face_note(*self._aligner.frame_size, self.options.backend))
        return out.chunk()

    def output_frames(self, chunk: DrivenChunk) -> Iterator[np.ndarray]:
        """The frames ``chunk`` shows, one at a time and in order, pasted when asked for if the chunk holds none.

        Yields:
            With paste-back, the source image in its layout and dtype with the frame's crop pasted in (the source
            image itself for a ``"passed"`` frame; bit for bit the chunk's ``frames`` under ``composite=True``);
            without it, the (256, 256, 3) uint8 crops.
        """
        for row, (crop, status) in enumerate(zip(chunk.crops, chunk.status)):
            if not self.options.paste_back:
                yield crop
            elif chunk.frames is not None:
                yield chunk.frames[row]
            elif status == "passed":
                yield self.source.image
            else:
                yield composite_frame(self.source, crop, color_match=self.options.color_match)[0]

    @property
    def frames_seen(self) -> int:
        """Driver frames taken so far."""
        return self._aligner.frames_seen

    def _flush(self, out: _Outputs) -> None:
        """Runs the networks on the window's faces and emits its frames (and any waiting before them)."""
        window, self._window = self._window, []
        own = np.array([False] * self._waiting + [face is not None for face in window])
        first = self.frames_seen - len(own)
        rows = frame_rows(own, self.options.no_face, first_index=first, held=self._last is not None)
        if self.options.no_face == "hold" and self._last is None and not own.any():
            self._waiting = len(own)
            return
        faces = [face for face in window if face is not None]
        rendered = self._drive(faces) if faces else None
        parts = () if rendered is None else (rendered.crops, rendered.frames, rendered.masks)
        for offset, (row, has_face) in enumerate(zip(rows, own)):
            if row >= 0:
                item = tuple(None if a is None else a[row] for a in parts)
                out.add(first + offset, item, "driven" if has_face else "held")
            elif self.options.no_face == "pass":
                out.add(first + offset, self._passed, "passed")
            else:
                out.add(first + offset, self._last, "held")
        if faces:
            self._last = tuple(None if a is None else a[len(faces) - 1].copy() for a in parts)
        self._waiting = 0

    def _drive(self, faces: list[AlignedFace]) -> Rendered:
        """The measure, motion and render steps on one window's faces (the composite step with paste-back)."""
        o, models = self.options, self.models
        codes = estimate_codes(models.deca.module, np.stack([f.crop for f in faces]),
                               np.stack([f.kpt68 for f in faces]))
        times = None if faces[0].time is None else [f.time for f in faces]
        return render(models.directions.module, models.generator.module, self.source, self._motion(codes, times),
                      fsr=models.refiner, truncation=o.truncation, paste=self._paste, color_match=o.color_match,
                      context=self._context)


def drive(models: ReenactModels, source: PreparedSource, frames: Iterable[np.ndarray],
          options: DriveOptions = DriveOptions(), *, fps: float = FPS.default) -> DrivenChunk:
    """Reenacts ``source`` with all of ``frames`` at once: one output frame per driver frame (or NoFaceError)."""
    session = DriveSession(models, source, options, fps=fps)
    return DrivenChunk.concatenate([session.process(frames), session.finish()])
