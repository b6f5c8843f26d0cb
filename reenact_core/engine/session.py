"""Driving a prepared source with the frames of a video, chunk by chunk.

Per driver frame: detect faces → track one person → smooth its landmarks → reference crop (spec §1.2) → DECA on
the crop (the frame landmarks mapped into the crop, no second detection) → smooth the normalised parameters →
Δp → render the source (A, shift of W+ rows 0..L−1, truncation ψ toward w̄, checkpoint noise; spec §1.12; refined by
the FSR encoder when the models have one, its source half computed once per session) → paste into the source image.

DECA, A and G run on windows of ``batch_size`` consecutive frames that start at multiples of ``batch_size`` in
the video, whatever the chunks fed to :meth:`DriveSession.process` are, so a chunked run computes exactly what a
one-shot run computes. A window is rendered once it is full (or at :meth:`DriveSession.finish`), so a call
returns the frames settled so far, in order, and the state carried from one call to the next is bounded: the
tracker's last face, the smoothers' last values, the relative mode's reference, the last output (for "hold")
and at most ``batch_size − 1`` cropped frames.

No-face policies, for frames without the tracked face: ``"raise"`` (NoFaceError naming the frame), ``"pass"``
(the source image itself, status ``"passed"``) and ``"hold"`` (the previous output repeated bit for bit, status
``"held"``; frames before the first face get the first output, and a video without any face raises
NoFaceError at :meth:`DriveSession.finish`).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError, NoFaceError
from ..faces.alignment import AlignedFace, FaceAligner
from ..landmarks import DEFAULT_BACKEND, LandmarkBackend
from ..faces.reference_crop import CROP_SIZE
from ..faces.smoothing import DEFAULT_FPS, DEFAULT_STRENGTH, SequenceSmoother
from ..faces.tracking import NO_FACE_POLICIES
from ..params import FaceParams, Normaliser, delta_p, denormalise, normalise
from .models import ReenactModels
from .source import TRUNCATION, PreparedSource, Rendered, estimate_codes, fsr_context, render

MODES = ("absolute", "relative")
FRAME_STATUSES = ("driven", "held", "passed")
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class DriveOptions:
    """How a driver moves the source.

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
        batch_size: frames per DECA / A / G batch.
    """

    mode: str = "absolute"
    pose: bool = True
    expression: bool = True
    strength: float = 1.0
    smoothing: float = DEFAULT_STRENGTH
    no_face: str = "hold"
    select: int | str = "largest"
    backend: str | LandmarkBackend = DEFAULT_BACKEND
    paste_back: bool = True
    color_match: bool = False
    truncation: float = TRUNCATION
    batch_size: int = DEFAULT_BATCH_SIZE

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.no_face not in NO_FACE_POLICIES:
            raise InputError(f"no-face policy must be one of {NO_FACE_POLICIES}, got {self.no_face!r}")
        if not 0.0 <= self.smoothing <= 1.0:
            raise InputError(f"smoothing must be in [0, 1], got {self.smoothing}")
        if not math.isfinite(self.strength) or not math.isfinite(self.truncation):
            raise InputError(f"strength and truncation must be finite, got {self.strength}, {self.truncation}")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be ≥ 1, got {self.batch_size}")


@dataclass
class DrivenChunk(Rendered):
    """Consecutive output frames of a session (see :class:`~reenact_core.engine.source.Rendered` for the
    crops, frames and masks).

    Attributes:
        indices: (n,) int64 driver frame indices, consecutive from the first frame not returned before.
        status: per frame, ``"driven"``, ``"held"`` or ``"passed"``.
    """

    indices: np.ndarray
    status: tuple[str, ...]


@dataclass
class _Observed:
    """A driver frame after alignment: its index and its tracked face (None without one)."""

    index: int
    face: AlignedFace | None


class DriverMotion:
    """Δp of consecutive driver faces against a source, fed in order (the motion part of :class:`DriveSession`).

    DECA codes → :class:`~reenact_core.params.FaceParams` → One-Euro smoothing in Δp units (speed measured in
    full training ranges, 2·S, per second) → Δp, in ``"relative"`` mode from the first face fed.

    Args:
        source_params: the source's parameters, batch 1 (on the device of the codes to come).
        normaliser: the normaliser of the A in use (its S also scales the smoother).
        options: ``mode``, ``pose``, ``expression``, ``strength`` and ``smoothing`` are used.
        fps: driver frame rate, for the smoother's time constants.
    """

    def __init__(self, source_params: FaceParams, normaliser: Normaliser, options: DriveOptions = DriveOptions(), *,
                 fps: float = DEFAULT_FPS):
        self.source_params, self.normaliser, self.options = source_params, normaliser, options
        self._smoother = SequenceSmoother("params", options.smoothing, fps, scale=2 * normaliser.shift_scale)
        self._reference: FaceParams | None = None

    def __call__(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, 236) DECA codes of the next B driver faces → their (B, 15) Δp."""
        o, normaliser = self.options, self.normaliser
        params = FaceParams.from_deca(codes)
        if self._smoother.filter.settings is not None:
            params = denormalise(self._smoother(normalise(params, normaliser=normaliser)), normaliser=normaliser)
        if o.mode == "relative" and self._reference is None:
            self._reference = FaceParams(params.angles[:1], params.jaw[:1], params.exp[:1])
        return delta_p(self.source_params, params, relative_to=self._reference, pose=o.pose,
                       expression=o.expression, strength=o.strength, normaliser=normaliser)


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
        fps: driver frame rate, for the smoothers' time constants.
    """

    def __init__(self, models: ReenactModels, source: PreparedSource, options: DriveOptions = DriveOptions(), *,
                 fps: float = DEFAULT_FPS):
        self.models = models
        self.options = options
        self.source = source.to(models.device, models.dtype)
        self._aligner = FaceAligner(options.select, options.no_face, options.smoothing, fps, options.backend)
        self._motion = DriverMotion(self.source.params, models.normaliser, options, fps=fps)
        self._window: list[_Observed] = []
        self._last: tuple | None = None
        self._waiting = 0  # leading frames without a face, under "hold": frames 0 .. _waiting − 1
        paste = options.paste_back
        self._passed = (self.source.crop, self.source.image if paste else None,
                        np.zeros(self.source.image.shape[:2], np.float32) if paste else None)
        self._context = None if models.fsr is None else fsr_context(models, self.source, options.truncation)

    def process(self, frames: Iterable[np.ndarray]) -> DrivenChunk:
        """Takes the next driver frames and returns the output frames settled so far.

        Args:
            frames: (n, H, W, 3) array or an iterable of images ((H, W) grey, (H, W, 1|3|4); uint8, uint16 or
                float in [0, 1]).

        Returns:
            The next output frames in order; frames of an unfinished batch window come with a later call.

        Raises:
            NoFaceError: a frame without the tracked face under the ``"raise"`` policy.
        """
        out = _Outputs(self.source, self.options.paste_back)
        for frame in frames:
            self._window.append(self._observe(frame))
            if len(self._window) == self.options.batch_size:
                self._flush(out)
        return out.chunk()

    def finish(self) -> DrivenChunk:
        """Renders the last, partial window and returns its frames; ends the video.

        Raises:
            NoFaceError: under ``"hold"``, when no frame had a face.
        """
        out = _Outputs(self.source, self.options.paste_back)
        self._flush(out)
        if self._waiting:
            raise NoFaceError(f"no face found in any of the {self.frames_seen} driver frames")
        return out.chunk()

    @property
    def frames_seen(self) -> int:
        """Driver frames taken so far."""
        return self._aligner.frames_seen

    def _observe(self, frame: np.ndarray) -> _Observed:
        return _Observed(self._aligner.frames_seen, self._aligner(frame))

    def _flush(self, out: _Outputs) -> None:
        window, self._window = self._window, []
        faces = [f.face for f in window if f.face is not None]
        rendered = self._drive(faces) if faces else None
        row = 0
        for frame in window:
            if frame.face is not None:
                item = tuple(None if a is None else a[row] for a in (rendered.crops, rendered.frames, rendered.masks))
                row += 1
                for index in range(self._waiting):
                    out.add(index, item, "held")
                self._waiting = 0
                out.add(frame.index, item, "driven")
                self._last = tuple(None if a is None else a.copy() for a in item)
            elif self.options.no_face == "pass":
                out.add(frame.index, self._passed, "passed")
            elif self._last is not None:
                out.add(frame.index, self._last, "held")
            else:
                self._waiting += 1

    def _drive(self, faces: list[AlignedFace]) -> Rendered:
        o, models = self.options, self.models
        codes = estimate_codes(models, np.stack([f.crop for f in faces]), np.stack([f.kpt68 for f in faces]))
        return render(models, self.source, self._motion(codes), truncation=o.truncation, paste=o.paste_back,
                      color_match=o.color_match, context=self._context)


def drive(models: ReenactModels, source: PreparedSource, frames: Iterable[np.ndarray],
          options: DriveOptions = DriveOptions(), *, fps: float = DEFAULT_FPS) -> DrivenChunk:
    """Reenacts ``source`` with all of ``frames`` at once: one output frame per driver frame (or NoFaceError)."""
    session = DriveSession(models, source, options, fps=fps)
    return DrivenChunk.concatenate([session.process(frames), session.finish()])
