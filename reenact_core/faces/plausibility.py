"""Sanity checks that reject landmark sets which cannot be a face (a detector false positive, a diverged fit)."""
from __future__ import annotations

import numpy as np

from .geometry import LEFT_EYE, MOUTH, NOSE_TIP, NUM_POINTS, RIGHT_EYE, Face, interocular_distance

# Points may lie this far outside the detector box, as a fraction of its width / height. dlib's HOG box cuts
# through the brows and the chin: up to 0.20 outside was measured on every frame of the test videos.
BOX_MARGIN = 0.35
# Inter-ocular distance over box width. Measured 0.35-0.53 for dlib boxes on frontal and turned faces (every
# frame of the test videos).
IOD_TO_BOX_WIDTH = (0.2, 0.8)


def plausibility_failures(face: Face) -> list[str]:
    """Reasons why ``face`` is not a plausible face; empty when it is.

    Checks: finite (68, 2) points and a box of positive size; every point inside the box grown by
    :data:`BOX_MARGIN` of its size on each side; the eyes' mean row above the nose tip (30), itself above the
    mouth's mean row (48-67), in image rows (so faces rolled by more than about 60° fail); the inter-ocular
    distance within :data:`IOD_TO_BOX_WIDTH` times the box width.
    """
    points = np.asarray(face.landmarks, dtype=np.float64)
    box = np.asarray(face.box, dtype=np.float64)
    if points.shape != (NUM_POINTS, 2) or not np.isfinite(points).all():
        return [f"landmarks must be {NUM_POINTS} finite points, got shape {points.shape}"]
    width, height = box[2] - box[0], box[3] - box[1]
    if box.shape != (4,) or not np.isfinite(box).all() or width <= 0 or height <= 0:
        return [f"box {box.tolist()} is not a box of positive size"]
    failures = []
    margin = BOX_MARGIN * np.array([width, height])
    if (points < box[:2] - margin).any() or (points > box[2:] + margin).any():
        failures.append("landmarks leave the detector box")
    eyes_y = np.concatenate([points[RIGHT_EYE, 1], points[LEFT_EYE, 1]]).mean()
    if not eyes_y < points[NOSE_TIP, 1] < points[MOUTH, 1].mean():
        failures.append("eyes, nose and mouth are not in top-to-bottom order")
    ratio = float(interocular_distance(points)) / width
    if not IOD_TO_BOX_WIDTH[0] <= ratio <= IOD_TO_BOX_WIDTH[1]:
        failures.append(f"inter-ocular distance is {ratio:.2f} of the box width")
    return failures


def is_plausible(face: Face) -> bool:
    """True when :func:`plausibility_failures` finds nothing."""
    return not plausibility_failures(face)
