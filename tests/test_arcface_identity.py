"""ArcFace identity for `evaluate`: 5-point similarity alignment to the 112-px template, cosine similarity."""
from __future__ import annotations

import math

import numpy as np
import torch

from reenact_core.evaluation import (ARCFACE_MEASURE, ARCFACE_TEMPLATE, align_arcface, arcface_embedder,
                                     cosine_similarity, evaluate, five_points, similarity_transform)
from reenact_core.models.arcface import ArcFace, ArcFaceConfig

TINY = ArcFaceConfig(widths=(8, 16, 24, 32), units=(1, 1, 1, 1), se_reduction=4, embedding_dim=16)


def test_similarity_transform_recovers_a_known_one():
    g = np.random.default_rng(0)
    src = g.uniform(0, 100, size=(5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    a = similarity_transform(src, dst)
    assert np.allclose(a[:, :2], scale * rot) and np.allclose(a[:, 2], shift)


def test_alignment_moves_the_five_points_onto_the_template():
    """A 2× larger, shifted image of the template's points is warped back: bright dots land on the template."""
    template = np.array(ARCFACE_TEMPLATE)
    h = w = 256
    points = template * 2 + np.array([10.0, 20.0])
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.full((h, w), -1.0)
    for x, y in points:
        image[(xx - x) ** 2 + (yy - y) ** 2 <= 9] = 1.0
    images = torch.tensor(image, dtype=torch.float32).expand(1, 3, h, w)
    face = align_arcface(images, torch.tensor(points)[None])[0, 0]
    for x, y in template:
        assert face[int(round(y)), int(round(x))] > 0.5
    assert face.mean() < -0.8


def test_five_points_from_68_landmarks():
    lm = np.arange(136, dtype=np.float64).reshape(68, 2)
    p = five_points(lm)
    assert np.allclose(p[0], lm[36:42].mean(0)) and np.allclose(p[2], lm[30]) and np.allclose(p[4], lm[54])


def test_evaluate_with_arcface_names_the_measure():
    torch.manual_seed(0)
    arcface = ArcFace(TINY).eval()
    frame = np.random.default_rng(1).integers(0, 255, size=(200, 180, 3), dtype=np.uint8)
    other = np.random.default_rng(2).integers(0, 255, size=(200, 180, 3), dtype=np.uint8)
    lm = np.random.default_rng(3).uniform(40, 140, size=(68, 2))
    landmarks = lambda img: lm  # noqa: E731
    embed = arcface_embedder(arcface, landmarks)
    e = embed(frame)
    assert e.shape == (16,) and math.isclose(np.linalg.norm(e), 1.0, rel_tol=1e-5)
    report = evaluate(frame, [frame, other], [frame, other], embedder=embed, estimator=lambda img: None,
                      landmarks=landmarks, compare=cosine_similarity, identity_measure=ARCFACE_MEASURE)
    assert report.identity_frames == 2 and report.identity < 1.0
    assert cosine_similarity(e, embed(frame)) > 1 - 1e-6
    assert ARCFACE_MEASURE in report.table() and "ArcFace" in report.to_json()
