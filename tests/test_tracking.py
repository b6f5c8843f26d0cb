"""Face tracking over synthetic detections: selection, identity through crossings, no-face policies, streaming."""
from __future__ import annotations

import numpy as np
import pytest

from reenact_core.errors import InputError, NoFaceError
from reenact_core.faces.geometry import Face
from reenact_core.faces.tracking import FaceTracker

SIDE = 100.0  # box side of the synthetic faces, pixels


def make_face(cx: float, cy: float, side: float = SIDE, score: float = 1.0) -> Face:
    box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])
    return Face(box, score, np.full((68, 2), [cx, cy], np.float32))


def crossing(num_frames: int = 41, speed: float = 10.0):
    """Person A walks right at y=100 while B walks left at y=140; they cross mid-video.
    Returns per-frame detections (in a shuffled order) and A's and B's faces."""
    rng = np.random.default_rng(0)
    a = [make_face(100 + speed * t, 100) for t in range(num_frames)]
    b = [make_face(100 + speed * (num_frames - 1 - t), 140) for t in range(num_frames)]
    detections = [[(fa, fb)[i] for i in rng.permutation(2)] for fa, fb in zip(a, b)]
    return detections, a, b


def run(tracker: FaceTracker, detections, chunk_sizes=None):
    if chunk_sizes is None:
        return tracker.update(detections)
    out, start = [], 0
    for size in chunk_sizes:
        out += tracker.update(detections[start:start + size])
        start += size
    return out + tracker.update(detections[start:])


@pytest.mark.parametrize("select, who", [(0, "a"), (1, "b")])
def test_crossing_faces_never_swap(select, who):
    detections, a, b = crossing()
    tracked = run(FaceTracker(select=select), detections)
    expected = a if who == "a" else b
    assert [t.index for t in tracked] == list(range(len(detections)))
    assert all(t.face is e for t, e in zip(tracked, expected))


def test_select_largest_and_score():
    small, large = make_face(100, 100, side=60, score=2.0), make_face(300, 100, side=120, score=0.5)
    assert run(FaceTracker(select="largest"), [[small, large]])[0].face is large
    assert run(FaceTracker(select="score"), [[small, large]])[0].face is small


def with_gap(num_frames=30, gap=range(10, 15), lead=0):
    """A slowly moving face and another person far to its right; nobody in the first ``lead`` frames, and only
    the other person in the ``gap`` frames."""
    face = [make_face(200 + t, 200) for t in range(num_frames)]
    other = make_face(600, 200)
    detections = [[] if t < lead else [other] if t in gap else [face[t], other] for t in range(num_frames)]
    return detections, face


def test_policy_raise_names_the_frame():
    detections, _ = with_gap()
    tracker = FaceTracker(select="largest", on_missing="raise")
    tracker.update(detections[:10])
    with pytest.raises(NoFaceError, match="frame 10"):
        tracker.update(detections[10:])


def test_policy_pass_keeps_count_and_marks_missing_frames():
    detections, face = with_gap()
    tracked = run(FaceTracker(select=0, on_missing="pass"), detections)
    assert [t.index for t in tracked] == list(range(len(detections)))
    for t in tracked:
        assert (t.face is None) == (t.index in range(10, 15))
        assert t.face is None or t.face is face[t.index]  # never the other person


def test_face_index_beyond_the_faces_present():
    one, two = [make_face(100, 100)], [make_face(100, 100), make_face(400, 100)]
    with pytest.raises(NoFaceError, match="face 1 requested"):
        run(FaceTracker(select=1, on_missing="raise"), [one, two])
    tracked = run(FaceTracker(select=1, on_missing="pass"), [one, two, two])
    assert tracked[0].face is None and tracked[1].face is two[1] and tracked[2].face is two[1]


@pytest.mark.parametrize("seed", range(3))
def test_chunked_equals_one_shot(seed):
    detections, _ = with_gap(num_frames=40, gap=range(12, 20), lead=4)
    rng = np.random.default_rng(seed)
    chunk_sizes = list(rng.integers(0, 7, size=12))
    assert run(FaceTracker(select=0, on_missing="pass"), detections, chunk_sizes) == \
        run(FaceTracker(select=0, on_missing="pass"), detections)


@pytest.mark.parametrize("kwargs", [{"select": "biggest"}, {"select": -1}, {"on_missing": "hold"}])
def test_bad_settings_raise_input_error(kwargs):
    with pytest.raises(InputError):
        FaceTracker(**kwargs)
