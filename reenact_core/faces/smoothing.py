"""Temporal smoothing of per-frame face data by the One-Euro filter (Casiez, Roussel & Vogel, CHI 2012).

The One-Euro filter is an exponential low-pass whose cut-off rises with the signal's speed: still faces are
smoothed hard, fast motion (a mouth opening) passes with little lag. It is causal, so it runs on a stream.
Per frame ``t`` (``dt`` = the time since the previous frame: the frames' own times when given, as a
variable-frame-rate video has them, else ``1 / fps`` seconds), for each point (a group of coordinates moving
together):

    v_t      = lowpass((x_t − x̂_{t−1}) / (dt · scale_t), derivative_cutoff)   (scale-free: e.g. IODs / s)
    cutoff_t = min_cutoff + beta · |v_t|                                       (Hz)
    x̂_t      = lowpass(x_t, cutoff_t),   lowpass weight α = 1 / (1 + 1 / (2π · cutoff · dt))

Being causal, it trades noise for lag: at the default strength landmark noise of slow or still faces drops by
about half, while a steady fast motion (a 0.1-IOD sway at 1 Hz) is followed a little late.

One user setting, ``strength`` s in [0, 1], drives both ``min_cutoff`` and ``beta``: 0 switches smoothing off,
0.5 is the default, larger is smoother. Both are the default values times ``(((1 − s) / s)² + 0.1) / 1.1``: 1 at
s = 0.5, 8.3 at 0.25 (light), 0.19 at 0.75, 0.09 at 1 (heavy), and unbounded toward 0 (off).

Three kinds of sequence are known: ``"landmarks"`` (T, N, 2) points, speed in inter-ocular distances per
second; ``"boxes"`` (T, 4) ``(x1, y1, x2, y2)``, two corner points, speed in box sizes per second;
``"params"`` (T, D) vectors (e.g. 3DMM coefficients), each coordinate alone, speed in units of ``scale``
(default 1) per second.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from ..options import FPS, SMOOTHING
from .geometry import interocular_distance

DEFAULT_STRENGTH = SMOOTHING.default
DEFAULT_FPS = FPS.default
SEQUENCE_KINDS = ("landmarks", "boxes", "params")
# Settings at the default strength, tuned on the test talking-head videos (landmark jitter −49 % on d9, lag 0,
# mouth-opening amplitude kept ≥ 93 %).
_MIN_CUTOFF_HZ = 0.5
_BETA = 12.0
_DERIVATIVE_CUTOFF_HZ = 0.5


@dataclass(frozen=True)
class OneEuroSettings:
    """One-Euro filter parameters: cut-offs in Hz, ``beta`` in Hz per unit of normalised speed."""

    min_cutoff_hz: float
    beta: float
    derivative_cutoff_hz: float = _DERIVATIVE_CUTOFF_HZ


def one_euro_settings(strength: float) -> OneEuroSettings | None:
    """Filter parameters for a user strength in [0, 1]; None for 0 (no smoothing)."""
    if not 0.0 <= strength <= 1.0:
        raise InputError(f"smoothing strength must be in [0, 1], got {strength}")
    if strength == 0.0:
        return None
    factor = (((1.0 - strength) / strength) ** 2 + 0.1) / 1.1
    return OneEuroSettings(_MIN_CUTOFF_HZ * factor, _BETA * factor)


def _alpha(cutoff_hz, dt: float):
    return 1.0 / (1.0 + 1.0 / (2.0 * np.pi * cutoff_hz * dt))


class OneEuroFilter:
    """Streaming One-Euro filter over frames of shape (..., C), C coordinates moving together.

    Args:
        settings: filter parameters, or None to pass frames through.
        fps: frame rate of the sequence (frames per second).
    """

    def __init__(self, settings: OneEuroSettings | None, fps: float = DEFAULT_FPS):
        if not fps > 0:
            raise InputError(f"fps must be positive, got {fps}")
        self.settings = settings
        self.dt = 1.0 / fps
        self.reset()

    def reset(self) -> None:
        """Forgets the past: the next frame starts a new sequence."""
        self._value: np.ndarray | None = None
        self._velocity: np.ndarray | None = None

    def step(self, x: np.ndarray, scale=1.0, dt: float | None = None) -> np.ndarray:
        """Filters one frame.

        Args:
            x: (..., C) float64 values of this frame.
            scale: speed unit, broadcastable to (..., 1): velocity is ``Δx / (dt · scale)``.
            dt: seconds since the previous frame (> 0); default ``1 / fps``.

        Returns:
            The filtered (..., C) frame.
        """
        if self.settings is None:
            return x
        if self._value is None:
            self._value, self._velocity = x, np.zeros_like(x)
            return x
        s, dt = self.settings, self.dt if dt is None else dt
        delta = x - self._value
        velocity = delta / (dt * scale)
        self._velocity = self._velocity + _alpha(s.derivative_cutoff_hz, dt) * (velocity - self._velocity)
        speed = np.linalg.norm(self._velocity, axis=-1, keepdims=True)
        self._value = self._value + _alpha(s.min_cutoff_hz + s.beta * speed, dt) * delta
        return self._value


class SequenceSmoother:
    """Streaming smoother of one kind of per-frame sequence (see the module docstring).

    Feed consecutive chunks to :meth:`__call__`; the result equals smoothing the whole sequence at once.

    Args:
        kind: ``"landmarks"``, ``"boxes"`` or ``"params"``.
        strength: in [0, 1]; 0 is off.
        fps: frames per second of the video (the time between frames fed without times).
        scale: speed unit of ``"params"`` (a scalar or (D,) per coordinate; e.g. each parameter's range).
    """

    def __init__(self, kind: str, strength: float = DEFAULT_STRENGTH, fps: float = DEFAULT_FPS, scale=1.0):
        if kind not in SEQUENCE_KINDS:
            raise InputError(f"sequence kind must be one of {SEQUENCE_KINDS}, got {kind!r}")
        self.kind = kind
        self.scale = np.asarray(scale, dtype=np.float64)
        self.filter = OneEuroFilter(one_euro_settings(strength), fps)
        self._time: float | None = None   # the previous frame's time, when frames come with times

    def __call__(self, chunk, times=None):
        """Smooths the next frames.

        Args:
            chunk: (T, N, 2) landmarks, (T, 4) boxes or (T, D) params; numpy array or tensor.
            times: optional (T,) increasing times in seconds of the frames (e.g. a variable-frame-rate video's
                timestamps, with gaps where frames were left out): the filter steps by the time between
                frames instead of ``1 / fps``.

        Returns:
            The smoothed chunk, of the input's shape, type, dtype (and device).
        """
        values = _as_float64(chunk)
        expected = {"landmarks": 3, "boxes": 2, "params": 2}[self.kind]
        if values.ndim != expected or (self.kind == "landmarks" and values.shape[-1] != 2) or (
                self.kind == "boxes" and values.shape[-1] != 4):
            raise InputError(f"{self.kind} sequence has shape {tuple(values.shape)}; see SequenceSmoother")
        if times is not None and len(times) != len(values):
            raise InputError(f"{len(times)} times for a sequence of {len(values)} frames")
        out = np.empty_like(values)
        for t, frame in enumerate(values):
            out[t] = self._step(frame, None if times is None else self._dt(float(times[t])))
        return _like(out, chunk)

    def _dt(self, time: float) -> float | None:
        """Seconds since the previous timed frame (None for the first: no step is taken from it)."""
        previous, self._time = self._time, time
        if previous is None:
            return None
        if not time > previous:
            raise InputError(f"frame times must increase, got {time} s after {previous} s")
        return time - previous

    def _step(self, frame: np.ndarray, dt: float | None) -> np.ndarray:
        if self.kind == "landmarks":
            return self.filter.step(frame, max(float(interocular_distance(frame)), 1e-6), dt)
        if self.kind == "boxes":
            size = max(float(np.sqrt(max(frame[2] - frame[0], 0.0) * max(frame[3] - frame[1], 0.0))), 1e-6)
            return self.filter.step(frame.reshape(2, 2), size, dt).reshape(4)
        scale = self.scale.reshape(-1, 1) if self.scale.ndim else self.scale
        return self.filter.step(frame[:, None], scale, dt)[:, 0]


def smooth_sequence(values, kind: str, strength: float = DEFAULT_STRENGTH, fps: float = DEFAULT_FPS, scale=1.0,
                    times=None):
    """Smooths a whole sequence at once (see :class:`SequenceSmoother` for shapes and arguments)."""
    return SequenceSmoother(kind, strength, fps, scale)(values, times)


def _as_float64(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise InputError("sequence to smooth contains NaN or infinite values")
    return values


def _like(out: np.ndarray, reference):
    if isinstance(reference, torch.Tensor):
        return torch.from_numpy(out).to(device=reference.device, dtype=reference.dtype)
    reference = np.asarray(reference)
    return out.astype(reference.dtype if np.issubdtype(reference.dtype, np.floating) else np.float64)
