"""Helper models the library keeps loaded between calls (dlib's detector and predictor, FAN and S3FD on their
device, built landmark backends, the evaluation's descriptor network), in one registry a host can clear.

The library sets no other process-wide state. A host that frees memory (ComfyUI's model unload, ``/free``) calls
:func:`clear_caches`; the next call loads what it needs again.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

F = TypeVar("F", bound=Callable)
_REGISTERED: list = []


def cached(function: F) -> F:
    """``functools.lru_cache`` (unbounded) of ``function``, cleared by :func:`clear_caches`."""
    wrapped = lru_cache(maxsize=None)(function)
    _REGISTERED.append(wrapped)
    return wrapped


def clear_caches() -> int:
    """Drops every cached helper model; returns how many entries were dropped."""
    dropped = sum(c.cache_info().currsize for c in _REGISTERED)
    for c in _REGISTERED:
        c.cache_clear()
    return dropped
