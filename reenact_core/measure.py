"""The differentiable measure step: DECA's crop warp and E_flame on image tensors (reference spec §1.7).

The same computation as the official ``calculate_shapemodel`` on [-1, 1] images (to 0..255, kornia-0.4.1 warp
into the 224-px DECA crop, E_flame), batched on the images' device. Inference runs it without gradients;
training runs it with them, so that losses on DECA's codes of generated images reach the generator (and A).
"""
from __future__ import annotations

import torch
from torch import nn

from .errors import InputError
from .faces.deca_crop import canonical_deca_theta, deca_crop_theta, deca_warp
from .imaging import to_deca_input


def measure_codes(deca: nn.Module, images: torch.Tensor, kpt68: torch.Tensor | None = None, *,
                  grad: bool = False) -> torch.Tensor:
    """DECA E_flame codes of face images.

    Args:
        deca: E_flame (``reenact_core.models.deca.DecaEncoder``), on the images' device; its dtype is used for
            the encoder (the warp runs in float32 or wider).
        images: (B, 3, H, W) RGB in [-1, 1] (e.g. generator output or ``imaging.image_to_tensor`` of crops).
        kpt68: (B, 68, 2) landmarks ``(x, y)`` in pixels of ``images`` for DECA's box (official); None: the
            canonical box of aligned square reference crops (``faces.deca_crop.canonical_deca_theta``, scaled
            to H), for images on which no landmarks can be found, e.g. from tiny random generators.
        grad: False runs under ``torch.no_grad()`` (inference); True keeps the graph so gradients reach
            ``images`` (and E_flame's parameters when they require them).

    Returns:
        (B, 236) float32 codes (split them with ``models.deca.split_codes``; ``params.FaceParams.from_deca``).

    Raises:
        InputError: images not (B, 3, H, W) float, not square without landmarks, or landmarks of another batch.
    """
    if images.ndim != 4 or images.shape[1] != 3 or not images.is_floating_point():
        raise InputError(f"images must be float (B, 3, H, W) in [-1, 1], got {images.dtype} {tuple(images.shape)}")
    batch, _, height, width = images.shape
    if kpt68 is None:
        if height != width:
            raise InputError(f"the canonical DECA box is for square aligned crops, got {height}×{width} images")
        theta = canonical_deca_theta(batch, height, images.device)
    else:
        if kpt68.shape[0] != batch:
            raise InputError(f"{kpt68.shape[0]} landmark sets for {batch} images")
        theta = deca_crop_theta(kpt68).to(images.device)
    encoder_dtype = next(deca.parameters()).dtype
    with torch.set_grad_enabled(grad):
        crops = deca_warp(to_deca_input(images), theta)
        return deca(crops.to(encoder_dtype)).float()
