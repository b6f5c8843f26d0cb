"""Face detection and landmarks: real media, input layouts, input errors, the backend registry, the FAN backend."""
from __future__ import annotations

import importlib.machinery
import sys
import types

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import require
from golden_fixtures import MEDIA
from reenact_core.errors import InputError, MissingDependencyError, MissingModelError, NoFaceError
from reenact_core.faces.geometry import Face, box_iou, interocular_distance
from reenact_core.faces.images import MIN_SIDE, from_float_rgb, to_uint8_rgb
from reenact_core.faces.plausibility import plausibility_failures
from reenact_core.landmarks import LandmarkBackend, backend_names, detect_faces, dlib_backend, fan_backend, get_backend
from reenact_core.landmarks import backend as registry
from reenact_core.faces.tracking import track_faces
from reenact_core.video import VideoReader

MEDIA_FILES = sorted(p.name for p in MEDIA.glob("*.jpg")) + sorted(p.name for p in MEDIA.glob("*.mp4"))


def read_rgb(name: str) -> np.ndarray:
    """A media photo, or the first frame of a media video, as (H, W, 3) uint8 RGB."""
    require((MEDIA / name).is_file(), f"test media {name}")
    if name.endswith(".mp4"):
        capture = cv2.VideoCapture(str(MEDIA / name))
        ok, bgr = capture.read()
        capture.release()
        assert ok, f"cannot decode the first frame of {name}"
    else:
        bgr = cv2.imread(str(MEDIA / name))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """The first media photo, resized to a 512-px long side (fast to detect)."""
    require(bool(MEDIA_FILES), "test media")
    rgb = read_rgb(MEDIA_FILES[0])
    scale = 512 / max(rgb.shape[:2])
    return cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def photo_face(photo):
    faces = detect_faces(photo)
    assert len(faces) >= 1, "the first media photo must show a face"
    return max(faces, key=lambda face: face.area)


@pytest.mark.parametrize("name", MEDIA_FILES)
def test_media_faces_are_plausible_and_follow_the_policy(name):
    rgb = read_rgb(name)
    h, w = rgb.shape[:2]
    faces = detect_faces(rgb)
    for face in faces:
        assert plausibility_failures(face) == []
        assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
        assert (face.landmarks >= -0.1 * w).all() and (face.landmarks[:, 0] <= 1.1 * w).all()
        assert (face.landmarks[:, 1] <= 1.1 * h).all()
    assert [f.box[0] + f.box[2] for f in faces] == sorted(f.box[0] + f.box[2] for f in faces)
    if faces:  # one face per media file: the tracker takes it under every policy
        for policy in ("raise", "pass"):
            (tracked,) = track_faces([rgb], on_missing=policy)
            assert tracked.face is not None
            np.testing.assert_array_equal(tracked.face.landmarks, max(faces, key=lambda f: f.area).landmarks)
    else:  # e.g. a cartoon the detector does not take for a face
        with pytest.raises(NoFaceError, match="frame 0"):
            track_faces([rgb], on_missing="raise")
        assert track_faces([rgb], on_missing="pass")[0].face is None


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.name for p in MEDIA.glob("*.mp4")))
def test_plausibility_keeps_every_frame_of_every_driver(name):
    """The plausibility thresholds, set on a few frames, against every frame of every test driver: the detector's
    face (the largest, before the check) is never rejected (each driver shows one real face throughout)."""
    backend = get_backend()
    rejected = {}
    for index, frame in enumerate(VideoReader(MEDIA / name)):
        faces = backend.detect(to_uint8_rgb(frame))
        assert faces, f"{name}: the detector found no face in frame {index}"
        failures = plausibility_failures(max(faces, key=lambda face: face.area))
        if failures:
            rejected[index] = failures
    assert not rejected, f"{name}: real faces rejected as implausible: {rejected}"


def _layouts(rgb: np.ndarray) -> dict[str, np.ndarray]:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    alpha = np.full(rgb.shape[:2] + (1,), 77, np.uint8)
    return {
        "grey": grey,
        "grey_hw1": grey[..., None],
        "grey_uint16": grey.astype(np.uint16) * 257,
        "grey_float64": grey / 255.0,
        "rgba": np.concatenate([rgb, alpha], axis=2),
        "rgb_uint16": rgb.astype(np.uint16) * 257,
        "rgba_uint16": np.concatenate([rgb, alpha], axis=2).astype(np.uint16) * 257,
        "rgb_float32": rgb.astype(np.float32) / 255,
        "rgb_float16": (rgb / 255.0).astype(np.float16),
        "rgb_non_contiguous": np.asfortranarray(rgb),
    }


@pytest.mark.parametrize("layout", list(_layouts(np.zeros((64, 64, 3), np.uint8))))
def test_input_layouts_are_detected(photo, photo_face, layout):
    image = _layouts(photo)[layout]
    faces = detect_faces(image)
    assert len(faces) >= 1
    face = max(faces, key=lambda f: f.area)
    assert box_iou(face.box, photo_face.box) > 0.7
    error = np.abs(face.landmarks - photo_face.landmarks).mean() / interocular_distance(photo_face.landmarks)
    assert error < 0.05
    if not layout.startswith("grey") and layout != "rgb_float16":  # the same 8-bit RGB: the same result
        np.testing.assert_array_equal(face.landmarks, photo_face.landmarks)


@pytest.mark.parametrize("layout", list(_layouts(np.zeros((64, 64, 3), np.uint8))))
def test_layouts_round_trip(photo, layout):
    image = _layouts(photo)[layout]
    rgb = to_uint8_rgb(image)
    assert rgb.shape == photo.shape and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    back = from_float_rgb(rgb / np.float32(255), like=image)
    assert back.shape == image.shape and back.dtype == image.dtype
    if image.ndim == 3 and image.shape[2] == 4:
        np.testing.assert_array_equal(back[..., 3], image[..., 3])
    if layout in ("rgba", "rgb_uint16", "rgba_uint16", "rgb_float32", "grey", "grey_hw1", "grey_uint16",
                  "rgb_non_contiguous"):
        np.testing.assert_array_equal(back, image)


def test_huge_image_is_detected_on_a_downscaled_copy(monkeypatch, photo, photo_face):
    seen = []
    detector, predictor = dlib_backend.load_models(dlib_backend.predictor_path())

    class SpyDetector:
        def run(self, image, upsample, threshold):
            seen.append((image.shape, upsample))
            return detector.run(image, upsample, threshold)

    monkeypatch.setattr(dlib_backend, "load_models", lambda path: (SpyDetector(), predictor))
    factor = 8000 / max(photo.shape[:2])
    huge = cv2.resize(photo, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    faces = detect_faces(huge, dlib_backend.DlibBackend())
    assert seen and all(max(shape[:2]) <= dlib_backend.DETECT_MAX_SIDE and up == 0 for shape, up in seen)
    assert len(faces) >= 1
    face = max(faces, key=lambda f: f.area)
    expected = (photo_face.landmarks + 0.5) * factor - 0.5
    error = np.abs(face.landmarks - expected).mean() / interocular_distance(expected)
    assert error < 0.05


@pytest.mark.parametrize("image, message", [
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((MIN_SIDE - 1, 200, 3), np.uint8), "at least"),
    (np.zeros((200, MIN_SIDE - 1), np.uint8), "at least"),
    (np.full((100, 100, 3), np.nan, np.float32), "NaN"),
    (np.full((100, 100), np.inf), "infinite"),
    (np.zeros((100, 100, 3, 1), np.uint8), r"\(H, W\)"),
    (np.zeros((100, 100, 2), np.uint8), r"\(H, W\)"),
    (np.zeros(100, np.uint8), r"\(H, W\)"),
    (np.zeros((100, 100, 3), np.int32), "dtype"),
    (np.zeros((100, 100, 3), bool), "dtype"),
    ([[0] * 100] * 100, "numpy array"),
])
def test_bad_inputs_raise_input_error(image, message):
    with pytest.raises(InputError, match=message):
        detect_faces(image)


class FixedFaces(LandmarkBackend):
    """A backend that finds the given faces in every frame."""

    name = "fixed"

    def __init__(self, faces):
        self.faces = faces

    def detect_boxes(self, rgb):
        return [(face.box, face.score) for face in self.faces]

    def predict_landmarks(self, rgb, box):
        return next(face.landmarks for face in self.faces if face.box is box)


def implausible_variants(face: Face) -> dict[str, Face]:
    box, points = face.box, face.landmarks
    width = box[2] - box[0]
    upside_down = points.copy()
    upside_down[:, 1] = box[1] + box[3] - points[:, 1]
    nan_points = points.copy()
    nan_points[5] = np.nan
    return {  # each with its own box array: FixedFaces finds a face's landmarks by its box's identity
        "upside_down": Face(box.copy(), face.score, upside_down),
        "outside_box": Face(box.copy(), face.score, points + np.float32(width)),
        "box_too_wide": Face(box + np.array([-2, 0, 2, 0]) * width, face.score, points),
        "not_finite": Face(box.copy(), face.score, nan_points),
        "empty_box": Face(np.array([box[0], box[1], box[0], box[3]]), face.score, points),
    }


def test_implausible_faces_count_as_not_found(photo, photo_face):
    assert plausibility_failures(photo_face) == []
    variants = implausible_variants(photo_face)
    for name, face in variants.items():
        assert plausibility_failures(face), name
    shift = np.array([photo.shape[1] / 3, 0])
    right = Face(photo_face.box + np.tile(shift, 2), 0.5, photo_face.landmarks + shift.astype(np.float32))
    found = detect_faces(photo, FixedFaces([right, *variants.values(), photo_face]))
    assert [face.score for face in found] == [photo_face.score, 0.5]  # only the plausible ones, left to right


def test_registry(monkeypatch):
    assert backend_names()[0] == "dlib" and "face-alignment" in backend_names()
    assert get_backend("dlib") is get_backend("dlib")
    with pytest.raises(InputError, match="unknown landmark backend"):
        get_backend("no-such-backend")
    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))
    registry.register_backend("fixed", lambda faces=(): FixedFaces(list(faces)))
    assert "fixed" in backend_names() and detect_faces(np.zeros((64, 64), np.uint8), "fixed") == []


def test_missing_dlib_predictor_names_the_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(dlib_backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingModelError, match=f"{dlib_backend.PREDICTOR_FILE}.*{tmp_path.name}"):
        dlib_backend.DlibBackend(models_dir=tmp_path)


@pytest.fixture
def empty_weight_folders(tmp_path, monkeypatch):
    """An empty models folder and an empty torch hub cache; returns the models folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "models").mkdir()
    return tmp_path / "models"


@pytest.fixture
def fake_face_alignment(monkeypatch):
    """Makes ``face_alignment`` look installed (an empty module), whether or not it is."""
    module = types.ModuleType("face_alignment")
    module.__spec__ = importlib.machinery.ModuleSpec("face_alignment", None)
    monkeypatch.setitem(sys.modules, "face_alignment", module)


def test_fan_backend_without_package(monkeypatch, empty_weight_folders):
    monkeypatch.setitem(sys.modules, "face_alignment", None)  # import machinery: "not installed"
    with pytest.raises(MissingDependencyError, match="pip install face-alignment") as caught:
        get_backend("face-alignment", models_dir=empty_weight_folders)
    assert not isinstance(caught.value, MissingModelError)


def test_fan_backend_without_weights_names_files_folders_and_source(fake_face_alignment, empty_weight_folders):
    with pytest.raises(MissingModelError) as error:
        get_backend("face-alignment", models_dir=empty_weight_folders)
    message = str(error.value)
    assert fan_backend.FAN_WEIGHTS in message and "adrianbulat.com" in message and "\n" not in message
    assert str(empty_weight_folders) in message and str(empty_weight_folders.parent / "torch") in message
    assert list(empty_weight_folders.parent.rglob("*.tar")) == []  # nothing was downloaded


def test_fan_backend_sfd_detector_needs_its_weights(fake_face_alignment, empty_weight_folders):
    (empty_weight_folders / fan_backend.FAN_WEIGHTS).touch()
    with pytest.raises(MissingModelError, match=fan_backend.S3FD_WEIGHTS):
        fan_backend.FanBackend(models_dir=empty_weight_folders, detector="sfd")
    with pytest.raises(InputError, match="detector"):
        fan_backend.FanBackend(models_dir=empty_weight_folders, detector="mtcnn")


class BlobFinder(torch.nn.Module):
    """Stands in for FAN: every heatmap is the input's brightness pooled to 64×64, so all 68 points land on
    the brightest spot of the input."""

    def forward(self, x):
        return [F.avg_pool2d(x.mean(1, keepdim=True), 4).repeat(1, 68, 1, 1)]


@pytest.mark.parametrize("size, box", [(300, (80, 60, 220, 200)), (2000, (400, 500, 1500, 1600))])
def test_fan_landmarks_map_back_to_frame_pixels(monkeypatch, fake_face_alignment, empty_weight_folders, size, box):
    (empty_weight_folders / fan_backend.FAN_WEIGHTS).touch()
    monkeypatch.setattr(fan_backend, "_load_fan", lambda path, device: BlobFinder())
    backend = fan_backend.FanBackend(models_dir=empty_weight_folders)
    spot = np.array([box[0] + 0.43 * (box[2] - box[0]), box[1] + 0.61 * (box[3] - box[1])])
    ys, xs = np.mgrid[:size, :size]
    sigma = (box[2] - box[0]) / 40
    blob = 255 * np.exp(-((xs - spot[0]) ** 2 + (ys - spot[1]) ** 2) / (2 * sigma ** 2))
    frame = np.repeat(blob.astype(np.uint8)[..., None], 3, axis=2)
    points = backend.predict_landmarks(frame, np.array(box, dtype=np.float64))
    cell = fan_backend.SCALE_TO_PIXELS * ((box[2] - box[0]) + (box[3] - box[1])) / fan_backend.REFERENCE_SCALE / 64
    assert points.shape == (68, 2) and points.dtype == np.float32
    assert np.abs(points - spot).max() <= 0.75 * cell  # a heatmap cell, quantised to quarter cells


def test_heatmap_peaks_shift_toward_the_larger_neighbour():
    heatmaps = np.zeros((68, 64, 64), np.float32)
    heatmaps[:, 20, 30] = 1.0
    heatmaps[:34, 20, 31] = 0.5  # right neighbour larger: +0.25 in x
    heatmaps[34:, 19, 30] = 0.5  # upper neighbour larger: −0.25 in y
    peaks = fan_backend.heatmap_peaks(heatmaps)
    np.testing.assert_allclose(peaks[:34], [[30.25, 20.0]] * 34)
    np.testing.assert_allclose(peaks[34:], [[30.0, 19.75]] * 34)
