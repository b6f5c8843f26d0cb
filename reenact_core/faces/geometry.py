"""A detected face (box, score, 68 iBUG points) and the measures taken on it.

Points are ``(x = column, y = row)`` in full-resolution frame pixels, pixel centres on integers, in the
iBUG 300-W 68-point order (Sagonas et al., 2013; the order of dlib's predictor and of FAN).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_POINTS = 68  # iBUG 300-W markup
RIGHT_EYE = slice(36, 42)  # the subject's right eye (left in the image), iBUG 37-42 (1-based)
LEFT_EYE = slice(42, 48)  # iBUG 43-48
NOSE_TIP = 30  # iBUG 31
MOUTH = slice(48, 68)  # outer and inner lips, iBUG 49-68
UPPER_INNER_LIP = 62  # iBUG 63, middle of the upper inner lip
LOWER_INNER_LIP = 66  # iBUG 67, middle of the lower inner lip


@dataclass(frozen=True, eq=False)
class Face:
    """One face found in a frame.

    Args:
        box: (4,) float64 ``(x1, y1, x2, y2)`` detector box in frame pixels.
        score: detector confidence (backend-specific scale; higher is surer).
        landmarks: (68, 2) float32 iBUG-68 points ``(x, y)`` in frame pixels.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))


def eye_centres(landmarks: np.ndarray) -> np.ndarray:
    """Centres of the two eyes: (..., 68, 2) points → (..., 2, 2), the image-left eye (36-41) first."""
    return np.stack([landmarks[..., RIGHT_EYE, :].mean(-2), landmarks[..., LEFT_EYE, :].mean(-2)], axis=-2)


def interocular_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance in pixels between the eye centres (means of points 36-41 and 42-47): (..., 68, 2) → (...)."""
    eyes = eye_centres(np.asarray(landmarks, dtype=np.float64))
    return np.linalg.norm(eyes[..., 0, :] - eyes[..., 1, :], axis=-1)


def mouth_opening(landmarks: np.ndarray) -> np.ndarray:
    """Euclidean distance in pixels between the inner-lip midpoints 62 and 66: (..., 68, 2) → (...).

    Euclidean rather than the y distance, so that it does not change with head roll.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    return np.linalg.norm(landmarks[..., LOWER_INNER_LIP, :] - landmarks[..., UPPER_INNER_LIP, :], axis=-1)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes, in [0, 1]."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)
