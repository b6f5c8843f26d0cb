"""The face of a video aligned frame by frame: detect → track one face → smooth its landmarks → reference crop.

This is the per-frame front end of driving (reference spec §1.2 crop, then DECA on it). It streams: each call
takes the next frame and gives its aligned face, or None when the frame has no tracked face (under the
``"raise"`` policy such a frame raises NoFaceError instead); landmarks are smoothed over the frames that have
the face only, so a gap does not pull them toward anything.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .images import check_image, to_uint8_rgb
from ..landmarks import DEFAULT_BACKEND, LandmarkBackend, detect_faces
from .reference_crop import CropTransform, crop_using_landmarks
from ..options import FACE, FPS, NO_FACE, SMOOTHING
from .smoothing import SequenceSmoother
from .tracking import FaceTracker


@dataclass(frozen=True)
class AlignedFace:
    """The tracked face of one frame.

    Attributes:
        index: frame index, from 0.
        crop: (256, 256, 3) uint8 RGB reference crop.
        transform: where ``crop`` lies in the frame.
        landmarks: (68, 2) float32 smoothed iBUG-68 points ``(x, y)`` in frame pixels.
        kpt68: (68, 2) float32 the same points in crop pixels.
        time: the frame's time in seconds when it came with one, else None.
    """

    index: int
    crop: np.ndarray
    transform: CropTransform
    landmarks: np.ndarray
    kpt68: np.ndarray
    time: float | None = None


class FaceAligner:
    """Streaming aligner of one person's face through a video (see the module docstring).

    Args:
        select: face to track on the first frame with faces: an index in left-to-right order, ``"largest"`` or
            ``"score"``.
        no_face: ``"raise"`` (NoFaceError naming a frame without the tracked face); ``"pass"`` and ``"hold"``
            return None for it (what the frame shows is :func:`reenact_core.engine.plan.frame_rows`'s part).
        smoothing: One-Euro strength in [0, 1] of the landmarks (0 = off).
        fps: frame rate, for the smoother's time constants (frames aligned without a time are ``1 / fps`` apart).
        backend: landmark backend name or instance.
    """

    def __init__(self, select: int | str = FACE.default, no_face: str = NO_FACE.default,
                 smoothing: float = SMOOTHING.default, fps: float = FPS.default,
                 backend: str | LandmarkBackend = DEFAULT_BACKEND):
        NO_FACE.check(no_face)
        self.backend = backend
        self.frames_seen = 0
        self.frame_size: tuple[int, int] | None = None   # (H, W) of the last frame aligned
        self._tracker = FaceTracker(select, "raise" if no_face == "raise" else "pass")
        self._smoother = SequenceSmoother("landmarks", smoothing, fps)

    def __call__(self, frame: np.ndarray, time: float | None = None) -> AlignedFace | None:
        """Aligns the next frame ((H, W) grey, (H, W, 1|3|4); uint8, uint16 or float in [0, 1]).

        ``time``: the frame's time in seconds (increasing; give it for every frame or for none), so that the
        smoother steps by the real time between the frames with a face (variable frame rates, gaps).

        Returns:
            Its aligned face, or None when it has no tracked face.
        """
        rgb = to_uint8_rgb(check_image(frame))
        index = self.frames_seen
        self.frames_seen += 1
        self.frame_size = rgb.shape[:2]
        face = self._tracker.update([detect_faces(rgb, self.backend)])[0].face
        if face is None:
            return None
        landmarks = self._smoother(face.landmarks[None], None if time is None else [time])[0]
        crop, transform = crop_using_landmarks(rgb, landmarks)
        return AlignedFace(index, crop, transform, landmarks, transform.frame_to_crop(landmarks).astype(np.float32),
                           time)
