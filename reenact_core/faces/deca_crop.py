"""DECA's 224-px input crop from 68 landmarks (reference spec §1.7 step 2; official ``TestData.get_image_tensor``).

A square of side ``int(1.25 · 1.1 · mean box extent)`` around the landmark box centre is mapped onto the 224-px
crop by a similarity ``theta`` and sampled the way kornia 0.4.1's ``warp_affine`` does (golden README, "Warp, as
kornia 0.4.1 does it"); newer kornia samples up to a pixel elsewhere, which moves DECA's output measurably.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..imaging import to_deca_input
from ..models.deca import INPUT_SIZE as DECA_CROP_SIZE
from .reference_crop import CROP_SIZE, CropTransform, crop_box

_BOX_ENLARGE = 1.1  # kpt68 box: old_size = mean extent · 1.1 (official `bbox2point`, type 'kpt68')
_BOX_SCALE = 1.25  # size = int(old_size · 1.25) (official `TestData(scale=1.25)`)

# Bounding box ((x_min, y_min), (x_max, y_max)) of the mean 68-point face: OpenFace's `align_dlib.TEMPLATE`
# (cmusatyalab/openface, openface/align_dlib.py; the mean of dlib's iBUG-68 landmarks in normalised units):
# x from point 0 to point 16, y from point 24 (brow) to point 8 (chin). Only this box matters here, since both
# the reference crop and DECA's box depend on the landmarks through their min/max alone.
TEMPLATE_BOX = ((0.0792396913815, 0.182360984545), (0.971193274221, 1.06080371126))
_TEMPLATE_PIXELS = 1000.0  # template scale when cropping it (crop rounding then moves the box < 0.1 %)


def deca_crop_theta(kpt68: torch.Tensor) -> torch.Tensor:
    """The similarity mapping image pixels to DECA crop pixels, from 68 landmarks.

    ``size = int(((r − l) + (b − t)) / 2 · 1.1 · 1.25)`` around the box centre ``(cx, cy)``; the square's corners
    go to the crop's corner pixels 0 and 223: ``theta = [[k, 0, −k·(cx − size/2)], [0, k, −k·(cy − size/2)]]``,
    ``k = 223 / size``. Computed in float64 on the CPU (the official similarity fit, without its 1e-16 noise).

    Args:
        kpt68: (B, 68, 2) landmarks ``(x = column, y = row)`` in pixels of the image to crop.

    Returns:
        (B, 2, 3) float32 ``theta`` on the landmarks' device.
    """
    if not isinstance(kpt68, torch.Tensor) or kpt68.ndim != 3 or kpt68.shape[1:] != (68, 2):
        raise InputError(f"kpt68 must be a (B, 68, 2) tensor, got {getattr(kpt68, 'shape', type(kpt68).__name__)}")
    kpt = kpt68.detach().to("cpu", torch.float64)
    return _theta_of_box(kpt.amin(1), kpt.amax(1)).to(device=kpt68.device, dtype=torch.float32)


def canonical_deca_theta(batch: int, size: int = CROP_SIZE, device: torch.device | str | None = None) -> torch.Tensor:
    """DECA's crop similarity for aligned reference crops without landmarks: the box of the mean face.

    The mean 68-point face (``TEMPLATE_BOX``) is cropped as the reference method crops a frame
    (``reference_crop.crop_box``); DECA's box of its landmarks in that 256-px crop (computed once) is the
    canonical box, scaled to crops of side ``size``. Used where landmarks cannot be detected, e.g. on images of
    tiny random generators during training; on real reference crops it agrees with the landmark box to a few
    percent of the face size (tests compare them on the golden crops).

    Returns:
        (batch, 2, 3) float32 ``theta`` (image pixels → DECA crop pixels) on ``device``.
    """
    lo, hi = (torch.tensor(p, dtype=torch.float64) * (size / CROP_SIZE) for p in _canonical_landmark_box())
    theta = _theta_of_box(lo[None], hi[None]).to(device=device, dtype=torch.float32)
    return theta.expand(batch, 2, 3).clone()


@lru_cache(maxsize=1)
def _canonical_landmark_box() -> tuple[tuple[float, float], tuple[float, float]]:
    """Where the template's landmark box lies in its 256-px reference crop: ((x_min, y_min), (x_max, y_max))."""
    corners = (np.array(TEMPLATE_BOX) + 1.0) * _TEMPLATE_PIXELS   # + 1: the whole crop box in positive pixels
    points = np.repeat(corners, 34, axis=0).astype(np.float32)      # 68 points whose min/max are the corners
    box = crop_box(points)
    transform = CropTransform(box, (box[3], box[2]), CROP_SIZE)
    lo, hi = transform.frame_to_crop(corners)
    return (float(lo[0]), float(lo[1])), (float(hi[0]), float(hi[1]))


def _theta_of_box(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) float64 ``theta`` of landmark boxes ``lo``/``hi`` (B, 2) float64 on the CPU (see above)."""
    extent = hi - lo
    center = hi - extent / 2
    size = torch.trunc((extent[:, 0] + extent[:, 1]) / 2 * _BOX_ENLARGE * _BOX_SCALE)
    if not bool((size >= 1).all()):
        raise InputError("landmarks span less than a pixel; cannot build the DECA crop")
    k = (DECA_CROP_SIZE - 1) / size
    corner = center - size[:, None] / 2
    theta = torch.zeros(lo.shape[0], 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = k
    theta[:, :, 2] = -k[:, None] * corner
    return theta


def deca_warp(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Warps images into DECA crops exactly as kornia 0.4.1 ``warp_affine(image, theta, (224, 224))`` then /255.

    kornia 0.4.1 normalises pixel coordinates by ``(size − 1)`` but samples with ``align_corners=False``. For
    output pixel (row i, col j) this samples the input at ``x = x'·W/(W−1) − 0.5``, ``y = y'·H/(H−1) − 0.5``
    (pixel centres on integers), where ``(x', y') = theta⁻¹(u, v)`` and ``u = (j + 0.5)·223/224``,
    ``v = (i + 0.5)·223/224``. Bilinear, zeros outside. Batched and differentiable in ``image`` and ``theta``;
    half-precision inputs are warped in float32 and cast back.

    Args:
        image: (B, C, H, W) float images in [0, 255] (see :func:`reenact_core.imaging.to_deca_input`).
        theta: (B, 2, 3) maps from image pixels to crop pixels (:func:`deca_crop_theta`).

    Returns:
        (B, C, 224, 224) crops in [0, 1], in the image's dtype.
    """
    if image.ndim != 4 or not image.is_floating_point():
        raise InputError(f"image must be a float (B, C, H, W) tensor, got {image.dtype} {tuple(image.shape)}")
    if theta.shape != (image.shape[0], 2, 3):
        raise InputError(f"theta must have shape ({image.shape[0]}, 2, 3), got {tuple(theta.shape)}")
    h, w = image.shape[-2:]
    if min(h, w) < 2:
        raise InputError(f"image must be at least 2×2 pixels, got {h}×{w}")
    work_dtype = torch.promote_types(image.dtype, torch.float32)
    x = image.to(work_dtype)
    a, b, c, d = (theta[:, r, col].to(work_dtype) for r, col in ((0, 0), (0, 1), (1, 0), (1, 1)))
    det = a * d - b * c
    inverse = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2) / det[:, None, None]

    n = DECA_CROP_SIZE
    centres = (torch.arange(n, device=image.device, dtype=work_dtype) + 0.5) * ((n - 1) / n)
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    crop_points = torch.stack([u, v], -1)[None] - theta[:, None, None, :, 2].to(work_dtype)  # (B, n, n, 2)
    source = torch.einsum("bkl,bijl->bijk", inverse, crop_points)  # x', y' in image pixels
    grid = source * torch.tensor([2 / (w - 1), 2 / (h - 1)], device=image.device, dtype=work_dtype) - 1
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (out / 255.0).to(image.dtype)


def deca_crop(image_pm1: torch.Tensor, kpt68: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DECA's input crops of [-1, 1] face images (official ``calculate_shapemodel`` preprocessing).

    Args:
        image_pm1: (B, 3, H, W) RGB in [-1, 1] (e.g. :func:`reenact_core.imaging.image_to_tensor` of 256 crops).
        kpt68: (B, 68, 2) landmarks on those images, ``(x, y)`` in pixels.

    Returns:
        ``(image_224, theta)``: (B, 3, 224, 224) RGB in [0, 1] and the (B, 2, 3) float32 ``theta``.
    """
    theta = deca_crop_theta(kpt68)
    return deca_warp(to_deca_input(image_pm1), theta.to(image_pm1.device)), theta
