"""Δp sampling for training A and the ground-truth FLAME parameters of the shape losses
(reference-method §3.4–3.5; official ``make_shift_vector_50`` and ``get_params_gt_reenacted``).

``disentanglement_50``: the first half of the *global* batch gets the full Δp of its (source, target) pair; the
second half gets one random coordinate d, whose target value in Δp units is uniform in [−S, S], all others 0.
Every random draw is a function of (seed, step, global sample index) only (``draw_shifts``), so a run
reproduces, and a batch split over processes draws exactly what one process would. Draws can also be given
(``ShiftDraws``), e.g. to replay the reference's.

Ground truth: the source's shape with the target's pose and expression (first half), or the source's pose and
expression with coordinate d moved to its new value (second half). For a head angle the reference goes through
Euler angles and back with a conversion that is *not* the inverse of its axis-angle → Euler one
(``reference_euler=True`` reproduces it; it rotates the other two angles by 1–4°); by default the exact inverse
of :func:`reenact_core.params.axis_angle_to_euler` is used.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import InputError
from ..params import NUM_DIRECTIONS, NUM_EXPRESSIONS, FaceParams, Normaliser, denormalise, normalise

_PI_F32 = torch.tensor(torch.pi, dtype=torch.float32).item()   # the reference's deg2rad multiplies by float32 π
_MASK64 = (1 << 64) - 1
JAW_DIRECTION = 3
N_ANGLES = 3


@dataclass(frozen=True)
class ShiftDraws:
    """The random choices of one batch.

    Attributes:
        single: ``(B,)`` bool: the sample moves one coordinate (second half of the global batch).
        direction: ``(B,)`` int64 in [0, 15): the coordinate moved by a single-direction sample.
        uniform: ``(B,)`` float32 in [0, 1): its target's position, ``Δp_d = (lo − hi)·u + hi`` with
            ``lo = −S − start``, ``hi = S − start`` (the reference's ``torch.rand`` formula).
    """

    single: torch.Tensor
    direction: torch.Tensor
    uniform: torch.Tensor

    def to(self, device: torch.device | str) -> ShiftDraws:
        return ShiftDraws(self.single.to(device), self.direction.to(device), self.uniform.to(device))


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, step: int, sample_index: int, stream: int = 0) -> int:
    """A 63-bit generator seed that depends only on (seed, step, global sample index, stream)."""
    h = 0
    for value in (seed, step, sample_index, stream):
        h = _splitmix64(h ^ (int(value) & _MASK64))
    return h >> 1


def draw_shifts(seed: int, step: int, sample_index: torch.Tensor, global_batch: int,
                num_directions: int = NUM_DIRECTIONS) -> ShiftDraws:
    """The draws of the samples ``sample_index`` ``(B,)`` (indices in the global batch of ``global_batch``).

    Samples with index ≥ ``global_batch // 2`` are single-direction. Each sample has its own CPU generator
    seeded by :func:`sample_seed`, so the result does not depend on how the global batch is split.
    Raises InputError for an odd global batch or an index outside it.
    """
    index = torch.as_tensor(sample_index, dtype=torch.long).reshape(-1).cpu()
    if global_batch < 2 or global_batch % 2:
        raise InputError(f"disentanglement_50 needs an even global batch of at least 2, got {global_batch}")
    if index.numel() and (index.min() < 0 or index.max() >= global_batch):
        raise InputError(f"sample indices must lie in [0, {global_batch}), got {index.tolist()}")
    direction, uniform = [], []
    for i in index.tolist():
        g = torch.Generator().manual_seed(sample_seed(seed, step, i))
        direction.append(torch.randint(num_directions, (1,), generator=g))
        uniform.append(torch.rand(1, generator=g, dtype=torch.float32))
    cat = (lambda xs, dtype: torch.cat(xs) if xs else torch.zeros(0, dtype=dtype))
    return ShiftDraws(index >= global_batch // 2, cat(direction, torch.long), cat(uniform, torch.float32))


def shift_vector(source: FaceParams, target: FaceParams, draws: ShiftDraws, *,
                 normaliser: Normaliser) -> torch.Tensor:
    """Δp ``(B, 15)`` of ``disentanglement_50``: ``n(target) − n(source)`` for full samples; for a single-direction
    sample only coordinate d, ``(lo − hi)·u + hi`` with ``start = n(source)_d``, ``lo = −S − start``,
    ``hi = S − start``, so that ``start + Δp_d`` is uniform in [−S, S] (S and n from the A's ``normaliser``)."""
    n_source = normalise(source, normaliser=normaliser)
    full = normalise(target, normaliser=normaliser) - n_source
    shift_scale = normaliser.shift_scale
    draws = draws.to(full.device)
    start = n_source.gather(1, draws.direction[:, None])[:, 0]
    lo, hi = -shift_scale - start, shift_scale - start
    value = (lo - hi) * draws.uniform.to(full.dtype) + hi
    single = torch.zeros_like(full).scatter(1, draws.direction[:, None], value[:, None])
    return torch.where(draws.single[:, None], single, full)


def euler_to_axis_angle(angles_deg: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`reenact_core.params.axis_angle_to_euler` (away from its gimbal branch):
    (yaw, pitch, roll) degrees ``(..., 3)`` → axis-angle radians ``(..., 3)``, the rotation
    ``Rz(roll)·Ry(−yaw)·Rx(pitch)``."""
    half = angles_deg * (torch.pi / 360.0)
    c, s = torch.cos(half), torch.sin(half)
    zero = torch.zeros_like(c[..., 0])
    q_roll = torch.stack([c[..., 2], zero, zero, s[..., 2]], -1)
    q_yaw = torch.stack([c[..., 0], zero, -s[..., 0], zero], -1)
    q_pitch = torch.stack([c[..., 1], s[..., 1], zero, zero], -1)
    return quaternion_to_axis_angle(_quaternion_product(_quaternion_product(q_roll, q_yaw), q_pitch))


def _quaternion_product(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    pw, px, py, pz = p.unbind(-1)
    qw, qx, qy, qz = q.unbind(-1)
    return torch.stack([pw * qw - px * qx - py * qy - pz * qz, pw * qx + px * qw + py * qz - pz * qy,
                        pw * qy - px * qz + py * qw + pz * qx, pw * qz + px * qy - py * qx + pz * qw], -1)


def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """(w, x, y, z) ``(..., 4)`` → axis-angle ``(..., 3)``, as the reference's ``quaternion_to_angle_axis``:
    ``2θ = 2·atan2(±s, ±w)`` (sign of w), ``k = 2θ/s`` (2 where s = 0)."""
    w, q1, q2, q3 = q.unbind(-1)
    s_sq = (q1 * q1 + q2 * q2) + q3 * q3
    nonzero = s_sq > 0.0
    s = torch.sqrt(torch.where(nonzero, s_sq, torch.ones_like(s_sq)))
    two_theta = 2.0 * torch.where(w < 0.0, torch.atan2(-s, -w), torch.atan2(s, w))
    k = torch.where(nonzero, two_theta / s, torch.full_like(s, 2.0))
    return torch.stack([q1 * k, q2 * k, q3 * k], -1)


def reference_euler_to_axis_angle(angles_deg: torch.Tensor) -> torch.Tensor:
    """The reference's Euler → axis-angle (``euler_to_quaternion`` with x = yaw, y = pitch, z = roll, then
    ``quaternion_to_angle_axis`` and the swap ``(a0, a1, a2) → (a1, −a0, a2)``). Not the inverse of
    ``axis_angle_to_euler`` when two or more angles are non-zero; kept for parity with the reference."""
    radians = angles_deg * _PI_F32 / 180.0
    c, s = torch.cos(radians / 2), torch.sin(radians / 2)
    cx, cy, cz = c.unbind(-1)
    sx, sy, sz = s.unbind(-1)
    q = torch.stack([cx * cy * cz - sx * sy * sz, cx * sy * sz + cy * cz * sx,
                     cx * cz * sy - sx * cy * sz, cx * cy * sz + sx * cz * sy], -1)
    a0, a1, a2 = quaternion_to_axis_angle(q).unbind(-1)
    return torch.stack([a1, -a0, a2], -1)


def ground_truth_params(source: FaceParams, source_pose: torch.Tensor, source_exp: torch.Tensor,
                        target_pose: torch.Tensor, target_exp: torch.Tensor, delta_p: torch.Tensor,
                        draws: ShiftDraws, *, normaliser: Normaliser,
                        reference_euler: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth pose ``(B, 6)`` and expression ``(B, 50)`` for the shape losses (the shape is the source's).

    Full samples: the target's pose and expression. Single-direction samples: the source's, with coordinate
    d set to ``denormalise(n(source)_d + Δp_d)``: a head angle (degrees) converted back to axis-angle
    (exactly, or as the reference when ``reference_euler``), the jaw ``pose[3]``, or ``exp[d − 4]``.

    Args:
        source: the source's :class:`FaceParams` (its ``angles`` are those Δp was made from).
        source_pose, target_pose: ``(B, 6)`` DECA pose, axis-angle radians (global, jaw).
        source_exp, target_exp: ``(B, 50)`` DECA expression.
        delta_p: ``(B, 15)`` from :func:`shift_vector` with the same ``draws`` and ``normaliser``.
    """
    b = delta_p.shape[0]
    if source_pose.shape != (b, 6) or target_pose.shape != (b, 6) or source_exp.shape[0] != b \
            or target_exp.shape != source_exp.shape or source_exp.shape[1] < NUM_EXPRESSIONS:
        raise InputError(f"poses must be (B, 6) and expressions (B, 50) for B = {b}; got {tuple(source_pose.shape)}, "
                         f"{tuple(target_pose.shape)}, {tuple(source_exp.shape)}, {tuple(target_exp.shape)}")
    draws = draws.to(delta_p.device)
    d = draws.direction
    is_d = torch.nn.functional.one_hot(d, NUM_DIRECTIONS).bool()
    new = denormalise(normalise(source, normaliser=normaliser) + delta_p, normaliser=normaliser)
    convert = reference_euler_to_axis_angle if reference_euler else euler_to_axis_angle
    angles = torch.where(is_d[:, :N_ANGLES], new.angles, source.angles)
    single_pose = torch.cat([torch.where((d < N_ANGLES)[:, None], convert(angles), source_pose[:, :3]),
                             torch.where(d == JAW_DIRECTION, new.jaw, source_pose[:, 3])[:, None],
                             source_pose[:, 4:]], 1)
    single_exp = torch.cat([torch.where(is_d[:, JAW_DIRECTION + 1:], new.exp, source_exp[:, :NUM_EXPRESSIONS]),
                            source_exp[:, NUM_EXPRESSIONS:]], 1)
    single = draws.single[:, None]
    return torch.where(single, single_pose, target_pose), torch.where(single, single_exp, target_exp)
