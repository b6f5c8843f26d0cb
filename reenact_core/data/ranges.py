"""The parameter ranges of a generator, measured the reference way (``extract_statistics.py``, spec §1.8).

N latent codes z ~ N(0, I) (seeded) are rendered with truncation ψ = 0.7 toward the generator's w̄, DECA
measures each image, and the ranges are the plain per-coordinate min and max over the N images. Rows (float64
``[54, 2]``, the layout of the reference's ``ranges_*.npy``): 0 yaw, 1 pitch, 2 roll (degrees), 3 jaw ``pose[3]``
(radians), 4..53 the 50 FLAME expression coefficients. The min and max are kept as the batches go, so memory
does not grow with N.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..faces.reference_crop import CROP_SIZE
from ..models.deca import split_codes
from ..models.directions import NUM_DIRECTIONS
from ..params import axis_angle_to_euler
from ..weights import load_model, save_model
from .files import write_npy

RANGES_SAMPLES = 2000  # synthetic images (reference `extract_statistics.py`: num_images = 2000)
RANGES_TRUNCATION = 0.7  # ψ of the rendered images (reference: truncation = 0.7)
RANGES_ROWS = 54  # yaw, pitch, roll, jaw, 50 expressions
_STORE_KEYS = ("format", "format_version", "kind", "config")  # metadata a model file gets anew when saved


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


def save_ranges(path: str | Path, ranges: np.ndarray) -> Path:
    """Writes ``[54, 2]`` float64 ranges as ``.npy`` (the reference's ``ranges_*.npy`` layout), atomically."""
    return write_npy(Path(path), np.asarray(ranges, np.float64))


def read_ranges(path: str | Path) -> np.ndarray:
    """A ``ranges_*.npy`` file (ours or the reference's) as float64 ``[54, 2]``.

    Raises InputError (one line) if it is unreadable, of another shape, or has a row with max < min.
    """
    try:
        ranges = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the ranges file {path}: {exc}") from None
    if ranges.shape != (RANGES_ROWS, 2) or not np.all(np.isfinite(ranges)) or np.any(ranges[:, 1] < ranges[:, 0]):
        raise InputError(f"{path}: not a ranges file (expected finite [{RANGES_ROWS}, 2] (min, max) rows, got "
                         f"{ranges.shape})")
    return ranges.astype(np.float64)


def normaliser_rows(ranges: np.ndarray) -> tuple[tuple[float, float], ...]:
    """The 15 rows of a normaliser (yaw, pitch, roll, jaw, exp0..exp10) from ``[54, 2]`` ranges."""
    return tuple((float(lo), float(hi)) for lo, hi in np.asarray(ranges)[:NUM_DIRECTIONS])


def write_normaliser(path: str | Path, ranges: np.ndarray, note: str) -> Path:
    """Rewrites a directions file (A) with its normaliser's ranges taken from ``ranges``; weights, angle scales and
    S are kept, ``note`` is stored as the ``ranges_source`` metadata.

    Raises:
        WeightsError: not a readable directions file.
        InputError: a jaw or expression row with max == min (too few images measured).
    """
    loaded = load_model(path, "directions")
    try:
        config = replace(loaded.config, ranges=normaliser_rows(ranges))
    except ValueError as exc:
        raise InputError(f"these ranges cannot normalise Δp ({exc}): measure more images") from None
    kept = {k: v for k, v in loaded.metadata.items() if k not in _STORE_KEYS}
    return save_model(path, "directions", config, loaded.module.state_dict(), extra_tensors=loaded.extras,
                      metadata={**kept, "ranges_source": note})
