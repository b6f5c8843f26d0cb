"""Memory of a long reenactment stays flat: the main job (read → drive → write) on 100 against 1000 frames, and
with a big portrait pasted back on N against 4N frames, each in its own process.

Run as a script to measure one length (tiny random models, the test photo as source, the longest test video looped
as driver, 256-px crops written to a video with the driver's audio)::

    python tests/test_engine_memory.py 1000 [--paste-back] [--chunk 16] [--batch-size 8]
    python tests/test_engine_memory.py 64 --portrait-megapixels 24

It prints one JSON line: frames written, RSS after warm-up, peak RSS after warm-up and their difference (MiB); with
``--portrait-megapixels`` (the astronaut on a 3:2 canvas of that size, pasted back, the command line's chunk),
the RSS before the job, the job's peak and their difference.

The script fixes glibc's mmap threshold first, as the command line does before a streaming job
(``reenact_core.memory``; the library itself leaves the host's heap settings alone).
"""
from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
WARM_UP_CHUNKS = 2  # chunks driven before the baseline is taken: first-call allocations are not growth
MAX_GROWTH_MIB = 20  # acceptance: peak RSS growth from 100 to 1000 frames
PORTRAIT_MEGAPIXELS = 24  # the big portrait of the pasted-back measurement (a 6000 × 4000 photo)
PORTRAIT_FRAMES = 16  # N of the N against 4N comparison: more than the encoder holds at this size
PORTRAIT_GROWTH_FRAMES = 2  # acceptance: the job's peak above its start grows by at most this many full frames
PORTRAIT_PEAK_FRAMES = 19  # acceptance: the job's peak above its start, in full 8-bit frames (the encoder's ~11 too)


def status_mib(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MiB, from /proc/self/status (Linux)."""
    lines = Path("/proc/self/status").read_text().splitlines()
    return next(int(line.split()[1]) for line in lines if line.startswith(field + ":")) / 2**10


def reset_peak() -> bool:
    """Resets ``VmHWM`` to the current RSS (Linux ≥ 4.0, ``/proc/self/clear_refs``); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure(frames: int, chunk: int, batch_size: int, paste_back: bool) -> dict:
    """Runs the main job on ``frames`` driver frames; reports the RSS after warm-up and the peak after it (MiB)."""
    import numpy as np
    from PIL import Image

    from golden_fixtures import MEDIA
    from reenact_core.engine import DriveOptions, load_reenact_models, prepare_source
    from reenact_core.pipeline import reenact_file
    from reenact_core.video import VideoReader
    from reenact_core.weights import make_tiny_model_set

    state = {"chunks": 0, "baseline": 0.0, "exact": False, "sampled_peak": 0.0}

    def after_chunk(done: int, total: int | None) -> None:
        state["chunks"] += 1
        if state["chunks"] == WARM_UP_CHUNKS:
            gc.collect()
            state["baseline"] = status_mib("VmRSS")
            state["exact"] = reset_peak()
        state["sampled_peak"] = max(state["sampled_peak"], status_mib("VmRSS"))

    with tempfile.TemporaryDirectory() as tmp:
        make_tiny_model_set(tmp)
        models = load_reenact_models([tmp])
        source = prepare_source(np.array(Image.open(sorted(MEDIA.glob("s*.jpg"))[0]).convert("RGB")), models)
        driver = max(MEDIA.glob("d*.mp4"), key=lambda p: VideoReader(p).frame_count or 0)  # the longest video
        summary = reenact_file(models, source, driver, Path(tmp) / "out.mp4",
                               DriveOptions(batch_size=batch_size, paste_back=paste_back), num_frames=frames,
                               length_policy="loop", chunk=chunk, progress=after_chunk)
        peak = status_mib("VmHWM") if state["exact"] else state["sampled_peak"]
    return {"frames": summary.frames, "rss_after_warm_up_mib": round(state["baseline"], 1),
            "peak_mib": round(peak, 1), "growth_mib": round(peak - state["baseline"], 1)}


def measure_portrait(frames: int, megapixels: float) -> dict:
    """Drives a ``megapixels`` portrait (pasted back, the command line's chunk) for ``frames`` frames; reports the
    RSS before the job, the job's peak and the size of one full frame (MiB)."""
    from face_inputs import big_portrait
    from golden_fixtures import MEDIA
    from reenact_core.engine import DriveOptions, load_reenact_models, prepare_source
    from reenact_core.pipeline import reenact_file
    from reenact_core.video import VideoReader
    from reenact_core.weights import make_tiny_model_set

    canvas = big_portrait(megapixels)
    height, width = canvas.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        make_tiny_model_set(tmp)
        models = load_reenact_models([tmp])
        source = prepare_source(canvas, models)
        del canvas
        driver = max(MEDIA.glob("d*.mp4"), key=lambda p: VideoReader(p).frame_count or 0)  # the longest video
        gc.collect()
        before = status_mib("VmRSS")
        exact = reset_peak()
        sampled = [before]
        summary = reenact_file(models, source, driver, Path(tmp) / "out.mp4", DriveOptions(), num_frames=frames,
                               length_policy="loop", progress=lambda done, total: sampled.append(status_mib("VmRSS")))
        peak = status_mib("VmHWM") if exact else max(sampled)
    return {"frames": summary.frames, "rss_before_mib": round(before, 1), "peak_mib": round(peak, 1),
            "growth_mib": round(peak - before, 1), "frame_mib": round(height * width * 3 / 2**20, 1)}


def run_measurement(*args: str) -> dict:
    """One measurement in a fresh process (this file run as a script with ``args``): its JSON report."""
    run = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True,
                         cwd=TESTS.parent)
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_heap_threshold_is_fixed_where_glibc_allows():
    from reenact_core.memory import fix_heap_threshold

    assert fix_heap_threshold() is sys.platform.startswith("linux")


@pytest.mark.slow
def test_memory_does_not_grow_with_the_video_length():
    if not Path("/proc/self/status").exists() or not sys.platform.startswith("linux"):
        pytest.skip("reads the process's RSS from /proc and sets glibc's mmap threshold (Linux)")
    growth = {}
    for frames in (100, 1000):
        report = run_measurement(str(frames))
        assert report["frames"] == frames
        growth[frames] = report["growth_mib"]
        print(report)
    assert growth[1000] - growth[100] <= MAX_GROWTH_MIB, growth


@pytest.mark.slow
def test_memory_with_a_big_portrait_does_not_grow_with_the_frames():
    """Pasted back into a big portrait, each output frame is made and written alone: the job's peak is the same for
    N and 4N frames (a chunk of full-size frames and masks would add 7 bytes a pixel a frame), and at most
    PORTRAIT_PEAK_FRAMES full frames above its start (the encoder holds ~11 of them; ~25 with x264's lookahead,
    threads and references as for small frames)."""
    if not Path("/proc/self/status").exists() or not sys.platform.startswith("linux"):
        pytest.skip("reads the process's RSS from /proc and sets glibc's mmap threshold (Linux)")
    reports = {n: run_measurement(str(n), "--portrait-megapixels", str(PORTRAIT_MEGAPIXELS))
               for n in (PORTRAIT_FRAMES, 4 * PORTRAIT_FRAMES)}
    print(reports)
    short, long = reports[PORTRAIT_FRAMES], reports[4 * PORTRAIT_FRAMES]
    assert (short["frames"], long["frames"]) == (PORTRAIT_FRAMES, 4 * PORTRAIT_FRAMES)
    allowed = PORTRAIT_GROWTH_FRAMES * short["frame_mib"]
    assert long["growth_mib"] - short["growth_mib"] <= allowed, (reports, allowed)
    assert max(short["growth_mib"], long["growth_mib"]) <= PORTRAIT_PEAK_FRAMES * short["frame_mib"], reports


if __name__ == "__main__":
    sys.path[:0] = [str(TESTS), str(TESTS.parent)]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frames", type=int)
    parser.add_argument("--chunk", type=int, default=16, help="driver frames per chunk")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per DECA / A / G batch")
    parser.add_argument("--paste-back", action="store_true", help="write the source image with the face pasted")
    parser.add_argument("--portrait-megapixels", type=float, default=0,
                        help="drive a big generated portrait instead (pasted back, the command line's chunk)")
    args = parser.parse_args()
    from reenact_core.memory import fix_heap_threshold

    fix_heap_threshold()   # as `latent-reenact reenact` does
    if args.portrait_megapixels:
        print(json.dumps(measure_portrait(args.frames, args.portrait_megapixels)))
    else:
        print(json.dumps(measure(args.frames, args.chunk, args.batch_size, args.paste_back)))
