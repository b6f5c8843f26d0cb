"""Putting a generated face crop back into its frame through the crop's affine transform, with a soft edge.

Only the frame's bounding region of the crop is resampled and blended, so the cost follows the face's size,
not the frame's. The blend mask is 1 inside the crop and falls to 0 at the crop's border over ``feather``
crop pixels (smoothstep of the distance to the nearest border); it is computed exactly at each frame pixel, for
any affine transform. Frame pixels where the mask is 0 are returned unchanged, bit for bit.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError
from .images import check_image, from_float_rgb, to_float_rgb

DEFAULT_FEATHER = 16.0  # width of the blend ramp in crop pixels (1/16 of a 256 crop)


def paste_back(frame: np.ndarray, face: np.ndarray, crop_to_frame: np.ndarray, feather: float = DEFAULT_FEATHER,
               color_match: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Composites a face crop into its frame.

    Args:
        frame: (H, W) grey, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA; uint8, uint16 or float in [0, 1].
        face: the (S_h, S_w) crop in any of those layouts (e.g. the 256-px generated face, RGB).
        crop_to_frame: (2, 3) affine matrix mapping crop points ``(x, y, 1)`` to frame points, pixel centres on
            integers (``CropTransform.crop_to_frame_matrix()``); any invertible affine map.
        feather: width in crop pixels of the mask's ramp from 0 at the crop border to 1 inside; 0 for a hard edge.
        color_match: shift the face's colours so that their mean and standard deviation per channel in CIE Lab
            (cv2, D65) equal those of the frame under the mask (Reinhard-style transfer, weighted by the mask).

    Returns:
        ``(image, mask)``: the frame's layout, dtype and alpha with the face blended in, and the (H, W)
        float32 blend weight in [0, 1] of the face at each frame pixel.
    """
    frame = check_image(frame)
    face_rgb = to_float_rgb(check_image(face, min_side=1))
    if feather < 0:
        raise InputError(f"feather must be ≥ 0 crop pixels, got {feather}")
    matrix = _check_matrix(crop_to_frame)
    h, w = frame.shape[:2]
    out, mask = frame.copy(), np.zeros((h, w), np.float32)
    region = _region(matrix, face_rgb.shape[:2], (h, w))
    if region is None:
        return out, mask
    x0, y0, x1, y1 = region
    inverse = cv2.invertAffineTransform(matrix)
    xs, ys = np.arange(x0, x1, dtype=np.float64)[None, :], np.arange(y0, y1, dtype=np.float64)[:, None]
    map_x = (inverse[0, 0] * xs + (inverse[0, 1] * ys + inverse[0, 2])).astype(np.float32)  # crop point of
    map_y = (inverse[1, 0] * xs + (inverse[1, 1] * ys + inverse[1, 2])).astype(np.float32)  # each frame pixel
    weight = _feather_mask(map_x, map_y, face_rgb.shape[:2], feather)
    warped = cv2.remap(face_rgb, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    original = frame[y0:y1, x0:x1]
    background = to_float_rgb(original)
    if color_match:
        warped = match_colors(warped, background, weight)
    warped -= background  # in place: background + weight · (face − background)
    warped *= weight[..., None]
    warped += background
    blended = from_float_rgb(warped, like=original)
    inside = weight > 0
    np.copyto(out[y0:y1, x0:x1], blended, where=inside if blended.ndim == 2 else inside[..., None])
    mask[y0:y1, x0:x1] = weight
    return out, mask


def _check_matrix(matrix) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3) or not np.isfinite(matrix).all():
        raise InputError(f"crop_to_frame must be a finite (2, 3) affine matrix, got shape {matrix.shape}")
    if abs(np.linalg.det(matrix[:, :2])) < 1e-12:
        raise InputError("crop_to_frame matrix is not invertible")
    return matrix


def _region(matrix: np.ndarray, crop_hw: tuple[int, int], frame_hw: tuple[int, int]):
    """Frame pixel bounds ``(x0, y0, x1, y1)`` (end exclusive) covering the crop, clipped; None if outside."""
    ch, cw = crop_hw
    corners = np.array([[-0.5, -0.5, 1], [cw - 0.5, -0.5, 1], [-0.5, ch - 0.5, 1], [cw - 0.5, ch - 0.5, 1]])
    mapped = corners @ matrix.T
    x0, y0 = np.maximum(np.floor(mapped.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(mapped.max(0)).astype(int) + 1, [frame_hw[1], frame_hw[0]])
    return (int(x0), int(y0), int(x1), int(y1)) if x1 > x0 and y1 > y0 else None


def _feather_mask(u: np.ndarray, v: np.ndarray, crop_hw: tuple[int, int], feather: float) -> np.ndarray:
    """Smoothstep of the distance (crop pixels) from crop point ``(u, v)`` to the crop's outer border."""
    ch, cw = crop_hw
    distance = np.minimum(np.minimum(u + 0.5, cw - 0.5 - u), np.minimum(v + 0.5, ch - 0.5 - v))
    if feather == 0:
        return (distance > 0).astype(np.float32)
    t = np.clip(distance / np.float32(feather), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def match_colors(face: np.ndarray, frame: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Gives ``face`` the mean and standard deviation of ``frame`` per CIE Lab channel, both measured with
    weights ``weight``.

    Args:
        face, frame: (H, W, 3) float32 RGB in [0, 1].
        weight: (H, W) non-negative weights (the blend mask).

    Returns:
        (H, W, 3) float32 RGB in [0, 1].
    """
    total = float(weight.sum())
    if total <= 0:
        return face
    face_lab = cv2.cvtColor(face, cv2.COLOR_RGB2Lab)
    frame_lab = cv2.cvtColor(frame, cv2.COLOR_RGB2Lab)
    w = weight[..., None] / total
    stats = []
    for lab in (face_lab, frame_lab):
        mean = (lab * w).sum((0, 1))
        stats.append((mean, np.sqrt(((lab - mean) ** 2 * w).sum((0, 1))) + 1e-6))
    (face_mean, face_std), (frame_mean, frame_std) = stats
    matched = (face_lab - face_mean) * (frame_std / face_std) + frame_mean
    return np.clip(cv2.cvtColor(matched.astype(np.float32), cv2.COLOR_Lab2RGB), 0.0, 1.0)
