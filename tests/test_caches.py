"""Helper models the library keeps loaded live in one registry that a host clears (ComfyUI's unload does)."""
from __future__ import annotations

import numpy as np

from reenact_core.caches import clear_caches
from reenact_core.landmarks import detect_faces, get_backend
from reenact_core.landmarks.dlib_backend import load_models


def test_clear_caches_drops_the_loaded_helper_models():
    get_backend("dlib")
    detect_faces(np.zeros((64, 64, 3), np.uint8))
    assert load_models.cache_info().currsize >= 1
    assert clear_caches() >= 2
    assert load_models.cache_info().currsize == 0
    assert get_backend("dlib") is not None        # loads again on the next call
