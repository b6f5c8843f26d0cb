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
    yield "all (TrainingLosses)", lambda grad: losses(image(grad), ref, params(batch, False), params(batch, grad))["total"]


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


if __name__ == "__main__":
    main()
