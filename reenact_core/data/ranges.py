"""The parameter ranges of a generator, measured the reference way (``extract_statistics.py``, spec §1.8).

N latent codes z ~ N(0, I) (seeded) are rendered with truncation ψ = 0.7 toward the generator's w̄, DECA
measures each image, and the ranges are the plain per-coordinate min and max over the N images. Rows (float64
``[54, 2]``, the layout of the reference's ``ranges_*.npy``): 0 yaw, 1 pitch, 2 roll (degrees), 3 jaw ``pose[3]``
(radians), 4..53 the 50 FLAME expression coefficients. The min and max are kept as the batches go, so memory
does not grow with N.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..faces.reference_crop import CROP_SIZE
from ..models.deca import split_codes
from ..params import axis_angle_to_euler

RANGES_SAMPLES = 2000  # synthetic images (reference `extract_statistics.py`: num_images = 2000)
RANGES_TRUNCATION = 0.7  # ψ of the rendered images (reference: truncation = 0.7)
RANGES_ROWS = 54  # yaw, pitch, roll, jaw, 50 expressions


def code_statistics(codes: torch.Tensor) -> torch.Tensor:
    """(B, 236) DECA codes → (B, 54) float64 rows: yaw, pitch, roll (degrees), jaw ``pose[3]``, exp[0..49]."""
    split = split_codes(codes.float())
    angles = axis_angle_to_euler(split.pose[:, :3])
    return torch.cat([angles, split.pose[:, 3:4], split.exp], 1).double()


def measure_ranges(generator: torch.nn.Module, mean_latent: torch.Tensor,
                   measure: Callable[[torch.Tensor], torch.Tensor], *, samples: int = RANGES_SAMPLES, seed: int = 0,
                   batch_size: int = 8, truncation: float = RANGES_TRUNCATION,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Min and max of the DECA parameters over ``samples`` images of ``generator``.

    Args:
        generator: the StyleGAN2 ``Generator`` (eval mode), on its device.
        mean_latent: w̄ (1, style_dim), the truncation centre.
        measure: images (B, 3, S, S) in [-1, 1] → (B, 236) DECA codes.
        seed: z is drawn on the CPU from ``torch.Generator().manual_seed(seed)``: same ranges on every device
            and for every batch size.
        progress: called with the number of images done after each batch.

    Returns:
        float64 ``[54, 2]`` (min, max) rows, see the module docstring.
    """
    if samples < 1 or batch_size < 1:
        raise InputError(f"samples and batch size must be ≥ 1, got {samples} and {batch_size}")
    rng = torch.Generator().manual_seed(seed)
    low = torch.full((RANGES_ROWS,), float("inf"), dtype=torch.float64)
    high = torch.full((RANGES_ROWS,), float("-inf"), dtype=torch.float64)
    done = 0
    while done < samples:
        n = min(batch_size, samples - done)
        z = torch.randn(n, generator.config.style_dim, generator=rng).to(mean_latent.device, mean_latent.dtype)
        with torch.no_grad():
            image = generator(z, input_is_latent=False, truncation=truncation, truncation_latent=mean_latent)
            if image.shape[-1] != CROP_SIZE:  # the reference average-pools larger images to 256 px
                image = F.adaptive_avg_pool2d(image, CROP_SIZE)
            rows = code_statistics(measure(image)).cpu()
        low, high = torch.minimum(low, rows.amin(0)), torch.maximum(high, rows.amax(0))
        done += n
        if progress is not None:
            progress(done)
    return torch.stack([low, high], 1).numpy()
