"""The default landmark backend: dlib's HOG face detector and its 68-point shape predictor.

No download: ``dlib-bin`` provides dlib and ``face-recognition-models`` the predictor file
``shape_predictor_68_face_landmarks.dat`` (trained on iBUG 300-W, whose licence excludes commercial use).

Detection runs with ``upsample = 0`` on a copy whose long side is at most 640 px (one HOG pass costs 20 ms at
512 px, 0.4-1.1 s at 2048 px). The HOG window is 80 px, so faces smaller than 80 px in that copy are not found
(a 54-px face in a 1000-px two-person shot is 35 px there). When that pass finds nothing, a second pass runs
on a copy scaled so that a 40-px face fills the window (×2), its long side capped at 4096 px (about 1.5 s): faces
of 40 px and more are found in frames up to 2048 px (1080p and 1440p video), and of ``40 · long side / 2048`` px
in larger ones. Frames with a face pay nothing more. Upsampled passes also give weak false positives:
``detect_faces`` drops detections far weaker than the frame's best and the face choice prefers the surer of
equal-sized boxes. Landmarks are predicted on the full-resolution image with the box mapped back: on the test
videos this gave 6 % lower landmark jitter than predicting at half resolution and scaling the points up (dlib
rounds points to whole pixels of the image it sees).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from ..caches import cached
from ..errors import MissingDependencyError, MissingModelError
from ..faces.images import rescaled
from ..files import find_file
from .backend import LandmarkBackend

PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"  # shipped by the face-recognition-models package
DETECT_MAX_SIDE = 640  # long side (px) of the copy the HOG detector sees first
HOG_WINDOW = 80  # px: the smallest face dlib's frontal HOG detector finds at upsample 0
SMALLEST_FACE = 40  # px of the frame: the face size the second pass scales to the HOG window
SECOND_PASS_MAX_SIDE = 4096  # long side (px) of the second pass's copy at most (its cost grows with the area)


def dlib_model_file(name: str, models_dir: str | os.PathLike | None = None) -> Path:
    """A dlib model file of ``face-recognition-models`` (or one in ``models_dir``, checked first).

    The package is located without importing it (its ``__init__`` needs ``pkg_resources``, gone from
    setuptools ≥ 81). Raises MissingModelError naming the places searched.
    """
    folders = [Path(models_dir)] if models_dir is not None else []
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.origin is not None:
        folders.append(Path(spec.origin).parent / "models")
    found = find_file(name, folders)
    if found is not None:
        return found
    searched = ", ".join(str(f) for f in folders) or "no folder: face-recognition-models is not installed"
    raise MissingModelError(f"{name} not found (searched {searched}); install it with: pip install face-recognition-models")


def predictor_path(models_dir: str | os.PathLike | None = None) -> Path:
    """The 68-point predictor file: in ``models_dir`` if it holds one, else in ``face-recognition-models``."""
    return dlib_model_file(PREDICTOR_FILE, models_dir)


@cached
def load_models(path: Path):
    """dlib's frontal HOG detector and the shape predictor at ``path``, loaded once per process."""
    try:
        import dlib
    except ImportError:
        raise MissingDependencyError("the dlib backend needs dlib: pip install dlib-bin") from None
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(path))


class DlibBackend(LandmarkBackend):
    """dlib HOG detection on a ≤ ``max_detect_side`` px copy, then, when that finds nothing, on a copy where a
    ``smallest_face`` face fills the HOG window (long side ≤ ``SECOND_PASS_MAX_SIDE``); 68-point prediction at
    full resolution.

    Args:
        models_dir: a folder that may hold ``shape_predictor_68_face_landmarks.dat`` (checked first).
        max_detect_side: long side in pixels of the copy the detector sees first.
        min_score: boxes whose HOG score is below this are dropped (dlib's own threshold is 0).
        smallest_face: frame pixels of the smallest face the second pass looks for; 0 switches it off.
    """

    name = "dlib"

    def __init__(self, models_dir: str | os.PathLike | None = None, max_detect_side: int = DETECT_MAX_SIDE,
                 min_score: float = 0.0, smallest_face: int = SMALLEST_FACE):
        self.predictor_file = predictor_path(models_dir)
        self.max_detect_side = max_detect_side
        self.min_score = min_score
        self.smallest_face = smallest_face

    def detect_boxes(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        first, second = self._scales(max(rgb.shape[:2]))
        boxes = self._detect_at(rgb, first)
        return self._detect_at(rgb, second) if not boxes and second > first else boxes

    def min_face_side(self, height: int, width: int) -> float:
        """The HOG window at the larger of the two passes' scales, in frame pixels."""
        return HOG_WINDOW / max(self._scales(max(height, width)))

    def _scales(self, long_side: int) -> tuple[float, float]:
        """Scale factors of the first pass and of the second (0 when switched off) for a frame's long side."""
        first = min(1.0, self.max_detect_side / long_side)
        if self.smallest_face <= 0:
            return first, 0.0
        return first, min(HOG_WINDOW / self.smallest_face, SECOND_PASS_MAX_SIDE / long_side)

    def _detect_at(self, rgb: np.ndarray, factor: float) -> list[tuple[np.ndarray, float]]:
        """HOG boxes of ``rgb`` scaled by ``factor``, in pixels of ``rgb``."""
        detector, _ = load_models(self.predictor_file)
        small, scale = rescaled(rgb, factor)
        rects, scores, _ = detector.run(np.ascontiguousarray(small), 0, self.min_score)
        boxes = []
        for rect, score in zip(rects, scores):
            corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.bottom()]], dtype=np.float64)
            boxes.append((((corners + 0.5) / scale - 0.5).reshape(4), float(score)))
        return boxes

    def predict_landmarks(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        import dlib

        _, predictor = load_models(self.predictor_file)
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = predictor(np.ascontiguousarray(rgb), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
