"""Faces recorded on one machine and replayed on another: a landmark backend for benches on machines without dlib
or its 68-point model (e.g. a GPU machine that cannot install them), so that their runs see the same faces.

    record(path, source, frames)  # on a machine with dlib: the images and every face found in them
    RecordedBackend(path)         # elsewhere: a LandmarkBackend answering for exactly those images
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from reenact_core.landmarks import LandmarkBackend, get_backend


def _key(rgb: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb).tobytes() + str(rgb.shape).encode()).hexdigest()


def record(path: Path, source: np.ndarray, frames: list[np.ndarray]) -> None:
    """Writes ``source`` (H, W, 3) uint8, ``frames`` (N, H', W', 3) uint8 and the faces the default backend finds
    in each (boxes, scores, landmarks) to ``path`` (.npz)."""
    backend = get_backend()
    arrays = {"source": source, "frames": np.stack(frames)}
    for i, image in enumerate([source, *frames]):
        faces = backend.detect(image)
        arrays[f"boxes_{i}"] = np.array([f.box for f in faces], np.float64).reshape(-1, 4)
        arrays[f"scores_{i}"] = np.array([f.score for f in faces], np.float64)
        arrays[f"landmarks_{i}"] = np.array([f.landmarks for f in faces], np.float32).reshape(-1, 68, 2)
    np.savez_compressed(path, **arrays)


class RecordedBackend(LandmarkBackend):
    """Answers with the faces recorded for an image (KeyError for any other image)."""

    name = "recorded"

    def __init__(self, path: Path):
        data = np.load(path)
        self.source, self.frames = data["source"], list(data["frames"])
        self._faces = {_key(image): (data[f"boxes_{i}"], data[f"scores_{i}"], data[f"landmarks_{i}"])
                       for i, image in enumerate([self.source, *self.frames])}

    def detect_boxes(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        boxes, scores, _ = self._faces[_key(rgb)]
        return [(box, float(score)) for box, score in zip(boxes, scores)]

    def predict_landmarks(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        boxes, _, landmarks = self._faces[_key(rgb)]
        return landmarks[int(np.argmin(np.abs(boxes - box).sum(axis=1)))]
