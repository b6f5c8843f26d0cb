"""Conversions between uint8 crops and the float image ranges the networks expect (reference spec §1.3, §1.7)."""
from __future__ import annotations

import numpy as np
import torch

from .errors import InputError


def image_to_tensor(crop_u8) -> torch.Tensor:
    """uint8 RGB crops to the [-1, 1] range of e4e and StyleGAN (official ``image_to_tensor``: ``u8/255·2 − 1``).

    Args:
        crop_u8: (H, W, 3) or (B, H, W, 3) uint8 RGB, numpy array (read-only ones too) or tensor.

    Returns:
        (B, 3, H, W) float32 tensor in [-1, 1], on the input's device (CPU for numpy).
    """
    if isinstance(crop_u8, torch.Tensor):
        crop = crop_u8
    else:   # torch warns on wrapping a read-only array (a decoded frame, a memory map): such crops are copied
        array = np.asarray(crop_u8)
        crop = torch.from_numpy(array if array.flags.writeable else array.copy())
    if crop.dtype != torch.uint8:
        raise InputError(f"crop must be uint8, got {crop.dtype}")
    if crop.ndim == 3:
        crop = crop[None]
    if crop.ndim != 4 or crop.shape[-1] != 3:
        raise InputError(f"crop must be (H, W, 3) or (B, H, W, 3) RGB, got shape {tuple(crop.shape)}")
    return crop.permute(0, 3, 1, 2).float().div(255.0) * 2 - 1


def to_deca_input(image_pm1: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images to the 0..255 range DECA's crop expects (official ``torch_range_1_to_255``).

    ``y = (clamp(x, −1, 1) + 1) / (2 + 1e-5) · 255``, so ``y`` lies in [0, 255) and is ``u8·0.999995`` for
    ``x = image_to_tensor(u8)``. Any shape; same dtype and device.
    """
    return (image_pm1.clamp(-1, 1) + 1) / (2 + 1e-5) * 255.0
