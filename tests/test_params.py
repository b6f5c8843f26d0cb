"""3DMM parameters: DECA axis-angle → Euler, the shipped ranges, and the normalised Δp with its modes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from golden_fixtures import GOLDEN, Comparer, cases, load_case
from reenact_core.errors import InputError
from reenact_core.params import (
    ANGLE_SCALES_DEG, NUM_DIRECTIONS, NUM_EXPRESSIONS, SHIFT_SCALE, VOXCELEB, FaceParams, Normaliser,
    axis_angle_to_euler, delta_p, denormalise, normalise,
)

RANGE_FILES = ("ranges_voxceleb.npy", "ranges_FFHQ.npy")


def official_normaliser(filename: str) -> Normaliser:
    path = GOLDEN / filename
    if not path.is_file():
        pytest.fail(f"{path} is missing from the shared fixtures")
    return Normaliser(ranges=tuple(map(tuple, np.load(path)[:NUM_DIRECTIONS].tolist())))


def test_shipped_voxceleb_ranges_equal_the_official_file():
    official = official_normaliser("ranges_voxceleb.npy")
    assert np.array_equal(np.array(VOXCELEB.ranges, dtype=np.float64), np.array(official.ranges, dtype=np.float64))
    assert (VOXCELEB.angle_scales, VOXCELEB.shift_scale) == (ANGLE_SCALES_DEG, SHIFT_SCALE)


@pytest.mark.parametrize("case", cases("shift_vector_voxceleb"))
def test_shift_vector_matches_golden(case):
    stored = load_case(case)
    compare = Comparer(case, stored)
    compare.mark_input("pose_source", "pose_target", "exp_source", "exp_target")
    source = FaceParams.from_pose_exp(stored["pose_source"], stored["exp_source"])
    target = FaceParams.from_pose_exp(stored["pose_target"], stored["exp_target"])
    compare.check("angles_source", source.angles)
    compare.check("angles_target", target.angles)
    compare.check("delta_p", delta_p(source, target, normaliser=VOXCELEB))
    compare.assert_all_checked()


@pytest.mark.parametrize("case", cases("deca_encoder"))
def test_face_params_from_stored_deca_output(case):
    stored = load_case(case)
    compare = Comparer(case, stored)
    params = FaceParams.from_deca(stored["params"])
    compare.check("pose_euler_deg", params.angles)
    compare.check("jaw", params.jaw)
    compare.check("exp11", params.exp)


@pytest.mark.parametrize("axis, column, sign", [(1, 0, -1.0), (0, 1, 1.0), (2, 2, 1.0)])
def test_euler_semantics(axis, column, sign):
    degrees = torch.linspace(-80, 80, 33)
    axis_angle = torch.zeros(33, 3)
    axis_angle[:, axis] = torch.deg2rad(degrees)
    euler = axis_angle_to_euler(axis_angle)
    expected = torch.zeros(33, 3)
    expected[:, column] = sign * degrees
    assert torch.allclose(euler, expected, atol=1e-3)


def _matrix_from_euler(euler_deg: np.ndarray) -> np.ndarray:
    """R = Rz(roll) · Ry(−yaw) · Rx(pitch), the composition the official decomposition inverts."""
    yaw, pitch, roll = np.radians(euler_deg)
    return Rotation.from_euler("ZYX", [roll, -yaw, pitch]).as_matrix()


def test_euler_reconstructs_the_rotation_away_from_gimbal_lock():
    axis_angle = np.random.default_rng(0).normal(size=(500, 3)) * 1.5
    rotations = Rotation.from_rotvec(axis_angle).as_matrix()
    regular = np.abs(rotations[:, 2, 0]) <= 0.998
    euler = axis_angle_to_euler(torch.tensor(axis_angle, dtype=torch.float32)).double().numpy()
    assert np.all(np.abs(euler[:, 0]) <= 90)
    for r, e in zip(rotations[regular], euler[regular]):
        assert np.abs(_matrix_from_euler(e) - r).max() < 1e-5


@pytest.mark.parametrize("yaw_deg", [90.0, -90.0])
@pytest.mark.parametrize("pitch_deg, roll_deg", [(17.0, 11.0), (-50.0, 30.0)])
def test_euler_in_gimbal_lock_puts_roll_into_pitch(yaw_deg, pitch_deg, roll_deg):
    rotation = _matrix_from_euler(np.array([yaw_deg, pitch_deg, roll_deg]))
    axis_angle = torch.tensor(Rotation.from_matrix(rotation).as_rotvec()[None], dtype=torch.float32)
    yaw, pitch, roll = axis_angle_to_euler(axis_angle)[0].tolist()
    assert yaw == pytest.approx(yaw_deg) and roll == 0.0
    assert np.abs(_matrix_from_euler(np.array([yaw, pitch, roll])) - rotation).max() < 1e-4


def test_euler_is_finite_with_finite_gradients_for_any_rotation():
    degrees = torch.tensor([90.0, -90.0, 120.0, -120.0, 180.0, 360.0, 0.0])
    axis_angle = torch.cat([
        torch.diag_embed(torch.deg2rad(degrees)[:, None].expand(-1, 3)).reshape(-1, 3),  # single axes
        torch.deg2rad(degrees)[:, None] * torch.tensor([[0.3, 0.9, 0.2]]),  # mixed axes
        torch.randn(2000, 3, generator=torch.Generator().manual_seed(0)) * 5,  # large random rotations
    ]).requires_grad_()
    euler = axis_angle_to_euler(axis_angle)
    euler.sum().backward()
    assert torch.isfinite(euler).all() and torch.isfinite(axis_angle.grad).all()
    assert (euler[:, 0].abs() <= 90).all() and (euler[:, 1:].abs() <= 180).all()


def _random_params(batch: int, seed: int, dtype=torch.float32) -> FaceParams:
    g = torch.Generator().manual_seed(seed)
    return FaceParams(angles=torch.randn(batch, 3, generator=g, dtype=dtype) * 20,
                      jaw=torch.randn(batch, generator=g, dtype=dtype) * 0.1,
                      exp=torch.randn(batch, NUM_EXPRESSIONS, generator=g, dtype=dtype))


@pytest.mark.parametrize("filename", RANGE_FILES)
def test_normalise_maps_ranges_and_scales_to_plus_minus_s(filename):
    normaliser = official_normaliser(filename)
    rows = torch.tensor(normaliser.ranges, dtype=torch.float64)
    scales = torch.tensor(ANGLE_SCALES_DEG, dtype=torch.float64)
    for end, s in ((0, -SHIFT_SCALE), (1, SHIFT_SCALE)):
        exp = rows[4:NUM_DIRECTIONS, end][None]
        params = FaceParams(angles=(scales * np.sign(s))[None], jaw=rows[3:4, end], exp=exp)
        assert torch.allclose(normalise(params, normaliser=normaliser),
                              torch.full((1, NUM_DIRECTIONS), s, dtype=torch.float64))


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_normalise_round_trip(dtype, tol):
    params = _random_params(5, 0, dtype)
    normaliser = Normaliser(shift_scale=4.0)
    n = normalise(params, normaliser=normaliser)
    assert n.shape == (5, NUM_DIRECTIONS) and n.dtype == dtype
    back = denormalise(n, normaliser=normaliser)
    for name in ("angles", "jaw", "exp"):
        assert torch.allclose(getattr(back, name), getattr(params, name), rtol=tol, atol=tol * 10)


def test_delta_p_modes():
    source, target = _random_params(4, 1), _random_params(4, 2)
    absolute = delta_p(source, target, normaliser=VOXCELEB)
    assert torch.allclose(absolute, normalise(target, normaliser=VOXCELEB) - normalise(source, normaliser=VOXCELEB))
    assert torch.allclose(delta_p(target, source, normaliser=VOXCELEB), -absolute)

    relative = delta_p(source, target, relative_to=FaceParams(target.angles[:1], target.jaw[:1], target.exp[:1]),
                       normaliser=VOXCELEB)
    assert torch.equal(relative[0], torch.zeros(NUM_DIRECTIONS))  # the first driving frame itself: no motion
    assert torch.allclose(relative, normalise(target, normaliser=VOXCELEB) - normalise(target, normaliser=VOXCELEB)[:1])
    assert torch.equal(relative, delta_p(_random_params(4, 3), target, relative_to=FaceParams(
        target.angles[:1], target.jaw[:1], target.exp[:1]), normaliser=VOXCELEB))  # the source plays no part

    no_pose = delta_p(source, target, pose=False, normaliser=VOXCELEB)
    assert torch.equal(no_pose[:, :3], torch.zeros(4, 3)) and torch.equal(no_pose[:, 3:], absolute[:, 3:])
    no_expression = delta_p(source, target, expression=False, normaliser=VOXCELEB)
    assert torch.equal(no_expression[:, 3:], torch.zeros(4, 12)) and torch.equal(no_expression[:, :3], absolute[:, :3])

    assert torch.allclose(delta_p(source, target, strength=0.5, normaliser=VOXCELEB), 0.5 * absolute)
    per_sample = torch.tensor([0.0, 1.0, 2.0, -1.0])
    assert torch.allclose(delta_p(source, target, strength=per_sample, normaliser=VOXCELEB),
                          per_sample[:, None] * absolute)


def test_face_params_check_their_inputs():
    with pytest.raises(InputError):
        FaceParams(torch.zeros(2, 3), torch.zeros(3), torch.zeros(2, NUM_EXPRESSIONS))
    with pytest.raises(InputError):
        FaceParams.from_deca(torch.zeros(2, 235))
    with pytest.raises(InputError):
        FaceParams.from_pose_exp(torch.zeros(2, 3), torch.zeros(2, 50))
    with pytest.raises(InputError):
        denormalise(torch.zeros(2, NUM_DIRECTIONS - 1), normaliser=VOXCELEB)
    with pytest.raises(ValueError):
        Normaliser(ranges=VOXCELEB.ranges[:-1])
    with pytest.raises(InputError):
        axis_angle_to_euler(torch.zeros(2, 4))


@pytest.mark.gpu
@pytest.mark.parametrize("case", cases("shift_vector_voxceleb"))
def test_shift_vector_on_accelerator_matches_golden(case):
    device = "cuda" if torch.cuda.is_available() else "mps"
    stored = load_case(case)
    source = FaceParams.from_pose_exp(stored["pose_source"].to(device), stored["exp_source"].to(device))
    target = FaceParams.from_pose_exp(stored["pose_target"].to(device), stored["exp_target"].to(device))
    compare = Comparer(case, stored)
    compare.check("angles_source", source.angles)
    compare.check("angles_target", target.angles)
    shift = delta_p(source, target, normaliser=VOXCELEB)
    assert shift.device.type == device
    compare.check("delta_p", shift)
