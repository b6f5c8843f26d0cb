"""Evaluation measures: dlib identity on real media, pose/expression errors with known estimators."""
from pathlib import Path

import numpy as np
import pytest
import torch

from golden_fixtures import MEDIA
from reenact_core.errors import NoFaceError
from reenact_core.faces.geometry import interocular_distance
from reenact_core.evaluation import dlib_descriptor, evaluate, expression_error, identity_distance, pose_error_deg
from reenact_core.params import VOXCELEB, FaceParams
from reenact_core.video import VideoReader


def first_and_last_frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    first = last = None
    for frame in VideoReader(path):
        first = frame if first is None else first
        last = frame
    return first, last


def videos() -> list[Path]:
    return sorted(MEDIA.glob("*.mp4"))


def test_same_video_frames_closer_than_different_people(shared_dir):
    """For every pair of videos: two frames of one video are more alike than frames of two videos."""
    descriptors = {}
    for video in videos():
        first, later = first_and_last_frames(video)
        a, b = dlib_descriptor(first), dlib_descriptor(later)
        if a is not None and b is not None:
            descriptors[video.name] = (a, b)
    assert len(descriptors) >= 2, "need faces in at least two test videos"
    names = sorted(descriptors)
    for i, x in enumerate(names):
        same = identity_distance(*descriptors[x])
        for y in names[i + 1:]:
            # different clips may show one person; the media README's clips are of different people
            assert same < identity_distance(descriptors[x][0], descriptors[y][0]), (x, y)


def face(yaw=0.0, pitch=0.0, roll=0.0, jaw=0.0, exp=None) -> FaceParams:
    exp = torch.zeros(1, 11) if exp is None else exp
    return FaceParams(torch.tensor([[yaw, pitch, roll]], dtype=torch.float32), torch.tensor([float(jaw)]), exp)


def test_pose_and_expression_errors_with_known_params():
    assert pose_error_deg(face(10, -5, 3), face(4, 1, 0)).item() == pytest.approx((6 + 6 + 3) / 3)
    lo, hi = VOXCELEB.ranges[3]
    jaw_span = hi - lo
    err = expression_error(face(jaw=0.5 * jaw_span), face(jaw=0.0)).item()
    assert err == pytest.approx(0.5 / 12, rel=1e-6)
    assert expression_error(face(), face()).item() == 0


def test_evaluate_with_injected_estimators():
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(5)]
    source = np.zeros((8, 8, 3), np.uint8)
    embedder = lambda img: np.array([float(img[0, 0, 0]), 0.0])  # noqa: E731  identity = first pixel value
    estimator = lambda img: face(yaw=float(img[0, 0, 0]))        # noqa: E731  yaw = pixel value
    shape = np.random.default_rng(0).normal(size=(68, 2)) * 10 + 50
    landmarks = lambda img: shape + [3.0 * (img[0, 0, 0] % 2), 0.0]  # noqa: E731  3 px back and forth in x
    drivers = [np.full((8, 8, 3), i + 2, np.uint8) for i in range(5)]
    report = evaluate(source, frames, drivers, embedder=embedder, estimator=estimator, landmarks=landmarks)
    assert report.frames == 5 and report.identity_frames == 5 and report.params_frames == 5
    assert report.identity == pytest.approx(np.mean([0, 1, 2, 3, 4]))
    assert report.pose_error_deg == pytest.approx(2 / 3)
    assert report.expression_error == 0
    # x moves 0, 3, 0, 3, 0: every second difference is ±6 px in x and 0 in y, a mean of 3 px
    assert report.jitter == pytest.approx(3.0 / interocular_distance(shape[None]).mean())
    still = evaluate(source, frames, drivers, embedder=embedder, estimator=estimator, landmarks=lambda img: shape)
    assert still.jitter == 0
    assert '"pose_error_deg"' in report.to_json() and "identity" in report.table()


def test_evaluate_counts_frames_without_faces_and_needs_a_source_face():
    frames = [np.zeros((8, 8, 3), np.uint8)] * 3
    none = lambda img: None  # noqa: E731
    report = evaluate(np.zeros((8, 8, 3), np.uint8), frames, frames, embedder=lambda img: np.zeros(2),
                      estimator=none, landmarks=none)
    assert (report.frames, report.params_frames, report.pose_error_deg, report.jitter) == (3, 0, None, None)
    table = report.table()   # every n/a says why; counts in the right number
    assert "pose error (0 frames)" in table and "n/a (no frame with a face in both the output and the driver)" in table
    assert "n/a (landmarks found in fewer than" in table and "(3 frames)" in table
    one = evaluate(np.zeros((8, 8, 3), np.uint8), frames[:1], frames[:1], embedder=lambda img: np.zeros(2),
                   estimator=none, landmarks=none)
    assert "(1 frame)" in one.table() and "(1 frames)" not in one.table()
    with pytest.raises(NoFaceError):
        evaluate(frames[0], frames, frames, embedder=none, estimator=none, landmarks=none)
