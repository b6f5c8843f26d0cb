"""Face-choice inputs built at test time from ``skimage.data.astronaut()``: resized copies (resizing gives the
patterned suit a weak face-like detection of the face's box size in some of them), heads on canvases, and the
parts of a frame a face's path reads."""
from __future__ import annotations

import numpy as np
from PIL import Image
from skimage import data

from reenact_core.faces.reference_crop import CROP_SIZE
from reenact_core.landmarks import detect_faces

# Resized astronauts (side, PIL filter): sizes and filters around the reported 400-px case.
RESIZED = [(400, Image.BICUBIC), (400, Image.LANCZOS), (380, Image.BICUBIC), (420, Image.BILINEAR),
           (450, Image.LANCZOS)]
LANDMARK_MARGIN = 0.35  # landmarks may leave a detector box by this fraction of its side (plausibility check)


def astronaut_face_box(backend) -> np.ndarray:
    """The (4,) face box of the astronaut at its native size (the surest detection)."""
    faces = detect_faces(data.astronaut(), backend)
    assert faces, "no face found in the astronaut"
    return max(faces, key=lambda face: face.score).box


def resized_astronaut(side: int, resample) -> tuple[np.ndarray, float]:
    """The astronaut resized to ``side`` × ``side`` with a PIL filter, and the scale applied."""
    image = Image.fromarray(data.astronaut())
    return np.asarray(image.resize((side, side), resample)), side / image.width


def scaled(image: np.ndarray, factor: float) -> np.ndarray:
    size = (round(image.shape[1] * factor), round(image.shape[0] * factor))
    return np.asarray(Image.fromarray(image).resize(size, Image.LANCZOS))


def canvas_with(images: list[tuple[np.ndarray, tuple[int, int]]], hw: tuple[int, int]) -> np.ndarray:
    """A grey canvas of ``hw`` with each image pasted at its (x, y)."""
    canvas = np.full((*hw, 3), 110, np.uint8)
    for image, (x, y) in images:
        canvas[y:y + image.shape[0], x:x + image.shape[1]] = image
    return canvas


def points_in_box(points: np.ndarray, box: np.ndarray) -> bool:
    """Whether every (x, y) point lies in ``box`` grown by :data:`LANDMARK_MARGIN` of its side."""
    margin = LANDMARK_MARGIN * (box[2] - box[0])
    return bool(((points >= box[:2] - margin) & (points <= box[2:] + margin)).all())


def outside_the_crop_blanked(image: np.ndarray, aligned) -> np.ndarray:
    """``image`` grey everywhere but the bounding box of the aligned face's crop (what the face's path reads)."""
    corners = np.array([[0, 0, 1], [CROP_SIZE, 0, 1], [0, CROP_SIZE, 1], [CROP_SIZE, CROP_SIZE, 1]], np.float64)
    frame = corners @ aligned.transform.crop_to_frame_matrix().T
    (x0, y0), (x1, y1) = np.floor(frame.min(0)).astype(int) - 2, np.ceil(frame.max(0)).astype(int) + 2
    x0, y0 = max(x0, 0), max(y0, 0)
    clean = np.full_like(image, 110)
    clean[y0:y1, x0:x1] = image[y0:y1, x0:x1]
    return clean


def big_portrait(megapixels: float, aspect: float = 1.5) -> np.ndarray:
    """The astronaut scaled to the height of a grey canvas of ``megapixels`` and ``aspect`` (width / height):
    (H, W, 3) uint8, e.g. 6000 × 4000 for 24 MP."""
    height = int(round((megapixels * 1e6 / aspect) ** 0.5))
    width = int(round(height * aspect))
    head = np.asarray(Image.fromarray(data.astronaut()).resize((height, height), Image.BICUBIC))
    return canvas_with([(head, ((width - height) // 2, 0))], (height, width))
