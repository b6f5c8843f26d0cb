"""Keeping a long-running job's memory flat.

glibc raises its mmap threshold each time a large block is freed; after that, frame-sized buffers come from the
heap, which fragments, and a video job's RSS creeps up by 20-100 MiB before it levels off, whatever the code holds.
Fixing the threshold keeps frame buffers mapped and unmapped, so RSS follows what the job really keeps.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

MMAP_THRESHOLD = 256 * 2**10  # bytes: allocations above this are mmap-ed (glibc's initial default is 128 KiB)
_M_MMAP_THRESHOLD = -3        # mallopt parameter number (glibc malloc.h)


def fix_heap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; True where it was set (Linux with glibc), else False."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):   # not glibc (e.g. musl has no mallopt)
        return False
