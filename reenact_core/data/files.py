"""Dataset files written whole or not at all: PNG crops, ``.npy`` arrays and text."""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image


def write_bytes(path: Path, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically (a temporary file beside it, fsync, rename), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_png(path: Path, rgb: np.ndarray) -> Path:
    """An (H, W, 3) uint8 RGB image as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="PNG")
    return write_bytes(path, buffer.getvalue())


def write_npy(path: Path, array: np.ndarray) -> Path:
    """An array as ``.npy`` (no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return write_bytes(path, buffer.getvalue())


def write_text(path: Path, text: str) -> Path:
    """UTF-8 text."""
    return write_bytes(path, text.encode("utf-8"))
