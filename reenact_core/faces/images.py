"""Input images of any common layout, reduced to the 8-bit RGB the face models work on, and given back after.

Accepted: numpy arrays (H, W) grey, (H, W, 1) grey, (H, W, 3) RGB or (H, W, 4) RGBA, of dtype uint8, uint16 or
float (float values are read as [0, 1] and clipped to it). Every processed image keeps its caller's layout: the
working copy is RGB, and :func:`from_float_rgb` writes a result back in the layout, bit depth and alpha of the
original (pixels of a region are converted one by one, so a region can be converted on its own).
"""
from __future__ import annotations

import cv2
import numpy as np

from ..errors import InputError

MIN_SIDE = 64  # smallest accepted image side in pixels: no face model can work on less
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma, as cv2.COLOR_RGB2GRAY
_INTEGER_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
_CONVERSION_ROWS = 256  # rows converted at a time to 8 bits


def check_image(image, min_side: int = MIN_SIDE) -> np.ndarray:
    """Validates an image and returns it as a numpy array (no copy).

    Raises InputError (one line) for a non-array, an empty array, a wrong number of dimensions or channels, an
    unsupported dtype, a side shorter than ``min_side`` pixels, or NaN / infinite values.
    """
    array = _check_layout(image)
    h, w = array.shape[:2]
    if min(h, w) < min_side:
        raise InputError(f"image is {h}×{w} pixels; each side must be at least {min_side}")
    if array.dtype in _FLOAT_DTYPES and not np.isfinite(array).all():
        raise InputError("image contains NaN or infinite values")
    return array


def _check_layout(image) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.size == 0:
        raise InputError(f"image is empty (shape {image.shape})")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise InputError(f"image must be (H, W) grey, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA, got {image.shape}")
    if image.dtype not in _INTEGER_MAX and image.dtype not in _FLOAT_DTYPES:
        raise InputError(f"image dtype {image.dtype} is not supported; use uint8, uint16 or float in [0, 1]")
    return image


def channels(image: np.ndarray) -> int:
    """Number of channels: 1 (grey), 3 (RGB) or 4 (RGBA)."""
    return 1 if image.ndim == 2 else image.shape[2]


def _colour(image: np.ndarray) -> np.ndarray:
    """The colour channels as (H, W, 1) or (H, W, 3), alpha left out."""
    return image[..., None] if image.ndim == 2 else image[..., :3]


def to_float_rgb(image: np.ndarray) -> np.ndarray:
    """Any accepted image (or a region of one) as float32 RGB.

    Returns:
        (H, W, 3) float32 in [0, 1]; grey is repeated over the three channels, alpha is dropped.
    """
    image = _check_layout(image)
    colour = _colour(image).astype(np.float32)
    if image.dtype in _INTEGER_MAX:
        colour /= _INTEGER_MAX[image.dtype]
    else:
        np.clip(colour, 0.0, 1.0, out=colour)
    return np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """The 8-bit working copy of an accepted image: (H, W, 3) uint8 RGB, C-contiguous."""
    image = _check_layout(image)
    if image.dtype == np.uint8:
        colour = _colour(image)
        rgb = np.repeat(colour, 3, axis=2) if colour.shape[2] == 1 else colour
        return np.ascontiguousarray(rgb)
    rgb = np.empty(image.shape[:2] + (3,), np.uint8)
    for top in range(0, image.shape[0], _CONVERSION_ROWS):  # in bands: flat memory on very large images
        rgb[top:top + _CONVERSION_ROWS] = np.rint(to_float_rgb(image[top:top + _CONVERSION_ROWS]) * 255.0)
    return rgb


def from_float_rgb(rgb: np.ndarray, like: np.ndarray) -> np.ndarray:
    """Writes a float RGB result in the layout, dtype and alpha of ``like``.

    Args:
        rgb: (H, W, 3) float in [0, 1] (clipped).
        like: the accepted image (or region) of the same height and width the result replaces; its alpha
            channel, if any, is copied unchanged.

    Returns:
        An array of ``like``'s shape and dtype. Grey layouts get BT.601 luma; integer dtypes are rounded.
    """
    like = _check_layout(like)
    if rgb.shape != like.shape[:2] + (3,):
        raise InputError(f"result of shape {rgb.shape} does not fit an image of shape {like.shape}")
    colour = np.clip(rgb, 0.0, 1.0)
    if channels(like) == 1:
        colour = (colour @ np.asarray(GREY_WEIGHTS, dtype=colour.dtype))[..., None]
    if like.dtype in _INTEGER_MAX:
        colour = np.rint(colour * _INTEGER_MAX[like.dtype])
    colour = colour.astype(like.dtype)
    if like.ndim == 2:
        return colour[..., 0]
    if channels(like) == 4:
        return np.concatenate([colour, like[..., 3:]], axis=2)
    return colour


def rescaled(rgb: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """A copy scaled by ``factor`` (cv2 INTER_AREA down, INTER_LINEAR up), and the scales applied.

    Returns:
        ``(copy, scale)``: ``scale`` is the (2,) float64 ``(sx, sy)`` = copy size / original size per axis, all
        1.0 (and the image itself, not a copy) for ``factor == 1``. A point ``p = (x, y)`` of the copy lies at
        ``(p + 0.5) / scale - 0.5`` in the original (pixel centres on integers).
    """
    if factor == 1:
        return rgb, np.ones(2)
    h, w = rgb.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(rgb, size, interpolation=interpolation), np.array([size[0] / w, size[1] / h])


def downscaled(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    """A copy whose long side is at most ``max_side`` pixels (cv2 INTER_AREA), and the scales applied
    (:func:`rescaled`; the image itself when it is small enough)."""
    return rescaled(rgb, min(1.0, max_side / max(rgb.shape[:2])))
