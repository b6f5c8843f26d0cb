"""The library's file layer: finding a file in folders, reading `.safetensors` with our errors, atomic writes.

Every file the library writes goes through :func:`atomic_write` (or, for streamed files such as videos,
:func:`temporary_beside` then :func:`publish`; a folder of frames through :func:`publish_folder`): the content
is written to a temporary name beside the target, flushed to disk, given the mode a plain ``open()`` would give
(``0666`` minus the umask, e.g. ``0644`` under umask 022; safetensors alone leaves ``0600``) and renamed over
the target, so a reader never sees a half-written file and an interrupted write leaves the old file intact.
:func:`probe_writable` checks beforehand that a folder takes new files.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .errors import ReenactError, WeightsError

_UMASK_LOCK = threading.Lock()


def find_file(name: str, folders: Iterable[str | os.PathLike]) -> Path | None:
    """``folder / name`` for the first of ``folders`` holding a file of that name, else None."""
    for folder in folders:
        candidate = Path(folder) / name
        if candidate.is_file():
            return candidate
    return None


def read_safetensors(path: str | os.PathLike, *, error: type[ReenactError] = WeightsError,
                     tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (CPU, owned copies) and the metadata of a `.safetensors` file.

    With ``tensors=False`` only the header is read: the dict then maps each name to a meta tensor of the stored
    shape and dtype, at no memory cost. Raises ``error`` (one line) for a missing, truncated or corrupt file.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            if tensors:
                values = {k: f.get_tensor(k).clone() for k in f.keys()}
            else:
                values = {k: _meta_tensor(f.get_slice(k)) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(f"{path.name}: not a readable .safetensors file (truncated or corrupt?): {exc}") from None
    return values, metadata


def _meta_tensor(tensor_slice) -> torch.Tensor:
    dtype = _SAFETENSORS_DTYPES.get(tensor_slice.get_dtype(), torch.float32)
    return torch.empty(tuple(tensor_slice.get_shape()), dtype=dtype, device="meta")


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Write a file atomically: ``write(temporary_path)`` fills a temporary file beside ``path``, which is then
    flushed to disk, given mode ``0666 & ~umask`` and renamed to ``path``. Parent folders are created.

    Args:
        path: the file to create or replace.
        write: called once with the temporary path (in the same folder, so the rename is atomic); it must
            create that file. On any error the temporary file is removed and ``path`` is left as it was.

    Returns:
        ``path`` as a Path.
    """
    temporary = temporary_beside(path)
    try:
        write(temporary)
        return publish(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def temporary_beside(path: str | os.PathLike) -> Path:
    """A fresh hidden name in ``path``'s folder (created if needed) for content that :func:`publish` will move
    to ``path``; it ends in ``path``'s suffix, so writers that pick a format by suffix (video) work on it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.partial{path.suffix}")


def publish(temporary: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Flush ``temporary`` to disk, give it mode ``0666 & ~umask`` and rename it to ``path`` (atomic on one
    file system). For writers that stream into a file themselves; others use :func:`atomic_write`."""
    temporary, path = Path(temporary), Path(path)
    with open(temporary, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(temporary, 0o666 & ~current_umask())
    os.replace(temporary, path)
    _fsync_folder(path.parent)
    return path


def publish_folder(temporary: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Rename the finished folder ``temporary`` (its files already flushed) to ``folder``. An existing ``folder``
    is first moved aside under a temporary name and removed once ``temporary`` has taken its place; if that
    rename fails it is moved back, so ``folder`` holds either the old or the new content, never a mixture."""
    temporary, folder = Path(temporary), Path(folder)
    os.chmod(temporary, 0o777 & ~current_umask())
    aside = temporary_beside(folder) if folder.exists() else None
    if aside is not None:
        os.replace(folder, aside)
    try:
        os.replace(temporary, folder)
    except BaseException:
        if aside is not None:
            os.replace(aside, folder)
        raise
    _fsync_folder(folder.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return folder


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Atomically write ``tensors`` (made contiguous CPU copies) and string ``metadata`` to a `.safetensors`."""
    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    return atomic_write(path, lambda temporary: save_file(cpu, str(temporary), metadata=meta))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def current_umask() -> int:
    """The process umask (read from /proc where it can be, so that it is never changed; else set and reset)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    """Flush the folder entry of a rename to disk where the platform allows it (not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def probe_writable(folder: str | Path) -> None:
    """Creates and removes a temporary file in ``folder``: OSError when new files cannot be made there (permission
    bits alone, ``os.access``, say yes to root on a read-only folder and know nothing of read-only file systems)."""
    handle, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
    os.close(handle)
    os.unlink(probe)
