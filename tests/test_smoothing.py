"""Temporal smoothing: the strength setting, streaming, noise reduction, the stability measures, a real video."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import require
from golden_fixtures import MEDIA
from reenact_core.errors import InputError
from reenact_core.faces.geometry import mouth_opening
from reenact_core.video import VideoReader
from reenact_core.faces.smoothing import (DEFAULT_STRENGTH, SEQUENCE_KINDS, SequenceSmoother, one_euro_settings,
                                          smooth_sequence)
from reenact_core.faces.temporal_metrics import landmark_jitter, mouth_amplitude, smoothing_lag
from reenact_core.faces.tracking import track_faces

FPS = 30.0
# Acceptance targets at the default strength on a real talking-head video.
MIN_JITTER_REDUCTION = 0.40
MAX_LAG_FRAMES = 2
MIN_AMPLITUDE_RATIO = 0.90
MIN_RMS_REDUCTION = 0.40  # on a slow sinusoid plus noise


def synthetic_face(num_frames: int, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """(T, 68, 2) landmarks: a fixed random layout with eyes 60 px apart, swaying slowly (0.25 Hz, 3 px) and
    opening its mouth (0.5 Hz, 2 px), plus Gaussian noise of ``noise`` px."""
    layout = rng.uniform(0, 100, (68, 2))
    layout[36:42] = [20, 40]
    layout[42:48] = [80, 40]
    t = np.arange(num_frames)[:, None, None] / FPS
    points = layout + 3.0 * np.sin(2 * np.pi * 0.25 * t + np.array([0.0, 1.0]))
    points[:, 57:68, 1:] += 2.0 * (1 + np.sin(2 * np.pi * 0.5 * t[:, :, 0:1]))
    return points + rng.normal(0.0, noise, points.shape) if noise else points


def sequence_of(kind: str, rng: np.random.Generator, num_frames: int = 90) -> np.ndarray:
    if kind == "landmarks":
        return synthetic_face(num_frames, rng, noise=0.8)
    if kind == "boxes":
        return np.array([100, 120, 300, 330]) + rng.normal(0, 3, (num_frames, 4))
    return rng.normal(0, 1, (num_frames, 7))


def test_strength_zero_is_off_and_range_is_checked():
    values = sequence_of("params", np.random.default_rng(0))
    np.testing.assert_array_equal(smooth_sequence(values, "params", strength=0.0), values)
    assert one_euro_settings(0.0) is None
    for strength in (-0.1, 1.5):
        with pytest.raises(InputError, match="strength"):
            one_euro_settings(strength)


def test_strength_orders_the_amount_of_smoothing():
    rng = np.random.default_rng(1)
    noisy = synthetic_face(240, rng, noise=0.8)
    jitters = [landmark_jitter(smooth_sequence(noisy, "landmarks", strength=s)) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert all(a > b for a, b in zip(jitters, jitters[1:]))


@pytest.mark.parametrize("kind", SEQUENCE_KINDS)
@pytest.mark.parametrize("seed", range(2))
def test_chunked_equals_one_shot(kind, seed):
    rng = np.random.default_rng(seed)
    values = sequence_of(kind, rng)
    smoother, chunks, start = SequenceSmoother(kind), [], 0
    for size in list(rng.integers(0, 9, size=15)) + [len(values)]:
        chunks.append(smoother(values[start:start + size]))
        start += size
    np.testing.assert_array_equal(np.concatenate(chunks), smooth_sequence(values, kind))


def test_tensors_keep_type_dtype_and_shape():
    values = torch.from_numpy(sequence_of("params", np.random.default_rng(2))).to(torch.float32)
    out = smooth_sequence(values, "params")
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == values.shape
    np.testing.assert_allclose(out.numpy(), smooth_sequence(values.numpy(), "params"), rtol=1e-6)


@pytest.mark.parametrize("kind, shape", [("landmarks", (5, 68, 3)), ("boxes", (5, 3)), ("params", (5,))])
def test_wrong_shapes_raise_input_error(kind, shape):
    with pytest.raises(InputError):
        smooth_sequence(np.zeros(shape), kind)


@pytest.mark.parametrize("seed", range(3))
def test_sinusoid_plus_noise_rms_error_drops(seed):
    """A slow sinusoid (0.05 units at 0.25 Hz, speed unit 1) plus noise of 0.013 units: the landmark noise of
    dlib on a real video, in inter-ocular distances."""
    rng = np.random.default_rng(seed)
    t = np.arange(300)[:, None] / FPS
    clean = 0.05 * np.sin(2 * np.pi * 0.25 * t + rng.uniform(0, 2 * np.pi, (1, 8)))
    noisy = clean + rng.normal(0, 0.013, clean.shape)
    smoothed = smooth_sequence(noisy, "params", fps=FPS)
    rms = [np.sqrt(((x - clean) ** 2).mean()) for x in (noisy, smoothed)]
    assert rms[1] <= (1 - MIN_RMS_REDUCTION) * rms[0]


@pytest.mark.parametrize("seed", range(3))
def test_landmark_noise_rms_error_drops(seed):
    rng = np.random.default_rng(seed)
    clean = synthetic_face(300, rng)
    noisy = clean + rng.normal(0, 0.8, clean.shape)
    smoothed = smooth_sequence(noisy, "landmarks", fps=FPS)
    rms = [np.sqrt(((x - clean) ** 2).mean()) for x in (noisy, smoothed)]
    assert rms[1] <= (1 - MIN_RMS_REDUCTION) * rms[0]


def test_metrics_on_known_signals():
    rng = np.random.default_rng(3)
    still = np.repeat(rng.uniform(0, 100, (1, 68, 2)), 10, axis=0)
    assert landmark_jitter(still) == 0.0
    signal = rng.normal(0, 1, (200, 3))
    for delay in (0, 1, 3):
        delayed = np.concatenate([np.repeat(signal[:1], delay, axis=0), signal[:len(signal) - delay]])
        assert smoothing_lag(signal, delayed) == delay
    face = synthetic_face(300, rng)
    opening = mouth_opening(face)
    assert mouth_amplitude(face) == pytest.approx(np.percentile(opening, 95) - np.percentile(opening, 5))
    with pytest.raises(InputError):
        landmark_jitter(np.zeros((2, 68, 2)))


def longest_video() -> list[np.ndarray]:
    """The frames of the longest test video (the most motion to smooth, whatever the media set holds)."""
    videos = sorted(MEDIA.glob("*.mp4"))
    require(bool(videos), f"test videos in {MEDIA}")
    return list(VideoReader(max(videos, key=lambda v: VideoReader(v).frame_count or 0)))


@pytest.mark.slow
def test_default_strength_on_a_talking_head_video():
    """All frames of the longest talking-head video through dlib landmarks and tracking."""
    frames = longest_video()
    tracked = track_faces(frames, on_missing="raise")   # every frame of the test videos has the face
    raw = np.stack([t.face.landmarks for t in tracked]).astype(np.float64)
    smoothed = smooth_sequence(raw, "landmarks", strength=DEFAULT_STRENGTH, fps=FPS)
    assert landmark_jitter(smoothed) <= (1 - MIN_JITTER_REDUCTION) * landmark_jitter(raw)
    assert abs(smoothing_lag(mouth_opening(raw), mouth_opening(smoothed))) <= MAX_LAG_FRAMES
    assert abs(smoothing_lag(raw, smoothed)) <= MAX_LAG_FRAMES
    assert mouth_amplitude(smoothed) >= MIN_AMPLITUDE_RATIO * mouth_amplitude(raw)
