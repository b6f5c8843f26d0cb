"""Speed of the face stage per landmark backend: detection, landmarks, tracking, smoothing, paste-back.

Usage: python bench/faces.py [--models-dir models/reenact] [--frames 60] [--device cpu]

Frames are decoded at their native size from the shared test videos (../shared/media, or $REENACT_SHARED/media).
Each figure is the median over frames, in milliseconds per frame. The last rows compare dlib's detection as used
(a second, upscaled pass on frames where the first finds no face) with its first pass alone, frame by frame in
this process: the median ratio, and the same on blank frames (where the second pass always runs).
"""
from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from reenact_core.errors import MissingDependencyError, MissingModelError
from reenact_core.landmarks import backend_names, detect_faces, get_backend
from reenact_core.landmarks.dlib_backend import DlibBackend
from reenact_core.faces.paste_back import paste_back
from reenact_core.faces.smoothing import smooth_sequence
from reenact_core.faces.tracking import FaceTracker
from reenact_core.video import VideoReader

MEDIA = Path(os.environ.get("REENACT_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "media"
VIDEOS = ("d1.mp4", "d9.mp4")


def read_frames(path: Path, limit: int) -> list[np.ndarray]:
    return list(itertools.islice(VideoReader(path), limit))


def median_ms(function, items) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        function(item)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def bench_backend(backend, frames: list[np.ndarray]) -> dict[str, float]:
    boxes = [backend.detect_boxes(frame) for frame in frames]
    pairs = [(frame, found[0][0]) for frame, found in zip(frames, boxes) if found]
    faces = [detect_faces(frame, backend) for frame in frames]
    tracker = FaceTracker(select="largest", on_missing="pass")
    return {
        "detect": median_ms(backend.detect_boxes, frames),
        "landmarks": median_ms(lambda pair: backend.predict_landmarks(*pair), pairs) if pairs else float("nan"),
        "detect_faces": median_ms(lambda frame: detect_faces(frame, backend), frames),
        "tracking": median_ms(lambda found: tracker.update([found]), faces),
    }


def paired_ratio(function, baseline, items) -> float:
    """Median over items of the time of ``function(item)`` over that of ``baseline(item)``, timed alternately."""
    ratios = []
    for item in items:
        times = []
        for f in (function, baseline):
            start = time.perf_counter()
            f(item)
            times.append(time.perf_counter() - start)
        ratios.append(times[0] / times[1])
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=None, help="folder with optional weight files (e.g. models/reenact)")
    parser.add_argument("--frames", type=int, default=60, help="frames per video")
    parser.add_argument("--device", default="cpu", help="torch device of torch-based backends")
    args = parser.parse_args()

    videos = {name: read_frames(MEDIA / name, args.frames) for name in VIDEOS}
    print(f"{'backend':<16}{'video':<9}{'size':<10}{'detect':>9}{'landmarks':>11}{'detect_faces':>14}{'tracking':>10}"
          "   (ms/frame, median)")
    for name in backend_names():
        options = {"models_dir": args.models_dir} if args.models_dir else {}
        if name != "dlib":
            options["device"] = args.device
        try:
            backend = get_backend(name, **options)
        except (MissingModelError, MissingDependencyError) as error:
            print(f"{name:<16}not installed / weights missing: {error}")
            continue
        for video, frames in videos.items():
            r = bench_backend(backend, frames)
            size = f"{frames[0].shape[1]}×{frames[0].shape[0]}"
            print(f"{name:<16}{video:<9}{size:<10}{r['detect']:>9.1f}{r['landmarks']:>11.1f}"
                  f"{r['detect_faces']:>14.1f}{r['tracking']:>10.3f}")

    options = {"models_dir": args.models_dir} if args.models_dir else {}
    used, first_pass = DlibBackend(**options), DlibBackend(smallest_face=0, **options)
    for video, frames in videos.items():
        ratio = paired_ratio(lambda f: detect_faces(f, used), lambda f: detect_faces(f, first_pass), frames)
        print(f"dlib detect_faces {video}: {ratio:.3f}x the first pass alone (median per frame)")
    blank = [np.zeros_like(f) for f in next(iter(videos.values()))[:5]]
    ratio = paired_ratio(lambda f: detect_faces(f, used), lambda f: detect_faces(f, first_pass), blank)
    print(f"dlib detect_faces on blank frames: {ratio:.2f}x the first pass alone (the second pass runs)")

    landmarks = np.random.default_rng(0).uniform(0, 512, (len(videos["d9.mp4"]), 68, 2))
    start = time.perf_counter()
    smooth_sequence(landmarks, "landmarks")
    print(f"smoothing (68 landmarks): {(time.perf_counter() - start) * 1e3 / len(landmarks):.3f} ms/frame")
    face = np.full((256, 256, 3), 200, np.uint8)
    for height, width in ((512, 512), (3000, 4000)):
        frame = np.zeros((height, width, 3), np.uint8)
        side = 0.6 * min(height, width)
        matrix = np.array([[side / 256, 0, (width - side) / 2], [0, side / 256, (height - side) / 2]])
        ms = median_ms(lambda _: paste_back(frame, face, matrix), range(5))
        print(f"paste-back {width}×{height} (face {side:.0f} px): {ms:.1f} ms/frame")


if __name__ == "__main__":
    main()
