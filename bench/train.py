"""Training-side throughput on the CPU with the full-size architectures (random weights), against baselines
measured in the same process.

    .venv/bin/python bench/train.py [--section prepare] [--threads N]

Sections:
  prepare: ``dataset prepare`` of one test video at stride 1 (decode, landmarks, reference crop, e4e, DECA, atomic
      PNG/.npy writes), after a one-frame warm-up: sampled frames/s end to end, and its ratio to the networks
      alone (e4e + DECA crop and E_flame on the same crops, same batch), i.e. the share of the time the networks
      take. Target: ratio >= 0.8 (the data path adds at most a quarter to the networks' time).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from common import best_seconds, matmul_gflops  # noqa: E402
from pipeline import MEDIA, full_size_models  # noqa: E402

from reenact_core.data import iter_videos, load_crop  # noqa: E402
from reenact_core.data.prepare import PrepareOptions, prepare_video  # noqa: E402
from reenact_core.data.sources import VideoSource  # noqa: E402
from reenact_core.engine import estimate_codes  # noqa: E402
from reenact_core.landmarks import detect_faces  # noqa: E402
from reenact_core.imaging import image_to_tensor  # noqa: E402


def bench_prepare(args: argparse.Namespace) -> None:
    models = full_size_models()
    video = Path(args.video)
    options = PrepareOptions(stride=1, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        source, out = VideoSource("bench", video.stem, video), Path(tmp) / "timed"
        prepare_video(source, Path(tmp) / "warm-up", models, PrepareOptions(stride=10 ** 9))
        start = time.perf_counter()
        manifest = prepare_video(source, out, models, options).manifest
        seconds = time.perf_counter() - start
        frames = manifest["frames_sampled"]
        [prepared] = iter_videos(out)
        crops = np.stack([load_crop(f.crop) for f in prepared.frames[:args.batch_size]])
    kpt68 = np.stack([max(detect_faces(c), key=lambda f: f.area).landmarks for c in crops])
    x = image_to_tensor(crops)

    def networks():
        with torch.no_grad():
            models.e4e.module(x)
        estimate_codes(models, crops, kpt68)

    net = best_seconds(networks, repeats=1) / len(crops)
    e2e = seconds / frames
    print(f"prepare {video.name}: {frames} frames ({len(manifest['samples'])} samples) in {seconds:.1f} s: "
          f"{1 / e2e:.2f} frames/s end to end; networks alone (e4e + DECA, batch {len(crops)}) "
          f"{1 / net:.2f} frames/s; ratio {net / e2e:.2f}")


SECTIONS = {"prepare": bench_prepare}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", choices=sorted(SECTIONS), action="append",
                        help="run only these sections (repeatable; default all)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--video", default=str(MEDIA / "d1.mp4"), help="video for the prepare section")
    parser.add_argument("--batch-size", type=int, default=8, help="crops per e4e / DECA batch (prepare)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    torch.manual_seed(0)
    print(f"threads {torch.get_num_threads()}; matmul baseline {matmul_gflops():.1f} GFLOP/s "
          f"(fp32 2048x2048, this process)")
    for name in args.section or sorted(SECTIONS):
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
