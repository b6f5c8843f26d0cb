"""Paste-back: geometry against plain resampling, the blend mask, untouched pixels, frame sizes and layouts."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from reenact_core.errors import InputError
from reenact_core.faces.images import MIN_SIDE
from reenact_core.faces.paste_back import DEFAULT_FEATHER, paste_back
from reenact_core.faces.reference_crop import crop_using_landmarks

CROP = 256


def smooth_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 RGB made of a few long-wavelength sinusoids (bilinear resampling is nearly exact)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width].astype(np.float64)
    channels = []
    for _ in range(3):
        fx, fy = rng.uniform(0.5, 2.0, 2) * 2 * np.pi / 300
        channels.append(128 + 60 * np.sin(fx * x + rng.uniform(0, 6)) + 50 * np.cos(fy * y + rng.uniform(0, 6)))
    return np.clip(np.stack(channels, -1), 0, 255).round().astype(np.uint8)


def similarity(scale: float, degrees: float, centre_in_frame) -> np.ndarray:
    """(2, 3) crop → frame map: the crop centre goes to ``centre_in_frame``, crop pixels are ``scale`` frame
    pixels, rotated by ``degrees``."""
    a = np.deg2rad(degrees)
    linear = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    centre = np.array([(CROP - 1) / 2, (CROP - 1) / 2])
    return np.hstack([linear, (np.asarray(centre_in_frame) - linear @ centre)[:, None]])


def resample_crop(frame: np.ndarray, crop_to_frame: np.ndarray) -> np.ndarray:
    """The frame seen through the crop: crop(p) = frame(M p)."""
    return cv2.warpAffine(frame, crop_to_frame, (CROP, CROP), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT)


GEOMETRIES = {
    "inside_rotated": (1.4, 12.0, (330, 250)),
    "shrunk": (0.6, -30.0, (200, 260)),
    "leaving_top_left": (1.2, 0.0, (60, 40)),
    "leaving_bottom_right": (1.7, 45.0, (600, 470)),
}


@pytest.mark.parametrize("name", GEOMETRIES)
def test_geometry_matches_plain_resampling(name):
    frame = smooth_frame(480, 640)
    matrix = similarity(*GEOMETRIES[name])
    crop = resample_crop(frame, matrix)
    image, mask = paste_back(frame, crop, matrix)
    round_trip = cv2.warpAffine(crop, matrix, (640, 480), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = mask > 0
    assert inside.any()
    diff_round_trip = np.abs(image.astype(int) - round_trip.astype(int))[mask == 1]
    diff_frame = np.abs(image.astype(int) - frame.astype(int))[inside]
    assert diff_round_trip.max() <= 2 and diff_frame.max() <= 2


def test_geometry_with_the_reference_crop_transform():
    frame = smooth_frame(600, 800, seed=1)
    rng = np.random.default_rng(1)
    landmarks = (np.array([400, 330]) + rng.uniform(-110, 110, (68, 2))).astype(np.float32)
    crop, transform = crop_using_landmarks(frame, landmarks)
    image, mask = paste_back(frame, crop, transform.crop_to_frame_matrix())
    assert (mask == 1).any()
    assert np.abs(image.astype(int) - frame.astype(int))[mask > 0].max() <= 2


def axis_aligned(scale: float, x0: float, y0: float) -> np.ndarray:
    """Crop pixel (u, v) at frame point (x0 + u·scale, y0 + v·scale)."""
    return np.array([[scale, 0.0, x0], [0.0, scale, y0]])


@pytest.mark.parametrize("feather", [0.0, 8.0, DEFAULT_FEATHER, 40.0])
def test_solid_colour_mask_and_untouched_pixels(feather):
    rng = np.random.default_rng(2)
    frame = rng.integers(0, 256, (400, 500, 3), dtype=np.uint8)
    colour = np.array([200, 30, 90], np.uint8)
    face = np.broadcast_to(colour, (CROP, CROP, 3)).copy()
    scale = 1.3
    matrix = axis_aligned(scale, 70.2, 40.7)
    image, mask = paste_back(frame, face, matrix, feather=feather)

    assert mask.shape == frame.shape[:2] and mask.dtype == np.float32
    assert mask.min() >= 0 and mask.max() == 1
    full = mask == 1
    assert np.abs(image[full].astype(int) - colour).max() <= 1
    outside = mask == 0
    np.testing.assert_array_equal(image[outside], frame[outside])
    # the crop covers x in [70.2 − 0.5·1.3, 70.2 + 255.5·1.3]; the ramp is `feather` crop pixels wide
    row = mask[int(40.7 + 128 * scale)]
    left = row[: int(70.2 + 128 * scale)]
    assert (np.diff(left) >= 0).all()  # monotone from outside to the centre
    ramp = np.nonzero((left > 0) & (left < 1))[0]
    assert len(ramp) <= np.ceil(feather * scale) + 1
    if feather > 0:
        assert len(ramp) >= np.floor(feather * scale) - 1


def test_mask_is_monotone_along_a_rotated_edge_normal():
    frame = np.zeros((600, 600, 3), np.uint8)
    face = np.full((CROP, CROP, 3), 255, np.uint8)
    matrix = similarity(1.5, 90.0, (300, 300))  # a quarter turn keeps rows and columns on the pixel grid
    _, mask = paste_back(frame, face, matrix, feather=30)
    column = mask[:300, 300]
    assert (np.diff(column) >= 0).all() and column[0] == 0 and column[-1] == 1


@pytest.mark.parametrize("height, width", [(MIN_SIDE, MIN_SIDE), (333, 517), (517, 333), (3000, 4000)])
def test_frame_sizes(height, width, monkeypatch):
    frame = np.full((height, width, 3), 10, np.uint8)
    face = np.full((CROP, CROP, 3), 250, np.uint8)
    side = 0.6 * min(height, width)
    matrix = axis_aligned(side / CROP, width / 2 - side / 2, height / 2 - side / 2)
    resampled = []
    remap = cv2.remap
    monkeypatch.setattr(cv2, "remap", lambda src, map_x, *a, **k: resampled.append(map_x.shape) or
                        remap(src, map_x, *a, **k))
    image, mask = paste_back(frame, face, matrix)
    assert image.shape == frame.shape and mask.shape == (height, width)
    assert image[height // 2, width // 2].tolist() == [250] * 3 and mask[height // 2, width // 2] == 1
    assert image[0, 0].tolist() == [10] * 3 and mask[0, 0] == 0
    ys, xs = np.nonzero(mask)
    scale, (x0, y0) = matrix[0, 0], matrix[:, 2]  # the crop covers [x0 − scale/2, x0 + (CROP − 1/2)·scale]
    assert x0 - scale / 2 <= xs.min() and xs.max() <= x0 + (CROP - 0.5) * scale
    assert y0 - scale / 2 <= ys.min() and ys.max() <= y0 + (CROP - 0.5) * scale
    # only the face's region is resampled: its bounding box, one pixel of rounding on each side
    assert len(resampled) == 1 and resampled[0][0] <= np.ceil(side) + 2 and resampled[0][1] <= np.ceil(side) + 2


def layouts(frame_rgb: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """Frame variants and the size of one 8-bit grey level in their units."""
    grey = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    alpha = np.arange(frame_rgb.shape[0] * frame_rgb.shape[1], dtype=np.uint32).reshape(frame_rgb.shape[:2])
    return {
        "grey": (grey, 1),
        "grey_hw1": (grey[..., None], 1),
        "rgba": (np.dstack([frame_rgb, (alpha % 251).astype(np.uint8)]), 1),
        "rgb_uint16": (frame_rgb.astype(np.uint16) * 257, 257),
        "rgba_uint16": (np.dstack([frame_rgb.astype(np.uint16) * 257, (alpha % 65521).astype(np.uint16)]), 257),
        "rgb_float32": (frame_rgb.astype(np.float32) / 255, 1 / 255),
        "grey_float64": (grey / 255.0, 1 / 255),
    }


@pytest.mark.parametrize("layout", list(layouts(np.zeros((2, 2, 3), np.uint8))))
def test_layouts_keep_shape_dtype_alpha_and_untouched_pixels(layout):
    rng = np.random.default_rng(4)
    frame_rgb = rng.integers(0, 256, (300, 301, 3), dtype=np.uint8)
    frame, level = layouts(frame_rgb)[layout]
    colour = np.array([40, 180, 220], np.uint8)
    expected = colour if frame.ndim == 3 and frame.shape[2] >= 3 else np.array([np.dot([0.299, 0.587, 0.114], colour)])
    face = np.broadcast_to(colour, (CROP, CROP, 3)).copy()
    image, mask = paste_back(frame, face, axis_aligned(0.7, 50.3, 30.9))
    assert image.shape == frame.shape and image.dtype == frame.dtype
    outside = mask == 0
    np.testing.assert_array_equal(image[outside], frame[outside])
    values = image.reshape(frame.shape[:2] + (-1,))[mask == 1][:, :3].astype(np.float64)
    assert np.abs(values / level - expected).max() <= 1
    if frame.ndim == 3 and frame.shape[2] == 4:
        np.testing.assert_array_equal(image[..., 3], frame[..., 3])


def test_crop_outside_the_frame_changes_nothing():
    frame = np.random.default_rng(5).integers(0, 256, (100, 120, 3), dtype=np.uint8)
    image, mask = paste_back(frame, np.zeros((CROP, CROP, 3), np.uint8), axis_aligned(0.5, 500, 500))
    np.testing.assert_array_equal(image, frame)
    assert not mask.any()


def test_colour_matching_moves_the_face_to_the_frame_statistics():
    rng = np.random.default_rng(6)
    frame = np.clip(rng.normal([150, 110, 90], 20, (300, 300, 3)), 0, 255).astype(np.uint8)
    face = np.clip(rng.normal([90, 120, 170], 35, (CROP, CROP, 3)), 0, 255).astype(np.uint8)
    matrix = axis_aligned(0.8, 40, 40)
    plain, mask = paste_back(frame, face, matrix)
    matched, _ = paste_back(frame, face, matrix, color_match=True)
    full = mask == 1
    target = frame[full].mean(0)
    assert np.abs(matched[full].mean(0) - target).max() < 3
    assert np.abs(plain[full].mean(0) - target).max() > 20
    assert abs(matched[full].std() - frame[full].std()) < 0.25 * frame[full].std()


@pytest.mark.parametrize("kwargs, message", [
    ({"crop_to_frame": np.zeros((3, 3))}, "affine"),
    ({"crop_to_frame": np.zeros((2, 3))}, "invertible"),
    ({"crop_to_frame": np.full((2, 3), np.nan)}, "affine"),
    ({"feather": -1.0}, "feather"),
    ({"face": np.zeros((CROP, CROP, 3), np.int64)}, "dtype"),
])
def test_bad_arguments_raise_input_error(kwargs, message):
    arguments = {"frame": np.zeros((100, 100, 3), np.uint8), "face": np.zeros((CROP, CROP, 3), np.uint8),
                 "crop_to_frame": axis_aligned(0.3, 10, 10)} | kwargs
    with pytest.raises(InputError, match=message):
        paste_back(**arguments)
