"""The 256-px face crop of the reference method (`crop_using_landmarks`, reference spec §1.2 step 5).

An axis-aligned square around the 68 landmarks, shifted up by a sixth of the face size. Where the square leaves
the frame, the frame is reflect-padded and the padding is feathered towards a blur and the median colour, as in
the FFHQ preparation. The crop is reproduced bit for bit; :class:`CropTransform` records where it came from.

Point convention: ``(x, y) = (column, row)`` in pixels, with pixel centres on integers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage
import torch
from PIL import Image

from ..errors import InputError
from ..method import CROP_SIZE

_FEATHER_BLUR_SIGMA = 5.0  # Gaussian sigma (pixels) of the padding feather (official `pad_img_to_fit_bbox`)


@dataclass(frozen=True)
class CropTransform:
    """Where a square crop lies in its frame.

    Args:
        box: ``(x1, y1, x2, y2)`` in frame pixels, right and bottom edges exclusive; may lie partly outside.
        frame_hw: ``(height, width)`` of the frame the crop was taken from.
        size: side of the crop in pixels.
    """

    box: tuple[int, int, int, int]
    frame_hw: tuple[int, int]
    size: int = CROP_SIZE

    @property
    def scale(self) -> float:
        """Crop pixels per frame pixel."""
        return self.size / (self.box[2] - self.box[0])

    def crop_to_frame_matrix(self) -> np.ndarray:
        """The (2, 3) float64 affine matrix mapping crop points ``(x, y, 1)`` to frame points.

        Pixel centres are on integers in both images (cv2 ``warpAffine`` convention), so
        ``cv2.warpAffine(crop, M, (W, H), flags=WARP_INVERSE_MAP)`` with ``M = frame_to_crop_matrix()``
        puts the crop back in place.
        """
        s, (x1, y1) = self.scale, self.box[:2]
        return np.array([[1 / s, 0.0, x1 + 0.5 / s - 0.5], [0.0, 1 / s, y1 + 0.5 / s - 0.5]])

    def frame_to_crop_matrix(self) -> np.ndarray:
        """The (2, 3) float64 affine matrix mapping frame points to crop points (inverse of the above)."""
        s, (x1, y1) = self.scale, self.box[:2]
        return np.array([[s, 0.0, (0.5 - x1) * s - 0.5], [0.0, s, (0.5 - y1) * s - 0.5]])

    def frame_to_crop(self, points):
        """Maps frame points ``(..., 2)`` (numpy array or tensor) to crop points of the same kind."""
        return _apply_affine(self.frame_to_crop_matrix(), points)

    def crop_to_frame(self, points):
        """Maps crop points ``(..., 2)`` (numpy array or tensor) to frame points of the same kind."""
        return _apply_affine(self.crop_to_frame_matrix(), points)


def _apply_affine(matrix: np.ndarray, points):
    """``points @ M[:, :2].T + M[:, 2]`` for a scale-and-shift matrix, keeping numpy or torch (float)."""
    if isinstance(points, torch.Tensor):
        points = points if points.is_floating_point() else points.double()
        m = points.new_tensor(matrix)
        return points * m.diagonal() + m[:, 2]
    return np.asarray(points, dtype=np.float64) * matrix.diagonal() + matrix[:, 2]


def crop_box(landmarks: np.ndarray) -> tuple[int, int, int, int]:
    """The official crop square ``(x1, y1, x2, y2)`` (frame pixels, right/bottom exclusive) of 68 landmarks.

    ``c = round((min + max) / 2)`` per axis (half to even), ``size = int(max extent)``, ``c_y -= size // 6``,
    box ``c ± size``. Arithmetic is in the landmarks' own float type, as in the reference.
    """
    landmarks = _check_landmarks(landmarks)
    lo, hi = landmarks.min(0), landmarks.max(0)
    cx, cy = ((lo + hi) / 2).round().astype(int)
    size = int(max(hi[0] - lo[0], hi[1] - lo[1]))
    if size < 1:
        raise InputError(f"landmarks span {size} pixels; cannot crop a face this small")
    cy -= size // 6
    return int(cx - size), int(cy - size), int(cx + size), int(cy + size)


def crop_using_landmarks(
    image: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE
) -> tuple[np.ndarray, CropTransform]:
    """The reference face crop, bit-exact with the official ``crop_using_landmarks``.

    Args:
        image: (H, W, 3) uint8 RGB frame.
        landmarks: (68, 2) float landmarks of that frame, ``(x = column, y = row)`` in pixels (iBUG-68 order).
        size: output side in pixels (the reference uses 256).

    Returns:
        The (size, size, 3) uint8 RGB crop (PIL bicubic resize of the square box) and its :class:`CropTransform`.
    """
    image = _check_image(image)
    box = crop_box(landmarks)
    square = _square_from_frame(image, box)
    crop = np.array(Image.fromarray(square).resize((size, size), Image.BICUBIC))
    return crop, CropTransform(box=box, frame_hw=image.shape[:2], size=size)


def _square_from_frame(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The box cut from the frame; reflect-padded and feathered (official ``pad_img_to_fit_bbox``) if it leaves it."""
    x1, y1, x2, y2 = box
    h, w = image.shape[:2]
    pad = (max(-x1, 0), max(-y1, 0), max(x2 - w, 0), max(y2 - h, 0))  # left, top, right, bottom
    if not any(pad):
        return image[y1:y2, x1:x2]
    left, top, right, bottom = pad
    padded = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="symmetric")  # == cv2.BORDER_REFLECT
    feathered = _feather_padding(padded, pad)
    return feathered[y1 + top:y2 + top, x1 + left:x2 + left].astype(np.uint8)


def _feather_padding(padded: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
    """FFHQ feathering of the padded border, in float32 exactly as the reference.

    ``mask = max(1 - min(x/p_l, (w-1-x)/p_r), 1 - min(y/p_t, (h-1-y)/p_b))`` (a zero pad counts as 1e-10), then
    ``img += (gauss(img) - img)·clip(3·mask + 1, 0, 1)`` and ``img += (median(img) - img)·clip(mask, 0, 1)``.
    """
    h, w = padded.shape[:2]
    y, x, _ = np.ogrid[:h, :w, :1]
    p = np.array(pad, dtype=np.float32)
    p[p == 0] = 1e-10
    mask = np.maximum(1.0 - np.minimum(np.float32(x) / p[0], np.float32(w - 1 - x) / p[2]),
                      1.0 - np.minimum(np.float32(y) / p[1], np.float32(h - 1 - y) / p[3]))
    img = padded.astype(np.float32)
    sigma = [_FEATHER_BLUR_SIGMA, _FEATHER_BLUR_SIGMA, 0]
    blurred = scipy.ndimage.gaussian_filter(img, sigma, mode="reflect", truncate=4.0)
    img += (blurred - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return img


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"face image must be an (H, W, 3) RGB array, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise InputError(f"face image must be uint8, got {image.dtype}; convert it to 8-bit RGB first")
    if min(image.shape[:2]) < 1:
        raise InputError(f"face image is empty (shape {image.shape})")
    return image


def _check_landmarks(landmarks) -> np.ndarray:
    landmarks = np.asarray(landmarks)
    if landmarks.shape != (68, 2):
        raise InputError(f"landmarks must have shape (68, 2) (x, y per iBUG-68 point), got {landmarks.shape}")
    if not (np.issubdtype(landmarks.dtype, np.floating) or np.issubdtype(landmarks.dtype, np.integer)):
        raise InputError(f"landmarks must be numeric, got dtype {landmarks.dtype}")
    if not np.isfinite(landmarks).all():
        raise InputError("landmarks contain NaN or infinite values")
    if not np.issubdtype(landmarks.dtype, np.floating):
        landmarks = landmarks.astype(np.float64)
    return landmarks
