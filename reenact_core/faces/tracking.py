"""Following one person's face through a video, frame by frame or chunk by chunk.

The face is chosen on the first frame that has one (:func:`choose_face`): by its index in left-to-right order,
as the ``"largest"`` box (of boxes of about the same size, the best detector score), or as the best detector
``"score"``. On each later frame the tracked face is the one whose box overlaps the last tracked box most
(IoU ≥ ``min_iou``); other people are never switched to, even while the tracked face is missing. A frame
without the tracked face raises NoFaceError naming the frame index (``on_missing="raise"``) or is reported with
``face=None`` (``"pass"``); what such frames become in the output (the no-face policy) is decided once, by
``reenact_core.engine.plan.frame_rows``.

:class:`FaceTracker` is streaming: :meth:`~FaceTracker.update` takes the detections of the next frames and
returns the frames whose result is settled, in order. Fed in chunks of any sizes, it reports exactly what a
single call with all frames reports.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, NoFaceError
from ..options import FACE
from .geometry import Face, box_iou
from ..landmarks import DEFAULT_BACKEND, LandmarkBackend, detect_faces, get_backend

SELECT_RULES = FACE.choices  # or an int: the face's index in left-to-right order
ON_MISSING = ("raise", "pass")
DEFAULT_MIN_IOU = 0.2  # below this overlap with the last tracked box, a face is someone else
SIZE_TIE = 0.1  # boxes whose side is within this fraction of the largest's count as the same size ("largest")


def choose_face(faces: Sequence[Face], rule: str) -> Face | None:
    """The face a rule of :data:`SELECT_RULES` picks, or None for no faces.

    ``"score"``: the best detector score. ``"largest"``: of the boxes whose side (square root of the area) is at
    least ``1 − SIZE_TIE`` times the largest's, the best score: a detector's boxes come in a few sizes (dlib's
    pyramid steps by 1/6), so equal sizes are common and the surer detection is the face, not the leftmost box.
    """
    if not faces:
        return None
    if rule == "largest":
        biggest = max(face.area for face in faces)
        faces = [face for face in faces if face.area >= (1 - SIZE_TIE) ** 2 * biggest]
    return max(faces, key=lambda face: face.score)


@dataclass(frozen=True)
class TrackedFrame:
    """The tracked face in one frame.

    Args:
        index: frame index in the video, from 0.
        face: the tracked :class:`Face`, or None when the frame has none.
    """

    index: int
    face: Face | None


class FaceTracker:
    """Streaming tracker of one face over per-frame detections.

    Args:
        select: face to track on the first frame with faces: an index in left-to-right order (0 = leftmost),
            ``"largest"`` or ``"score"`` (:func:`choose_face`).
        on_missing: ``"raise"`` (NoFaceError on a frame without the tracked face) or ``"pass"`` (``face=None``).
        min_iou: smallest box IoU with the last tracked box for a face to count as the same person.
    """

    def __init__(self, select: int | str = "largest", on_missing: str = "raise", min_iou: float = DEFAULT_MIN_IOU):
        if not (isinstance(select, int) and select >= 0) and select not in SELECT_RULES:
            raise InputError(f"select must be a face index ≥ 0 or one of {SELECT_RULES}, got {select!r}")
        if on_missing not in ON_MISSING:
            raise InputError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
        self.select = select
        self.on_missing = on_missing
        self.min_iou = min_iou
        self.frames_seen = 0
        self._last: Face | None = None

    def update(self, detections: Iterable[Sequence[Face]]) -> list[TrackedFrame]:
        """Feeds the faces found in each of the next frames (any order within a frame).

        Returns:
            One tracked frame per frame fed, in order.
        """
        settled: list[TrackedFrame] = []
        for faces in detections:
            index = self.frames_seen
            self.frames_seen += 1
            face = self._choose(list(faces), index)
            if face is None and self.on_missing == "raise":
                raise NoFaceError(f"no face to track in frame {index}")
            self._last = face or self._last
            settled.append(TrackedFrame(index, face))
        return settled

    def _choose(self, faces: list[Face], index: int) -> Face | None:
        if self._last is not None:
            overlaps = [box_iou(self._last.box, face.box) for face in faces]
            best = int(np.argmax(overlaps)) if overlaps else -1
            return faces[best] if best >= 0 and overlaps[best] >= self.min_iou else None
        if isinstance(self.select, int):
            ordered = sorted(faces, key=lambda face: face.box[0] + face.box[2])
            if self.select < len(ordered):
                return ordered[self.select]
            if ordered and self.on_missing == "raise":
                raise NoFaceError(f"face {self.select} requested but frame {index} has {len(ordered)} face(s)")
            return None
        return choose_face(faces, self.select)


def track_faces(frames: Iterable[np.ndarray], backend: str | LandmarkBackend = DEFAULT_BACKEND,
                select: int | str = "largest", on_missing: str = "raise", min_iou: float = DEFAULT_MIN_IOU,
                **backend_options) -> list[TrackedFrame]:
    """Detects and tracks one face through a sequence of frames (see :class:`FaceTracker`).

    Args:
        frames: images accepted by :func:`~reenact_core.faces.landmarks.detect_faces`, in video order.
        backend: landmark backend name or instance; ``backend_options`` build a named one.

    Returns:
        One :class:`TrackedFrame` per frame, in order.
    """
    if isinstance(backend, str):
        backend = get_backend(backend, **backend_options)
    tracker = FaceTracker(select, on_missing, min_iou)
    return tracker.update(detect_faces(frame, backend) for frame in frames)
