"""3DMM parameters of a face (DECA head pose, jaw, expression) and the normalised difference Δp that drives A.

Reference spec §1.7 (DECA outputs, axis-angle → Euler) and §1.8 (Δp). Δp has 15 coordinates:
0 yaw, 1 pitch, 2 roll (degrees · S/scale), 3 jaw (``pose[3]``), 4..14 the first 11 FLAME expression
coefficients, the last 12 mapped linearly so that the training range ``[min, max]`` becomes ``[−S, S]``.
The ranges, angle scales and S are those of the A in use (its ``Normaliser``, stored in its file).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError
from .models.deca import split_codes
from .models.directions import (ANGLE_SCALES_DEG, EXPRESSION_DIRECTIONS, NUM_DIRECTIONS, POSE_DIRECTIONS,
                                SHIFT_SCALE, VOXCELEB, Normaliser)

__all__ = ["ANGLE_SCALES_DEG", "EXPRESSION_DIRECTIONS", "NUM_DIRECTIONS", "NUM_EXPRESSIONS", "POSE_DIRECTIONS",
           "SHIFT_SCALE", "VOXCELEB", "Normaliser", "FaceParams", "axis_angle_to_euler", "normalise", "denormalise",
           "delta_p"]

NUM_EXPRESSIONS = 11  # FLAME expression coefficients used, exp[0:11] (official `num_expressions`)

_GIMBAL_R20 = 0.998  # |R[2,0]| above which the official conversion switches to its gimbal-lock branch
_PI_F32 = float(np.float32(math.pi))  # the official `rad2deg` divides by a float32 π


def axis_angle_to_euler(axis_angle: torch.Tensor) -> torch.Tensor:
    """Head rotation as (yaw, pitch, roll) in degrees, following DECA's official quaternion route.

    Axis-angle → quaternion ``(cos(θ/2), a·sin(θ/2)/θ)`` (``(1, a/2)`` at θ = 0) → normalised → rotation matrix
    R → ``yaw = asin(R20)``, ``pitch = atan2(R21/cos yaw, R22/cos yaw)``, ``roll = atan2(R10/cos yaw, R00/cos yaw)``;
    degrees as ``180·x/π`` with float32 π. So (0, θ, 0) gives yaw −θ, (θ, 0, 0) pitch +θ and (0, 0, θ) roll +θ.

    Gimbal lock (|R20| > 0.998, |yaw| > 86.4°): pitch and roll are no longer separable. As the official code
    intends (its branch raises NameError), yaw is ±90°, roll is 0 and pitch takes the whole rotation about the
    view axis: ``atan2(−R01, −R02)`` for R20 > 0, ``atan2(R01, R02)`` for R20 < 0. This is exact at |R20| = 1
    and jumps by up to 3.6° in yaw at the threshold. Elsewhere the official formulas are used unchanged; every
    branch is masked, so values and gradients stay finite for any input.

    Args:
        axis_angle: (..., 3) axis-angle rotations in radians (DECA ``pose[..., 0:3]``).

    Returns:
        (..., 3) yaw, pitch, roll in degrees, float32 or wider (the input's dtype promoted to float32).
    """
    if axis_angle.shape[-1:] != (3,):
        raise InputError(f"axis-angle must have a last dimension of 3, got shape {tuple(axis_angle.shape)}")
    a = axis_angle.to(torch.promote_types(axis_angle.dtype, torch.float32))
    a0, a1, a2 = a.unbind(-1)
    theta_sq = a0 * a0 + a1 * a1 + a2 * a2
    nonzero = theta_sq > 0.0
    theta = torch.sqrt(torch.where(nonzero, theta_sq, torch.ones_like(theta_sq)))
    half = theta * 0.5
    k = torch.where(nonzero, torch.sin(half) / theta, torch.full_like(theta, 0.5))
    quat = torch.stack([torch.where(nonzero, torch.cos(half), torch.ones_like(half)), a0 * k, a1 * k, a2 * k], -1)
    w, x, y, z = (quat / torch.linalg.vector_norm(quat, dim=-1, keepdim=True)).unbind(-1)

    w2, x2, y2, z2 = w.pow(2), x.pow(2), y.pow(2), z.pow(2)
    r00 = w2 + x2 - y2 - z2
    r01 = 2 * (x * y) - 2 * (w * z)
    r02 = 2 * (w * y) + 2 * (x * z)
    r10 = 2 * (w * z) + 2 * (x * y)
    r20 = 2 * (x * z) - 2 * (w * y)
    r21 = 2 * (w * x) + 2 * (y * z)
    r22 = w2 - x2 - y2 + z2

    regular = r20.abs() <= _GIMBAL_R20
    yaw = torch.asin(torch.where(regular, r20, torch.zeros_like(r20)))
    cos_yaw = torch.cos(yaw)
    pitch = torch.atan2(r21 / cos_yaw, r22 / cos_yaw)
    roll = torch.atan2(r10 / cos_yaw, r00 / cos_yaw)

    sign = torch.where(r20 > 0, torch.ones_like(r20), -torch.ones_like(r20))
    yaw = torch.where(regular, yaw, sign * (math.pi / 2))
    pitch = torch.where(regular, pitch, torch.atan2(-sign * r01, -sign * r02))
    roll = torch.where(regular, roll, torch.zeros_like(roll))
    return 180.0 * torch.stack([yaw, pitch, roll], -1) / _PI_F32


@dataclass(frozen=True)
class FaceParams:
    """Head pose and expression of a batch of faces, the quantities Δp is made of.

    Attributes:
        angles: (B, 3) yaw, pitch, roll in degrees (:func:`axis_angle_to_euler` of DECA ``pose[:, 0:3]``).
        jaw: (B,) jaw opening in radians, DECA ``pose[:, 3]``.
        exp: (B, 11) the first 11 FLAME expression coefficients, DECA ``exp[:, 0:11]``.
    """

    angles: torch.Tensor
    jaw: torch.Tensor
    exp: torch.Tensor

    def __post_init__(self):
        b = self.angles.shape[0] if self.angles.ndim == 2 else -1
        if self.angles.shape != (b, 3) or self.jaw.shape != (b,) or self.exp.shape != (b, NUM_EXPRESSIONS):
            raise InputError(f"FaceParams needs angles (B, 3), jaw (B,), exp (B, {NUM_EXPRESSIONS}); got "
                             f"{tuple(self.angles.shape)}, {tuple(self.jaw.shape)}, {tuple(self.exp.shape)}")

    @classmethod
    def from_pose_exp(cls, pose: torch.Tensor, exp: torch.Tensor) -> FaceParams:
        """From DECA's pose (B, 6) (or any (B, ≥4): global axis-angle, jaw) and expression (B, ≥11)."""
        if pose.ndim != 2 or pose.shape[1] < 4 or exp.ndim != 2 or exp.shape[1] < NUM_EXPRESSIONS:
            raise InputError(f"pose must be (B, 6) and exp (B, 50), got {tuple(pose.shape)} and "
                             f"{tuple(exp.shape)}")
        return cls(axis_angle_to_euler(pose[:, :3]), pose[:, 3], exp[:, :NUM_EXPRESSIONS])

    @classmethod
    def from_deca(cls, params: torch.Tensor) -> FaceParams:
        """From the raw (B, 236) output of DECA's E_flame (split by :func:`reenact_core.models.deca.split_codes`)."""
        codes = split_codes(params)
        return cls.from_pose_exp(codes.pose, codes.exp)


def normalise(params: FaceParams, *, normaliser: Normaliser) -> torch.Tensor:
    """Absolute parameters in Δp units, n(p), so that the official ``Δp = n(p_t) − n(p_s)``.

    Angles: ``angle · S / scale`` with the normaliser's angle scales (official A: 40, 20, 20 degrees). Jaw and
    expressions: ``a·x + b``, mapping the normaliser's interval [min, max] to [−S, S].

    Args:
        normaliser: the normaliser of the A in use (``DirectionsConfig.normaliser``; ``ReenactModels.normaliser``).

    Returns:
        (B, 15) tensor, float32 (float64 if the parameters are float64), on the parameters' device.
    """
    dtype = torch.promote_types(params.angles.dtype, torch.float32)
    raw = torch.cat([params.angles.to(dtype), params.jaw.to(dtype)[:, None], params.exp.to(dtype)], 1)
    return normaliser.apply(raw)


def denormalise(n: torch.Tensor, *, normaliser: Normaliser) -> FaceParams:
    """Inverse of :func:`normalise`: (B, 15) values in Δp units to :class:`FaceParams` (degrees, radians)."""
    if n.ndim != 2 or n.shape[1] != NUM_DIRECTIONS:
        raise InputError(f"normalised parameters must be (B, {NUM_DIRECTIONS}), got {tuple(n.shape)}")
    raw = normaliser.invert(n.to(torch.promote_types(n.dtype, torch.float32)))
    jaw = EXPRESSION_DIRECTIONS.start
    return FaceParams(raw[:, POSE_DIRECTIONS], raw[:, jaw], raw[:, jaw + 1:])


def delta_p(
    source: FaceParams,
    target: FaceParams,
    *,
    normaliser: Normaliser,
    relative_to: FaceParams | None = None,
    pose: bool = True,
    expression: bool = True,
    strength: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """The 15-d input of A that moves the source face towards the target's pose and expression.

    Modes:
        * absolute (``relative_to=None``, the official one): ``Δp = n(target) − n(source)``; the reenacted face
          takes the target's pose and expression.
        * relative (``relative_to`` = the driving frame the motion starts from, usually the first one; batch 1
          or B): ``Δp = n(target) − n(relative_to)``; the source keeps its own pose and expression and moves as
          the driver moves. ``source`` is not used.

    Then ``pose=False`` zeros coordinates 0..2 (yaw, pitch, roll), ``expression=False`` zeros 3..14 (jaw and
    expressions), and everything is multiplied by ``strength`` (a float, or a (B,) / (B, 1) tensor).

    Args:
        source, target: :class:`FaceParams` of batch B (or 1, broadcast).
        normaliser: the normaliser of the A that will take this Δp (its ranges, angle scales and S).

    Returns:
        (B, 15) Δp, float32 (float64 for float64 parameters).
    """
    start = source if relative_to is None else relative_to
    d = normalise(target, normaliser=normaliser) - normalise(start, normaliser=normaliser)
    keep = d.new_tensor([float(pose)] * 3 + [float(expression)] * (NUM_DIRECTIONS - 3))
    strength = torch.as_tensor(strength, dtype=d.dtype, device=d.device)
    if strength.ndim == 1:
        strength = strength[:, None]
    return d * keep * strength
