"""3DMM parameters of a face (DECA head pose, jaw, expression) and the normalised difference Δp that drives A.

Reference spec §1.7 (DECA outputs, axis-angle → Euler) and §1.8 (Δp). Δp has 15 coordinates:
0 yaw, 1 pitch, 2 roll (degrees · S/scale), 3 jaw (``pose[3]``), 4..14 the first 11 FLAME expression
coefficients, the last 12 mapped linearly so that the training range ``[min, max]`` becomes ``[−S, S]``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InputError
from .models.deca import split_codes

SHIFT_SCALE = 6.0  # S: Δp units per normalised range half-width (A checkpoint's `shift_scale`)
ANGLE_SCALES_DEG = (40.0, 20.0, 20.0)  # yaw, pitch, roll degrees that map to S (official `voxceleb_dict`)
NUM_DIRECTIONS = 15  # learned directions of A: 3 angles, jaw, 11 expressions (official `learned_directions`)
NUM_EXPRESSIONS = 11  # FLAME expression coefficients used, exp[0:11] (official `num_expressions`)
POSE_DIRECTIONS = slice(0, 3)  # Δp coordinates of the head pose (yaw, pitch, roll)
EXPRESSION_DIRECTIONS = slice(3, NUM_DIRECTIONS)  # Δp coordinates of the jaw and expressions

_GIMBAL_R20 = 0.998  # |R[2,0]| above which the official conversion switches to its gimbal-lock branch
_PI_F32 = float(np.float32(math.pi))  # the official `rad2deg` divides by a float32 π

# Rows 0..14 (min, max) of the official ranges_*.npy (float64, libs/configs): yaw, pitch, roll (degrees),
# jaw pose[3] (radians), exp0..exp10. Rows 0..2 are informative only; the angles use ANGLE_SCALES_DEG.
RANGES: dict[str, tuple[tuple[float, float], ...]] = {
    "voxceleb": (
        (-46.37108612060547, 45.77767562866211),
        (-12.206389427185059, 29.508052825927734),
        (-20.664846420288086, 23.006832122802734),
        (-0.11169847846031189, 0.19479338824748993),
        (-0.9968752861022949, 2.3540308475494385),
        (-0.9558461308479309, 1.6016768217086792),
        (-0.2513495981693268, 0.6300631761550903),
        (-0.3255189061164856, 1.6557607650756836),
        (-1.8895974159240723, 1.3332788944244385),
        (-1.3506605625152588, 1.2258248329162598),
        (-1.1249886751174927, 1.052120327949524),
        (-1.6779751777648926, 0.9289817810058594),
        (-0.9170559644699097, 1.0866150856018066),
        (-0.7737163305282593, 1.8717907667160034),
        (-1.6655000448226929, 0.8243483901023865),
    ),
    "ffhq": (
        (-43.439971923828125, 41.85978317260742),
        (-15.939606666564941, 31.32115364074707),
        (-6.499998092651367, 4.76639986038208),
        (-0.07054586708545685, 0.24340760707855225),
        (-1.1691298484802246, 3.646054744720459),
        (-1.1616681814193726, 1.8393903970718384),
        (-0.26623764634132385, 0.5003353953361511),
        (-0.5655865669250488, 1.3908942937850952),
        (-1.6653085947036743, 1.6466118097305298),
        (-1.4325170516967773, 1.127746820449829),
        (-1.0907059907913208, 1.2641154527664185),
        (-1.8446381092071533, 0.6157387495040894),
        (-1.2562017440795898, 0.9579007625579834),
        (-0.8388957381248474, 1.4292562007904053),
        (-1.797635793685913, 0.8100603818893433),
    ),
}


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


def _ranges(ranges: str) -> np.ndarray:
    if ranges not in RANGES:
        raise InputError(f"unknown parameter ranges {ranges!r}; choose one of {sorted(RANGES)}")
    return np.array(RANGES[ranges], dtype=np.float64)


def _jaw_exp_line(ranges: str, shift_scale: float, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slope ``a = 2S/(max − min)`` and offset ``b = S − a·max`` of rows 3..14, computed in float64 and
    rounded to ``like``'s dtype and device."""
    lo, hi = _ranges(ranges)[3:NUM_DIRECTIONS].T
    a = 2 * shift_scale / (hi - lo)
    b = shift_scale - a * hi
    return like.new_tensor(a), like.new_tensor(b)


def normalise(params: FaceParams, *, ranges: str = "voxceleb", shift_scale: float = SHIFT_SCALE) -> torch.Tensor:
    """Absolute parameters in Δp units, n(p), so that the official ``Δp = n(p_t) − n(p_s)``.

    Angles: ``angle · S / scale`` with scales (40, 20, 20) degrees. Jaw and expressions: ``a·x + b``, mapping the
    ``ranges`` interval [min, max] to [−S, S].

    Returns:
        (B, 15) tensor, float32 (float64 if the parameters are float64), on the parameters' device.
    """
    dtype = torch.promote_types(params.angles.dtype, torch.float32)
    angles = params.angles.to(dtype)
    scales = angles.new_tensor(ANGLE_SCALES_DEG)
    a, b = _jaw_exp_line(ranges, shift_scale, angles)
    jaw_exp = torch.cat([params.jaw.to(dtype)[:, None], params.exp.to(dtype)], 1)
    return torch.cat([angles * shift_scale / scales, a * jaw_exp + b], 1)


def denormalise(n: torch.Tensor, *, ranges: str = "voxceleb", shift_scale: float = SHIFT_SCALE) -> FaceParams:
    """Inverse of :func:`normalise`: (B, 15) values in Δp units to :class:`FaceParams` (degrees, radians)."""
    if n.ndim != 2 or n.shape[1] != NUM_DIRECTIONS:
        raise InputError(f"normalised parameters must be (B, {NUM_DIRECTIONS}), got {tuple(n.shape)}")
    n = n.to(torch.promote_types(n.dtype, torch.float32))
    a, b = _jaw_exp_line(ranges, shift_scale, n)
    angles = n[:, POSE_DIRECTIONS] * n.new_tensor(ANGLE_SCALES_DEG) / shift_scale
    jaw_exp = (n[:, EXPRESSION_DIRECTIONS] - b) / a
    return FaceParams(angles, jaw_exp[:, 0], jaw_exp[:, 1:])


def delta_p(
    source: FaceParams,
    target: FaceParams,
    *,
    relative_to: FaceParams | None = None,
    pose: bool = True,
    expression: bool = True,
    strength: float | torch.Tensor = 1.0,
    ranges: str = "voxceleb",
    shift_scale: float = SHIFT_SCALE,
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
        ranges: which official ranges normalise jaw and expressions: ``"voxceleb"`` or ``"ffhq"``.
        shift_scale: S of the A checkpoint.

    Returns:
        (B, 15) Δp, float32 (float64 for float64 parameters).
    """
    start = source if relative_to is None else relative_to
    n_target = normalise(target, ranges=ranges, shift_scale=shift_scale)
    d = n_target - normalise(start, ranges=ranges, shift_scale=shift_scale)
    keep = d.new_tensor([float(pose)] * 3 + [float(expression)] * (NUM_DIRECTIONS - 3))
    strength = torch.as_tensor(strength, dtype=d.dtype, device=d.device)
    if strength.ndim == 1:
        strength = strength[:, None]
    return d * keep * strength
