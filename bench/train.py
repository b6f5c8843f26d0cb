<<<<<<< HEAD
"""Speed of the training losses on the CPU at the official batch (12), as ratios of the matmul rate measured in
the same process.

    .venv/bin/python bench/train.py [--batch 12] [--threads N]

Rows: FLAME decode of the ground truth and the reenacted parameters + shape/eye/mouth losses; the identity
loss (ArcFace IR-SE-50 on the 188-px crop pooled to 112, both images); LPIPS-AlexNet at 256 px; and all of
them together (``TrainingLosses``). Each is timed forward only and forward + backward (gradients to the images
and the reenacted parameters, as a training step needs). Full-size networks with random weights (FLAME 2020
sizes; speed does not depend on the values).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from common import BASELINE_NOTE, best_seconds, count_flops, matmul_gflops, parse_bench_args  # noqa: E402

from reenact_core.models.arcface import ArcFace  # noqa: E402
from reenact_core.models.flame import Flame, FlameConfig  # noqa: E402
from reenact_core.models.lpips import LPIPS  # noqa: E402
from reenact_core.training.losses import (FlameParams, IdentityLoss, LossOptions, TrainingLosses,  # noqa: E402
                                          geometry_losses, lpips_loss)


def random_flame() -> Flame:
    """FLAME 2020-sized model with random buffers of valid ranges."""
    flame = Flame(FlameConfig())
    c = flame.config
    with torch.no_grad():
        for name, buffer in flame.named_buffers():
            if buffer.is_floating_point():
                buffer.copy_(torch.rand_like(buffer) * (0.01 if name != "v_template" else 0.1))
        flame.faces_tensor.copy_(torch.randint(c.n_vertices, flame.faces_tensor.shape))
        for name in ("lmk_faces_idx", "dynamic_lmk_faces_idx", "full_lmk_faces_idx"):
            getattr(flame, name).copy_(torch.randint(c.n_faces, getattr(flame, name).shape))
        flame.parents.copy_(torch.tensor([-1, 0, 1, 1, 1]))
        flame.lbs_weights.div_(flame.lbs_weights.sum(1, keepdim=True))
    return flame.eval()


def params(batch: int, grad: bool) -> FlameParams:
    return FlameParams(*(torch.randn(batch, n, requires_grad=grad) * s for n, s in ((100, 1), (50, 1), (6, 0.2))))


def cases(batch: int):
    flame, arcface, lpips = random_flame(), ArcFace().eval(), LPIPS().eval()
    losses = TrainingLosses(flame, arcface, lpips, LossOptions())
    identity = IdentityLoss(arcface)
    ref = torch.rand(batch, 3, 256, 256) * 2 - 1

    def image(grad):
        return (torch.rand(batch, 3, 256, 256) * 2 - 1).requires_grad_(grad)

    def geometry(grad):
        g = geometry_losses(losses.decode(params(batch, False)), losses.decode(params(batch, grad)))
        return g.shape + g.eye + g.mouth
    yield "FLAME x2 + shape/eye/mouth", geometry
    yield "identity (IR-SE-50)", lambda grad: identity(image(grad), ref).mean()
    yield "LPIPS alex 256", lambda grad: lpips_loss(lpips, image(grad), ref)
    yield "all (TrainingLosses)", \
        lambda grad: losses(image(grad), ref, params(batch, False), params(batch, grad))["total"]


def main() -> None:
    args = parse_bench_args(__doc__.splitlines()[0],
                            lambda parser: parser.add_argument("--batch", type=int, default=12))
    print(f"threads {torch.get_num_threads()}; batch {args.batch}; {BASELINE_NOTE}")
    print(f"{'losses':<28} {'pass':<8} {'ms/batch':>9} {'GFLOP':>7} {'GFLOP/s':>8} {'matmul':>7} {'ratio':>6}")
    for name, fn in cases(args.batch):
        for label, run in (("forward", lambda: fn(False)), ("fwd+bwd", lambda: fn(True).backward())):
            with torch.set_grad_enabled(label != "forward"):
                flops = count_flops(run)
                base = matmul_gflops()
                seconds = best_seconds(run, repeats=2)
            rate = flops / seconds / 1e9
            print(f"{name:<28} {label:<8} {seconds * 1e3:>9.0f} {flops / 1e9:>7.1f} {rate:>8.1f} {base:>7.1f} "
                  f"{rate / base:>6.2f}")
=======
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
>>>>>>> i14


if __name__ == "__main__":
    main()
