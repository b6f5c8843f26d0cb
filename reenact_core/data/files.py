"""Dataset files (PNG crops, ``.npy`` arrays), written whole or not at all through the library's atomic writer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..files import atomic_write


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """An (H, W, 3) uint8 RGB image as PNG."""
    return atomic_write(path, lambda temporary: Image.fromarray(np.ascontiguousarray(rgb)).save(temporary, "PNG"))


def write_npy(path: Path, array: np.ndarray) -> Path:
    """An array as ``.npy`` (no pickle)."""
    def write(temporary: Path) -> None:
        with open(temporary, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    return atomic_write(path, write)
