"""Face crops: the reference 256 crop (bit-exact), its transform back to the frame, and DECA's 224 crop."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from golden_fixtures import Comparer, cases, load_case, manifest
from manifest_prose import labelled_entry
from reenact_core.errors import InputError
from reenact_core.faces.deca_crop import DECA_CROP_SIZE, deca_crop, deca_crop_theta, deca_warp
from reenact_core.faces.reference_crop import CROP_SIZE, CropTransform, crop_box, crop_using_landmarks
from reenact_core.imaging import image_to_tensor, to_deca_input


def _indexed(tensor_names, prefix: str) -> list[str]:
    return [name[len(prefix):] for name in tensor_names if name.startswith(prefix)]


@pytest.mark.parametrize("case", cases("voxceleb_crop"))
def test_reference_crop_is_bit_exact(case):
    spec = manifest()["cases"][case]
    stored = load_case(case)
    boxes = labelled_entry(spec, "boxes", "x1,y1,x2,y2,[H,W]")
    indices = _indexed(spec["tensors"], "crop_")
    assert indices, f"{case} stores no crop_i tensors"
    used = set()
    for i in indices:
        image, landmarks = stored[f"image_{i}"].numpy(), stored[f"landmarks_{i}"].numpy()
        crop, transform = crop_using_landmarks(image, landmarks)
        expected = stored[f"crop_{i}"].numpy()
        assert crop.dtype == expected.dtype and crop.shape == expected.shape
        assert np.array_equal(crop, expected), f"{case}.crop_{i}: not bit-exact (max |err| "\
            f"{np.abs(crop.astype(int) - expected).max()})"
        assert transform.frame_hw == image.shape[:2]
        if i in boxes:
            assert list(transform.box) == boxes[i][:4]
        used.update({f"image_{i}", f"landmarks_{i}", f"crop_{i}"})
    assert used == set(stored), f"{case}: stored tensors left uncompared: {sorted(set(stored) - used)}"


def _ramp_frame(h: int, w: int) -> np.ndarray:
    """Red = 2·column, green = 2·row: a linear image that bicubic resampling reproduces."""
    frame = np.zeros((h, w, 3), np.uint8)
    frame[..., 0] = 2 * np.arange(w)[None]
    frame[..., 1] = 2 * np.arange(h)[:, None]
    return frame


def _grid_landmarks(x0: float, y0: float, span: float) -> np.ndarray:
    xs, ys = np.meshgrid(np.linspace(x0, x0 + span, 17), np.linspace(y0, y0 + span, 4))
    return np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32)


def test_crop_transform_maps_crop_pixels_to_frame_pixels():
    frame = _ramp_frame(120, 128)
    crop, transform = crop_using_landmarks(frame, _grid_landmarks(50, 60, 30))
    assert transform.box[0] >= 0 and transform.box[2] <= 128  # inside the frame: no feathering
    cols, rows = np.meshgrid(np.arange(CROP_SIZE), np.arange(CROP_SIZE))
    frame_points = transform.crop_to_frame(np.stack([cols, rows], -1).astype(np.float64))
    inner = (slice(8, -8), slice(8, -8))  # away from the resampling edge
    for channel in (0, 1):
        err = (crop[..., channel].astype(np.float64) - 2 * frame_points[..., channel])[inner]
        assert abs(err.mean()) < 0.05, "half-pixel convention of the crop transform is off"
        assert np.abs(err).max() <= 0.5 + 1e-6
    # the documented paste-back: cv2.warpAffine with the inverse map puts the crop back in place
    pasted = cv2.warpAffine(crop, transform.frame_to_crop_matrix(), (128, 120), flags=cv2.WARP_INVERSE_MAP)
    x1, y1, x2, y2 = transform.box
    inside = (slice(y1 + 2, y2 - 2), slice(x1 + 2, x2 - 2))
    assert np.abs(pasted[inside].astype(int) - frame[inside]).max() <= 1


def test_crop_transform_matrices_and_points_agree():
    transform = CropTransform(box=(-30, 12, 170, 212), frame_hw=(300, 200))
    to_frame, to_crop = transform.crop_to_frame_matrix(), transform.frame_to_crop_matrix()
    assert np.allclose(np.vstack([to_frame, [0, 0, 1]]) @ np.vstack([to_crop, [0, 0, 1]]), np.eye(3))
    # box edges (pixel borders at −0.5) map onto the crop's borders
    edges = np.array([[-30.5, 11.5], [169.5, 211.5]])
    assert np.allclose(transform.frame_to_crop(edges), [[-0.5, -0.5], [CROP_SIZE - 0.5, CROP_SIZE - 0.5]])
    points = torch.tensor([[3.0, 4.0], [100.0, 7.5]], dtype=torch.float64)
    back = transform.crop_to_frame(transform.frame_to_crop(points))
    assert isinstance(back, torch.Tensor) and torch.allclose(back, points)


PADDED_SEAM_LEVELS = 4   # largest step between neighbouring crop pixels of the padded ramp (the ramp itself: < 1)


def test_crop_with_padding_larger_than_the_frame():
    """A box leaving the frame on every side: the frame part keeps the frame's values, the padding fills without a
    seam (reflected, blurred) and fades to one colour (the padded image's median) at the box's corners."""
    h, w = 40, 50
    frame = _ramp_frame(h, w)
    crop, transform = crop_using_landmarks(frame, _grid_landmarks(5, 5, 35))
    x1, y1, x2, y2 = transform.box
    pad = max(-x1, -y1, x2 - w, y2 - h)
    assert min(-x1, -y1, x2 - w, y2 - h) > 0  # needs reflect padding on every side
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8
    cols, rows = np.meshgrid(np.arange(CROP_SIZE), np.arange(CROP_SIZE))
    points = transform.crop_to_frame(np.stack([cols, rows], -1).astype(np.float64))
    margin = pad * 2 / 3   # the feathering reaches a third of the pad into the frame; bicubic needs 2 px more
    inner = ((points[..., 0] >= margin) & (points[..., 0] <= w - 1 - margin)
             & (points[..., 1] >= margin) & (points[..., 1] <= h - 1 - margin))
    assert inner.sum() > CROP_SIZE ** 2 / 20
    for channel in (0, 1):
        assert np.abs(crop[..., channel][inner] - 2 * points[..., channel][inner]).max() <= 0.5 + 1e-6
    steps = [np.abs(np.diff(crop.astype(int), axis=axis)).max() for axis in (0, 1)]
    assert max(steps) <= PADDED_SEAM_LEVELS, f"a seam at the frame's border: steps of {steps} levels"
    corners = crop[[0, 0, -1, -1], [0, -1, 0, -1]].astype(int)
    assert np.abs(corners - corners[0]).max() <= 1, f"the corners do not fade to one colour: {corners.tolist()}"


def test_crop_box_follows_the_official_rule():
    landmarks = _grid_landmarks(100.25, 40.5, 60)  # extent 60 → size 60, centre (130, 70) after rounding
    cx, cy = np.round((landmarks.min(0) + landmarks.max(0)) / 2).astype(int)
    size = int(np.ptp(landmarks, 0).max())
    assert crop_box(landmarks) == (cx - size, cy - size // 6 - size, cx + size, cy - size // 6 + size)


@pytest.mark.parametrize("image, landmarks", [
    (np.zeros((64, 64), np.uint8), _grid_landmarks(10, 10, 30)),           # grey
    (np.zeros((64, 64, 4), np.uint8), _grid_landmarks(10, 10, 30)),        # RGBA
    (np.zeros((64, 64, 3), np.float32), _grid_landmarks(10, 10, 30)),      # float image
    (np.zeros((64, 64, 3), np.uint16), _grid_landmarks(10, 10, 30)),       # 16-bit
    (np.zeros((64, 64, 3), np.uint8), _grid_landmarks(10, 10, 30)[:5]),    # 5 points
    (np.zeros((64, 64, 3), np.uint8), np.full((68, 2), np.nan)),           # NaN
    (np.zeros((64, 64, 3), np.uint8), np.full((68, 2), 7.0)),              # a single point
])
def test_reference_crop_rejects_bad_inputs(image, landmarks):
    with pytest.raises(InputError):
        crop_using_landmarks(image, landmarks)


def test_image_to_tensor_takes_read_only_arrays_without_a_warning():
    """In a fresh process (torch warns once per process), where a UserWarning is an error."""
    script = ("import numpy as np; from reenact_core.imaging import image_to_tensor; "
              "a = np.full((4, 4, 3), 255, np.uint8); a.flags.writeable = False; "
              "assert float(image_to_tensor(a).min()) == 1.0")
    run = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", script], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr


def test_image_to_tensor_and_deca_input_ranges():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, 2)
    x = image_to_tensor(values)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    expected = np.float32(values.transpose(2, 0, 1)) / np.float32(255) * np.float32(2) - np.float32(1)
    assert torch.equal(x[0], torch.from_numpy(expected))
    assert torch.equal(image_to_tensor(torch.from_numpy(np.stack([values, values]))), torch.cat([x, x]))
    y = to_deca_input(x)
    assert y.min() == 0 and y.max() < 255
    assert torch.allclose(y, torch.from_numpy(values.transpose(2, 0, 1)).float() / (1 + 5e-6), atol=1e-4)
    with pytest.raises(InputError):
        image_to_tensor(values.astype(np.float32))


@pytest.mark.parametrize("case", cases("deca_crop"))
def test_deca_crop_matches_golden(case):
    stored = load_case(case)
    compare = Comparer(case, stored)
    compare.mark_input("crop256", "kpt68")
    image_224, theta = deca_crop(image_to_tensor(stored["crop256"]), stored["kpt68"])
    compare.check("theta", theta)
    compare.check("image_224", image_224)
    compare.assert_all_checked()


def _kornia041_reference(image: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The golden README's warp formula in float64 NumPy, for one (C, H, W) image in [0, 255]."""
    c, h, w = image.shape
    n = DECA_CROP_SIZE
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    uv = np.stack([(cols + 0.5) * (n - 1) / n, (rows + 0.5) * (n - 1) / n], -1)
    src = (uv - theta[:, 2]) @ np.linalg.inv(theta[:, :2]).T
    x, y = src[..., 0] * w / (w - 1) - 0.5, src[..., 1] * h / (h - 1) - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    out = np.zeros((c, n, n))
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            weight = (1 - np.abs(x - xi)) * (1 - np.abs(y - yi))
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            out += np.where(inside, weight, 0) * image[:, yi.clip(0, h - 1), xi.clip(0, w - 1)]
    return out / 255


def test_deca_warp_follows_the_formula_for_any_input_size():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, 37, 52, generator=g, dtype=torch.float64) * 255
    kpt = torch.rand(2, 68, 2, generator=g, dtype=torch.float64) * torch.tensor([40.0, 25.0]) + 6
    theta = deca_crop_theta(kpt).double()
    theta[1, 0, 1], theta[1, 1, 0] = 0.3, -0.2  # a general affine, not only a similarity
    out = deca_warp(image, theta)
    assert out.shape == (2, 3, DECA_CROP_SIZE, DECA_CROP_SIZE) and out.dtype == torch.float64
    for b in range(2):
        expected = _kornia041_reference(image[b].numpy(), theta[b].numpy())
        assert np.abs(out[b].numpy() - expected).max() < 1e-9


def test_deca_warp_is_differentiable_in_image_and_theta():
    g = torch.Generator().manual_seed(1)
    image = (torch.rand(1, 3, 48, 48, generator=g, dtype=torch.float64) * 255).requires_grad_()
    kpt = torch.rand(1, 68, 2, generator=g, dtype=torch.float64) * 30 + 9
    theta = deca_crop_theta(kpt).double().requires_grad_()
    weights = torch.rand(1, 3, DECA_CROP_SIZE, DECA_CROP_SIZE, generator=g, dtype=torch.float64)
    (deca_warp(image, theta) * weights).sum().backward()
    assert image.grad.abs().sum() > 0 and torch.isfinite(theta.grad).all()
    direction = torch.randn(1, 2, 3, generator=g, dtype=torch.float64) * 1e-3
    eps = 1e-4
    with torch.no_grad():
        plus, minus = deca_warp(image, theta + eps * direction), deca_warp(image, theta - eps * direction)
        numeric = ((plus - minus) * weights).sum() / (2 * eps)
    assert torch.allclose((theta.grad * direction).sum(), numeric, rtol=1e-4, atol=1e-7)


def test_deca_warp_half_precision_matches_float32():
    g = torch.Generator().manual_seed(2)
    image = torch.rand(1, 3, 64, 64, generator=g) * 255
    theta = deca_crop_theta(torch.rand(1, 68, 2, generator=g) * 40 + 12)
    half = deca_warp(image.half(), theta)
    assert half.dtype == torch.float16
    assert (half.float() - deca_warp(image, theta)).abs().max() < 2e-3


def test_deca_inputs_are_checked():
    with pytest.raises(InputError):
        deca_crop_theta(torch.zeros(68, 2))
    with pytest.raises(InputError):
        deca_warp(torch.zeros(1, 3, 8, 8), torch.zeros(2, 2, 3))
    with pytest.raises(InputError):
        deca_warp(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 2, 3))


@pytest.mark.gpu
@pytest.mark.parametrize("case", cases("deca_crop"))
def test_deca_crop_on_accelerator_matches_golden(case):
    device = "cuda" if torch.cuda.is_available() else "mps"
    stored = load_case(case)
    image_224, theta = deca_crop(image_to_tensor(stored["crop256"].to(device)), stored["kpt68"].to(device))
    assert image_224.device.type == device and theta.device.type == device
    compare = Comparer(case, stored)
    compare.check("theta", theta)
    compare.check("image_224", image_224)
