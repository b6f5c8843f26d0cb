"""The landmark backend interface, the registry of backends by name, and face detection through them."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import numpy as np

from ..caches import cached
from ..errors import InputError
from ..faces.geometry import Face
from ..faces.images import check_image, to_uint8_rgb
from ..faces.plausibility import is_plausible

DEFAULT_BACKEND = "dlib"
WEAK_SCORE = 0.1  # a face scoring below this fraction of the frame's best score is taken for a false detection


class LandmarkBackend(ABC):
    """A face detector plus a 68-point landmark model working on 8-bit RGB frames."""

    name: str

    @abstractmethod
    def detect_boxes(self, rgb: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Face boxes of a (H, W, 3) uint8 RGB frame: ``[(box (4,) float64 (x1, y1, x2, y2), score), ...]``."""

    @abstractmethod
    def predict_landmarks(self, rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The (68, 2) float32 iBUG-68 points ``(x, y)`` of the face in ``box``, in pixels of ``rgb``."""

    def min_face_side(self, height: int, width: int) -> float | None:
        """Side in pixels of the smallest face box this backend finds in a ``height`` × ``width`` frame; None when
        it cannot say."""
        return None

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Every face of a (H, W, 3) uint8 RGB frame with its landmarks, unfiltered and in detector order."""
        return [Face(box, float(score), self.predict_landmarks(rgb, box)) for box, score in self.detect_boxes(rgb)]


_FACTORIES: dict[str, Callable[..., LandmarkBackend]] = {}


def register_backend(name: str, factory: Callable[..., LandmarkBackend]) -> None:
    """Makes ``factory(**options)`` available as backend ``name`` (replacing any backend of that name)."""
    _FACTORIES[name] = factory
    _cached_backend.cache_clear()


def backend_names() -> tuple[str, ...]:
    """Names of the registered backends, the default first."""
    return tuple(sorted(_FACTORIES, key=lambda name: (name != DEFAULT_BACKEND, name)))


@cached
def _cached_backend(name: str, options: tuple) -> LandmarkBackend:
    return _FACTORIES[name](**dict(options))


def get_backend(name: str = DEFAULT_BACKEND, **options) -> LandmarkBackend:
    """The backend ``name`` built with ``options`` (e.g. ``models_dir``, ``device``), once per process.

    Raises InputError for an unknown name; backends raise MissingModelError when their package or weights
    are absent.
    """
    if name not in _FACTORIES:
        raise InputError(f"unknown landmark backend {name!r}; choose one of {', '.join(backend_names())}")
    return _cached_backend(name, tuple(sorted(options.items())))


def detect_faces(image: np.ndarray, backend: str | LandmarkBackend = DEFAULT_BACKEND, **options) -> list[Face]:
    """The plausible faces of an image, left to right.

    Args:
        image: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, uint16 or float in [0, 1] (see ``images``).
        backend: a backend name (built by :func:`get_backend` with ``options``) or a backend instance.

    Returns:
        Faces whose landmarks pass :func:`~reenact_core.faces.plausibility.is_plausible` and whose score is at
        least :data:`WEAK_SCORE` times the best such face's (when that is positive: far weaker detections are
        false ones, e.g. a 0.01 box on a patterned suit beside a 1.5 face), sorted by box centre x; coordinates in
        pixels of ``image``. An empty list when none is found.
    """
    rgb = to_uint8_rgb(check_image(image))
    if isinstance(backend, str):
        backend = get_backend(backend, **options)
    faces = [face for face in backend.detect(rgb) if is_plausible(face)]
    best = max((face.score for face in faces), default=0.0)
    if best > 0:
        faces = [face for face in faces if face.score >= WEAK_SCORE * best]
    return sorted(faces, key=lambda face: face.box[0] + face.box[2])


def smallest_face_note(height: int, width: int, backend: str | LandmarkBackend = DEFAULT_BACKEND) -> str:
    """What to add to "no face found" for a ``height`` × ``width`` image: the size below which ``backend`` finds no
    face there (a small face in a very large or wide image), or "" when the backend cannot say."""
    side = (get_backend(backend) if isinstance(backend, str) else backend).min_face_side(height, width)
    return "" if side is None else f" (faces under about {side:.0f} px are not found in a {width}×{height} image)"
