"""The composite step: rendered 256-px crops pasted back into the source image (no network)."""
from __future__ import annotations

import numpy as np

from ..faces.paste_back import paste_back
from .source import PreparedSource


def composite_frame(source: PreparedSource, crop: np.ndarray, *,
                    color_match: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One crop pasted where the source's face was cut out: ``(frame, mask)`` as :func:`composite` gives one.

    Costs one full frame (the copy of the image) plus the face's region; the mask's untouched pages (the part
    outside the face) take no memory until written.
    """
    return paste_back(source.image, crop, source.transform.crop_to_frame_matrix(), color_match=color_match)


def composite(source: PreparedSource, crops: np.ndarray, *, color_match: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Pastes each crop where the source's face was cut out (soft edge, see ``faces.paste_back``).

    Args:
        source: the prepared source (its image and crop transform).
        crops: (n, 256, 256, 3) uint8 RGB crops.
        color_match: match the crops' colour statistics to the image under the mask before pasting.

    Returns:
        ``frames`` (n, *source.image.shape) in the image's layout and dtype, and ``masks`` (n, H, W) float32 blend
        weights in [0, 1].
    """
    frames = np.empty((len(crops), *source.image.shape), source.image.dtype)
    masks = np.empty((len(crops), *source.image.shape[:2]), np.float32)
    for crop, frame, mask in zip(crops, frames, masks):
        frame[...], mask[...] = composite_frame(source, crop, color_match=color_match)
    return frames, masks
