"""Which face is taken: "largest" breaks size ties by detector score, far weaker detections are dropped, and faces
down to 40 px are found (a second, upscaled detection pass when the first finds none) — in the library, the
command line (source and driver) and the aligner the nodes use.

Inputs are built at test time from ``skimage.data.astronaut()``: resized copies (resizing gives the patterned
suit a weak face-like detection of the face's box size in some of them), two-person composites and small faces
in large canvases. Where the face is comes from the detector on the astronaut at its native size, mapped through
each construction.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from conftest import require
from face_inputs import (RESIZED, astronaut_face_box, canvas_with, outside_the_crop_blanked, points_in_box,
                         resized_astronaut, scaled)
from reenact_core.faces.alignment import FaceAligner
from reenact_core.faces.geometry import Face, box_iou
from reenact_core.faces.tracking import SIZE_TIE, FaceTracker, choose_face
from reenact_core.landmarks import LandmarkBackend, detect_faces, get_backend
from reenact_core.landmarks.backend import WEAK_SCORE

# Small faces: (face box side in px, canvas (height, width)); the first detection pass sees them below 80 px.
SMALL = [(40, (768, 1024)), (48, (1080, 1920)), (56, (1000, 1000))]
WIDE = [(2000, 12000), (1500, 5000)]   # (H, W) of wide images whose smallest face found is over 40 px
MIN_IOU = 0.5  # a found box overlaps the expected one at least this much
HEAD_MARGIN = 60  # px around the astronaut's face box kept in a cut-out head


@pytest.fixture(scope="module")
def backend():
    try:
        return get_backend("dlib")
    except Exception as error:  # noqa: BLE001 - any missing part of dlib
        require(False, f"dlib and its 68-point model ({error})")


@pytest.fixture(scope="module")
def astronaut_face(backend) -> np.ndarray:
    return astronaut_face_box(backend)


def face(x: float, size: float, score: float) -> Face:
    """A plausible synthetic face: a box at (x, 0) of side ``size``, landmarks in place."""
    box = np.array([x, 0.0, x + size, size])
    points = np.zeros((68, 2), np.float32)
    points[:, 0] = x + size / 2
    points[36:42] = (x + 0.3 * size, 0.35 * size)
    points[42:48] = (x + 0.7 * size, 0.35 * size)
    points[30] = (x + 0.5 * size, 0.55 * size)
    points[48:68] = (x + 0.5 * size, 0.8 * size)
    points[:30, 1] = 0.5 * size
    return Face(box, score, points)


class ListedBackend(LandmarkBackend):
    """Returns the given faces for any frame."""

    name = "listed"

    def __init__(self, faces: list[Face]):
        self.faces = faces

    def detect_boxes(self, rgb):
        return [(f.box, f.score) for f in self.faces]

    def predict_landmarks(self, rgb, box):
        return next(f.landmarks for f in self.faces if np.array_equal(f.box, box))


# --- the rules ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes, scores, expected", [
    ((72, 72), (0.01, 1.55), 1),                       # the reported tie: the leftmost box is the weak one
    ((72, 72, 72), (0.4, 2.0, 0.9), 1),
    ((80, 80 * (1 - SIZE_TIE / 2)), (0.3, 1.2), 1),     # within the tie margin
    ((100, 60), (0.3, 2.5), 0),                        # clearly larger wins over a surer small face
])
def test_largest_breaks_size_ties_by_score(sizes, scores, expected):
    faces = [face(200 * i, s, c) for i, (s, c) in enumerate(zip(sizes, scores))]
    for order in (faces, faces[::-1]):
        assert choose_face(order, "largest") is faces[expected]
        assert FaceTracker("largest").update([order])[0].face is faces[expected]
    assert choose_face(faces, "score") is max(faces, key=lambda f: f.score)
    assert choose_face([], "largest") is None


@pytest.mark.parametrize("scores", [(0.01, 1.55), (0.05, 0.9, 2.0), (1.0, 1.0 * WEAK_SCORE / 2)])
def test_far_weaker_detections_are_dropped(scores):
    faces = [face(200 * i, 80, s) for i, s in enumerate(scores)]
    kept = detect_faces(np.zeros((100, 200 * len(faces), 3), np.uint8), ListedBackend(faces))
    best = max(scores)
    assert [f.score for f in kept] == [s for s in scores if s >= WEAK_SCORE * best]


def test_comparable_detections_are_all_kept():
    faces = [face(0, 80, 0.5), face(200, 60, 1.5), face(400, 90, 0.3)]
    assert len(detect_faces(np.zeros((100, 600, 3), np.uint8), ListedBackend(faces))) == 3


# --- real detections ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("side, resample", RESIZED)
def test_resized_astronaut_source_and_driver_take_the_face(backend, astronaut_face, side, resample):
    image, factor = resized_astronaut(side, resample)
    expected = astronaut_face * factor
    chosen = FaceTracker("largest").update([detect_faces(image, backend)])[0].face
    assert chosen is not None and box_iou(chosen.box, expected) >= MIN_IOU, (chosen, expected)
    for found in detect_faces(image, backend):        # whatever else is found is not a far weaker false one
        assert found.score >= WEAK_SCORE * chosen.score
    aligned = FaceAligner(select="largest", smoothing=0.0, backend=backend)(image)   # the driver's path
    assert points_in_box(aligned.landmarks, expected), "the driver's aligned face is not the astronaut's"


@pytest.mark.parametrize("left, right", [(1.0, 1.3), (1.25, 0.95)])
def test_two_person_composite_choices(backend, astronaut_face, left, right):
    """Two heads cut from the astronaut side by side (both above the first pass's window)."""
    x0, y0 = int(astronaut_face[0]) - HEAD_MARGIN, max(int(astronaut_face[1]) - HEAD_MARGIN, 0)
    head = data.astronaut()[y0:int(astronaut_face[3]) + HEAD_MARGIN, x0:int(astronaut_face[2]) + HEAD_MARGIN]
    a, b = scaled(head, left), scaled(head, right)
    gap = 20
    canvas = canvas_with([(a, (0, 0)), (b, (a.shape[1] + gap, 0))], (max(a.shape[0], b.shape[0]),
                                                                       a.shape[1] + gap + b.shape[1]))
    local = astronaut_face - [x0, y0, x0, y0]
    expected = [local * left, local * right + [a.shape[1] + gap, 0, a.shape[1] + gap, 0]]
    found = detect_faces(canvas, backend)
    assert all(any(box_iou(f.box, e) >= MIN_IOU for f in found) for e in expected), found
    larger = int(right > left)
    assert box_iou(FaceTracker("largest").update([found])[0].face.box, expected[larger]) >= MIN_IOU
    for index in (0, 1):
        assert box_iou(FaceTracker(index).update([found])[0].face.box, expected[index]) >= MIN_IOU


@pytest.mark.parametrize("face_px, hw", SMALL)
def test_small_faces_in_large_frames_are_found(backend, astronaut_face, face_px, hw):
    factor = face_px / (astronaut_face[2] - astronaut_face[0])
    small = scaled(data.astronaut(), factor)
    at = (hw[1] // 2, hw[0] // 3)
    canvas = canvas_with([(small, at)], hw)
    expected = astronaut_face * small.shape[1] / data.astronaut().shape[1] + [*at, *at]
    found = detect_faces(canvas, backend)
    assert any(box_iou(f.box, expected) >= MIN_IOU for f in found), (found, expected)


def test_two_small_faces_in_a_two_person_shot_are_found(backend, astronaut_face):
    factor = 54 / (astronaut_face[2] - astronaut_face[0])
    small = scaled(data.astronaut(), factor)
    hw = (800, 1200)
    spots = [(300, 250), (800, 260)]
    canvas = canvas_with([(small, xy) for xy in spots], hw)
    expected = [astronaut_face * small.shape[1] / data.astronaut().shape[1] + [x, y, x, y] for x, y in spots]
    found = detect_faces(canvas, backend)
    assert all(any(box_iou(f.box, e) >= MIN_IOU for f in found) for e in expected), (found, expected)


@pytest.mark.parametrize("hw", WIDE)
def test_no_face_in_a_source_says_which_faces_that_size_misses(backend, astronaut_face, models_dir, hw):
    """A face too small for its wide image, as source or as every driver frame: the error names the smallest face
    found at that size, and a face a little above it in the same image is found."""
    from reenact_core.engine import DriveOptions, DriveSession, load_reenact_models, prepare_source
    from reenact_core.errors import NoFaceError

    def canvas(face_px: float) -> tuple[np.ndarray, np.ndarray]:
        small = scaled(data.astronaut(), face_px / (astronaut_face[2] - astronaut_face[0]))
        at = (hw[1] // 2, 0)
        expected = astronaut_face * small.shape[1] / data.astronaut().shape[1] + [*at, *at]
        return canvas_with([(small, at)], hw), expected

    side, models = backend.min_face_side(*hw), load_reenact_models([models_dir])
    note = f"faces under about {side:.0f} px are not found in a {hw[1]}×{hw[0]} image"
    too_small = canvas(side * 0.6)[0]
    with pytest.raises(NoFaceError, match=note):
        prepare_source(too_small, models, backend=backend)
    image, expected = canvas(side * 1.3)
    assert any(box_iou(f.box, expected) >= MIN_IOU for f in detect_faces(image, backend))
    session = DriveSession(models, prepare_source(image, models, backend=backend),
                           DriveOptions(no_face="hold", backend=backend, batch_size=2))
    session.process([too_small] * 2)
    with pytest.raises(NoFaceError, match=note):   # the driver too
        session.finish()


# --- the command line --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("side, resample", RESIZED[:2])
def test_command_line_takes_the_face_as_source_and_driver(tmp_path, models_dir, backend, astronaut_face, side,
                                                          resample):
    from reenact_core.cli import main
    from reenact_core.engine import load_source

    image, factor = resized_astronaut(side, resample)
    expected = astronaut_face * factor
    clean = outside_the_crop_blanked(image, FaceAligner(smoothing=0.0, backend=backend)(image))
    paths = {name: tmp_path / f"{name}.png" for name in ("image", "clean")}
    Image.fromarray(image).save(paths["image"])
    Image.fromarray(clean).save(paths["clean"])
    outputs = {}
    for driver in paths:
        out = tmp_path / f"out_{driver}.png"
        code = main(["reenact", "--models", str(models_dir), "--device", "cpu", "--source", str(paths["image"]),
                     "--driving", str(paths[driver]), "--out", str(out), "--tune-steps", "0",
                     "--source-out", str(tmp_path / "source.safetensors")])
        assert code == 0
        outputs[driver] = np.asarray(Image.open(out))
    assert points_in_box(load_source(tmp_path / "source.safetensors").landmarks, expected), \
        "the prepared source is not the astronaut's face"
    assert np.array_equal(outputs["image"], outputs["clean"]), \
        "the driver's face in the full frame is not the face alone in the cleaned frame"
