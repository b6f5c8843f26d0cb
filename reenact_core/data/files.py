"""Dataset ``.npy`` arrays, written whole or not at all through the library's atomic writer (PNG crops go through
``faces.images.save_image``)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from ..files import atomic_write


def write_npy(path: Path, array: np.ndarray) -> Path:
    """An array as ``.npy`` (no pickle)."""
    def write(temporary: Path) -> None:
        with open(temporary, "wb") as f:
            np.save(f, np.ascontiguousarray(array), allow_pickle=False)
    return atomic_write(path, write)
