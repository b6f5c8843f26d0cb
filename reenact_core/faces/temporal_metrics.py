"""Measures of temporal stability of landmark sequences: jitter, lag and mouth-opening amplitude.

Used to judge smoothing: it should lower jitter while adding little lag and keeping the mouth's amplitude.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .geometry import interocular_distance, mouth_opening


def _check_sequence(landmarks, min_frames: int) -> np.ndarray:
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (68, 2) or len(landmarks) < min_frames:
        raise InputError(f"need a (T ≥ {min_frames}, 68, 2) landmark sequence, got shape {landmarks.shape}")
    return landmarks


def landmark_jitter(landmarks: np.ndarray) -> float:
    """Mean |second difference in time| of all coordinates, over the mean inter-ocular distance.

    Args:
        landmarks: (T, 68, 2) points in pixels, T ≥ 3.

    Returns:
        Jitter in inter-ocular distances per frame².
    """
    landmarks = _check_sequence(landmarks, 3)
    return float(np.abs(np.diff(landmarks, n=2, axis=0)).mean() / interocular_distance(landmarks).mean())


def mouth_amplitude(landmarks: np.ndarray) -> float:
    """Range of the mouth opening: p95 − p5 over time of :func:`~reenact_core.faces.geometry.mouth_opening`
    (Euclidean distance of points 62 and 66), in pixels. ``landmarks``: (T, 68, 2), T ≥ 2."""
    opening = mouth_opening(_check_sequence(landmarks, 2))
    return float(np.percentile(opening, 95) - np.percentile(opening, 5))


def smoothing_lag(raw: np.ndarray, smoothed: np.ndarray, max_lag: int = 15) -> int:
    """Delay in frames of ``smoothed`` behind ``raw``: the shift maximising the cross-correlation of their
    first differences (mean removed), summed over all channels.

    Args:
        raw, smoothed: (T, ...) signals of the same shape, T ≥ 3 (e.g. mouth openings or landmarks).
        max_lag: shifts searched, in frames, both ways.

    Returns:
        The lag in frames; positive when ``smoothed`` comes later.
    """
    raw, smoothed = np.asarray(raw, dtype=np.float64), np.asarray(smoothed, dtype=np.float64)
    if raw.shape != smoothed.shape or len(raw) < 3:
        raise InputError(f"signals must share a (T ≥ 3, ...) shape, got {raw.shape} and {smoothed.shape}")
    a = np.diff(raw.reshape(len(raw), -1), axis=0)
    b = np.diff(smoothed.reshape(len(smoothed), -1), axis=0)
    a, b = a - a.mean(0), b - b.mean(0)
    n = len(a)
    shifts = range(-min(max_lag, n - 1), min(max_lag, n - 1) + 1)
    scores = [float((a[max(0, -k):n - max(0, k)] * b[max(0, k):n - max(0, -k)]).sum()) for k in shifts]
    return shifts[int(np.argmax(scores))]
