"""Face detection and 68-point landmarks through pluggable backends, chosen by name.

Built-in backends: ``"dlib"`` (default; HOG detector and the 68-point shape predictor of
``face-recognition-models``, no download; the predictor was trained on iBUG 300-W, whose licence excludes
commercial use) and ``"face-alignment"`` (the FAN network of the optional ``face-alignment`` package; its
weights must already be on disk). Backends are built lazily and cached per process, so nothing is loaded at
import time. The interface and registry are in ``backend``; each built-in backend is a module of its own.
"""
from .backend import (DEFAULT_BACKEND, LandmarkBackend, backend_names, detect_faces, get_backend, register_backend,
                      smallest_face_note)

__all__ = ["DEFAULT_BACKEND", "LandmarkBackend", "backend_names", "detect_faces", "get_backend", "register_backend",
           "smallest_face_note"]


def _dlib_backend(**options) -> LandmarkBackend:
    from .dlib_backend import DlibBackend

    return DlibBackend(**options)


def _fan_backend(**options) -> LandmarkBackend:
    from .fan_backend import FanBackend

    return FanBackend(**options)


register_backend("dlib", _dlib_backend)
register_backend("face-alignment", _fan_backend)
