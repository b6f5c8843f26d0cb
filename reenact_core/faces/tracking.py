"""Following one person's face through a video, frame by frame or chunk by chunk.

The face is chosen on the first frame that has one: by its index in left-to-right order, as the
``"largest"`` box, or as the best detector ``"score"``. On each later frame the tracked face is the one whose
box overlaps the last tracked box most (IoU ≥ ``min_iou``); other people are never switched to, even while the
tracked face is missing. A frame without the tracked face follows the no-face policy:

* ``"raise"``: NoFaceError naming the frame index;
* ``"pass"``: the frame is reported with ``face=None`` (frame count and indices are kept);
* ``"hold"``: the last tracked face is reused (``held=True``). Frames before the first face found get that
  first face: the tracker keeps them pending and reports them, in order, once it is found. If the video ends
  with no face at all, :meth:`FaceTracker.finish` raises NoFaceError.

:class:`FaceTracker` is streaming: :meth:`~FaceTracker.update` takes the detections of the next frames and
returns the frames whose result is settled, in order. Fed in chunks of any sizes, it reports exactly what a
single call with all frames reports.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, NoFaceError
from .geometry import Face, box_iou
from ..landmarks import DEFAULT_BACKEND, LandmarkBackend, detect_faces, get_backend

SELECT_RULES = ("largest", "score")  # or an int: the face's index in left-to-right order
NO_FACE_POLICIES = ("raise", "pass", "hold")
DEFAULT_MIN_IOU = 0.2  # below this overlap with the last tracked box, a face is someone else


@dataclass(frozen=True)
class TrackedFrame:
    """The tracked face in one frame.

    Args:
        index: frame index in the video, from 0.
        face: the tracked :class:`Face`, or None when the frame has none (policy ``"pass"``).
        held: True when ``face`` was reused from another frame (policy ``"hold"``).
    """

    index: int
    face: Face | None
    held: bool = False


class FaceTracker:
    """Streaming tracker of one face over per-frame detections.

    Args:
        select: face to track on the first frame with faces: an index in left-to-right order (0 = leftmost),
            ``"largest"`` (box area) or ``"score"`` (detector score).
        on_missing: no-face policy, one of ``"raise"``, ``"pass"``, ``"hold"``.
        min_iou: smallest box IoU with the last tracked box for a face to count as the same person.
    """

    def __init__(self, select: int | str = "largest", on_missing: str = "raise", min_iou: float = DEFAULT_MIN_IOU):
        if not (isinstance(select, int) and select >= 0) and select not in SELECT_RULES:
            raise InputError(f"select must be a face index ≥ 0 or one of {SELECT_RULES}, got {select!r}")
        if on_missing not in NO_FACE_POLICIES:
            raise InputError(f"no-face policy must be one of {NO_FACE_POLICIES}, got {on_missing!r}")
        self.select = select
        self.on_missing = on_missing
        self.min_iou = min_iou
        self.frames_seen = 0
        self._last: Face | None = None
        self._pending: list[int] = []  # leading frame indices waiting for the first face ("hold")

    def update(self, detections: Iterable[Sequence[Face]]) -> list[TrackedFrame]:
        """Feeds the faces found in each of the next frames (any order within a frame).

        Returns:
            The frames settled by this call, in frame order (under ``"hold"``, leading frames without a face
            are returned with the first face found).
        """
        settled: list[TrackedFrame] = []
        for faces in detections:
            index = self.frames_seen
            self.frames_seen += 1
            face = self._choose(list(faces), index)
            if face is not None:
                settled += [TrackedFrame(i, face, held=True) for i in self._pending]
                self._pending = []
                self._last = face
                settled.append(TrackedFrame(index, face))
            elif self.on_missing == "raise":
                raise NoFaceError(f"no face to track in frame {index}")
            elif self.on_missing == "pass":
                settled.append(TrackedFrame(index, None))
            elif self._last is not None:
                settled.append(TrackedFrame(index, self._last, held=True))
            else:
                self._pending.append(index)
        return settled

    def finish(self) -> list[TrackedFrame]:
        """Ends the video. Raises NoFaceError if frames are still waiting for a first face (``"hold"``)."""
        if self._pending:
            raise NoFaceError(f"no face found in any of the {self.frames_seen} frames")
        return []

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
        if not faces:
            return None
        key = (lambda face: face.area) if self.select == "largest" else (lambda face: face.score)
        return max(faces, key=key)


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
    tracked = tracker.update(detect_faces(frame, backend) for frame in frames)
    return tracked + tracker.finish()
