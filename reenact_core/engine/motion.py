"""The motion step: Δp of consecutive driver faces against a source, with A's normaliser (uses no network)."""
from __future__ import annotations

from typing import Protocol

import torch

from ..faces.smoothing import SequenceSmoother
from ..options import FPS
from ..params import FaceParams, Normaliser, delta_p, denormalise, normalise


class MotionOptions(Protocol):
    """What the motion step reads of :class:`~reenact_core.engine.session.DriveOptions`."""

    mode: str
    pose: bool
    expression: bool
    strength: float
    smoothing: float


class DriverMotion:
    """Δp of consecutive driver faces against a source, fed in order.

    DECA codes → :class:`~reenact_core.params.FaceParams` → One-Euro smoothing in Δp units (speed measured in
    full training ranges, 2·S, per second) → Δp, in ``"relative"`` mode from the first face fed.

    Args:
        source_params: the source's parameters, batch 1 (on the device of the codes to come).
        normaliser: the normaliser of the A in use (its S also scales the smoother).
        options: ``mode``, ``pose``, ``expression``, ``strength`` and ``smoothing`` are used
            (:class:`~reenact_core.engine.session.DriveOptions`).
        fps: driver frame rate, for the smoother's time constants (faces fed without times are ``1 / fps`` apart).
    """

    def __init__(self, source_params: FaceParams, normaliser: Normaliser, options: MotionOptions, *,
                 fps: float = FPS.default):
        self.source_params, self.normaliser, self.options = source_params, normaliser, options
        self._smoother = SequenceSmoother("params", options.smoothing, fps, scale=2 * normaliser.shift_scale)
        self._reference: FaceParams | None = None

    def __call__(self, codes: torch.Tensor, times=None) -> torch.Tensor:
        """(B, 236) DECA codes of the next B driver faces → their (B, 15) Δp; ``times``: optional (B,) times of
        the faces' frames in seconds, for the smoother (:class:`~reenact_core.faces.smoothing.SequenceSmoother`)."""
        o, normaliser = self.options, self.normaliser
        params = FaceParams.from_deca(codes)
        if self._smoother.filter.settings is not None:
            smoothed = self._smoother(normalise(params, normaliser=normaliser), times)
            params = denormalise(smoothed, normaliser=normaliser)
        if o.mode == "relative" and self._reference is None:
            self._reference = FaceParams(params.angles[:1], params.jaw[:1], params.exp[:1])
        return delta_p(self.source_params, params, relative_to=self._reference, pose=o.pose,
                       expression=o.expression, strength=o.strength, normaliser=normaliser)
