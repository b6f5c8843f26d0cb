"""Training-side speed on the CPU (the step, fsr and joint sections also on CUDA) with the full-size
architectures and random weights, against baselines measured in the same process.

    .venv/bin/python bench/train.py [--section losses|step|prepare|fsr|joint ...] [--threads N] [--batch 12]
                                    [--step-batches 2,12] [--fsr-batches 4] [--joint-batch 4]
                                    [--cycles none,recurrent,back] [--device cpu|cuda] [--video V] [--batch-size 8]

Sections (default all):
  losses: at ``--batch``: FLAME decode of the ground truth and the reenacted parameters + shape/eye/mouth losses;
      the identity loss (ArcFace IR-SE-50 on the 188-px crop pooled to 112, both images); LPIPS-AlexNet at
      256 px; all of them together (``TrainingLosses``); each forward only and forward + backward (gradients
      to the images and the reenacted parameters, as a training step needs). FLAME 2020 sizes.
  step: ``train directions`` (synthetic method; G 256 px, DECA ResNet-50, FLAME 2020, IR-SE-50, LPIPS) at each
      of ``--step-batches`` on ``--device``: the parts of one step — sources and targets (two G renders and two
      DECA measures without gradients), G forward + backward of x_r, DECA forward + backward of x_r, FLAME +
      losses forward + backward, data (reading a paired sample's two frames from a prepared tree) — then the
      whole step (loss + backward), in seconds, and the peak memory (CPU: peak RSS; CUDA: peak allocated).
  joint: one ``train joint`` step (loss + backward + Adam; full-size E_w, G, DECA, FLAME 2020, IR-SE-50, LPIPS) at
      ``--joint-batch`` on ``--device`` for each of ``--cycles``: seconds per step and peak memory.
  prepare: ``dataset prepare`` of one test video at stride 1 (decode, landmarks, reference crop, e4e, DECA, atomic
      PNG/.npy writes), after a one-frame warm-up: sampled frames/s end to end, and its ratio to the networks
      alone (e4e + DECA crop and E_flame on the same crops, same batch), i.e. the share of the time the networks
      take. Target: ratio >= 0.8 (the data path adds at most a quarter to the networks' time).
  fsr: ``train fsr`` (G 256 px, E_F with the IR-SE-50 trunk and FSE head at k = 4, IR-SE-50, LPIPS; default
      config: 3 LPIPS levels) at each of ``--fsr-batches`` on ``--device``: the coarse passes (G_ψ(w_s), G_ψ(w_r)
      without gradients), E_F forward + backward, and the whole step (loss + backward + Adam), in s/step, and the
      peak memory.
Ratios: each losses/step/fsr row's baseline is the fp32 2048x2048 matmul rate measured just before it.
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
from common import BASELINE_NOTE, best_seconds, count_flops, matmul_gflops, parse_bench_args  # noqa: E402
from pipeline import MEDIA, full_size_models  # noqa: E402

from reenact_core.data import iter_videos, load_crop  # noqa: E402
from reenact_core.data.prepare import PrepareOptions, prepare_video  # noqa: E402
from reenact_core.data.sources import VideoSource  # noqa: E402
from reenact_core.engine import estimate_codes  # noqa: E402
from reenact_core.imaging import image_to_tensor  # noqa: E402
from reenact_core.landmarks import detect_faces  # noqa: E402
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


def step_cases(batch: int, device: torch.device, folder: Path):
    """(name, function) of the parts of one directions training step and of the whole step."""
    from reenact_core.measure import measure_codes
    from reenact_core.models.deca import DecaConfig, DecaEncoder
    from reenact_core.models.stylegan2 import Generator
    from reenact_core.training.config import DirectionsTrainConfig
    from reenact_core.training.data import PreparedFrames
    from reenact_core.training.directions import DirectionsMethod, DirectionsNetworks, loss_options
    from reenact_core.training.distributed import DistContext
    from reenact_core.training.networks import DecaMeasure
    from reenact_core.training.tiny import random_flame as small_random_flame, write_rendered_video

    config = DirectionsTrainConfig(batch_size=batch)
    g = Generator().to(device).eval().requires_grad_(False)
    deca = DecaEncoder(DecaConfig()).to(device).eval().requires_grad_(False)
    flame = small_random_flame(0, FlameConfig().n_vertices, FlameConfig().n_faces)
    losses = TrainingLosses(flame, ArcFace(), LPIPS(), loss_options(config)).to(device)
    nets = DirectionsNetworks(g, g.mean_latent(), DecaMeasure(deca), losses)
    method = DirectionsMethod(config, nets, DistContext(device=device))
    method.directions.to(device)   # the trainer moves its trainable module to the device; so does the bench
    z = torch.randn(batch, 512, device=device)
    w = nets.generator.mapping(z)[:, None].expand(-1, 14, -1).detach()
    ref = torch.rand(batch, 3, 256, 256, device=device) * 2 - 1

    def sources_targets():
        with torch.no_grad():
            for _ in range(2):
                measure_codes(deca, method._render(w))

    def generator():
        method._reenact(method.directions, w, torch.randn(batch, 15, device=device)).sum().backward()

    def measure():
        measure_codes(deca, ref.clone().requires_grad_(True), grad=True).sum().backward()

    def flame_losses():
        gt, reenacted = (FlameParams(*(t.to(device) for t in params(batch, grad))) for grad in (False, True))
        losses(ref.clone().requires_grad_(True), ref, gt, reenacted)["total"].backward()

    with torch.no_grad():   # a prepared tree of one video for the data row
        write_rendered_video(folder, "id", "video", g, nets.mean_latent, w[:2], torch.zeros(2, 236), 0.7)
    frames = PreparedFrames(folder, (14, 512), 256, pairs=True, seed=0)

    def data():
        for i in range(batch):
            frames[(0, i % len(frames))]

    def whole():
        loss, _ = method.loss(method.directions, None, 0)
        loss.backward()
    yield "sources + targets (no grad)", sources_targets
    yield "G forward + backward", generator
    yield "DECA forward + backward", measure
    yield "FLAME + losses fwd + bwd", flame_losses
    yield "data (paired, 2 frames/sample)", data
    yield "whole step", whole


def fsr_cases(batch: int, device: torch.device, folder: Path):
    """(name, function) of the parts of one ``train fsr`` step and of the whole step, full-size random networks."""
    from reenact_core.models.stylegan2 import Generator
    from reenact_core.training.config import DirectionsTrainConfig
    from reenact_core.training.directions import init_directions
    from reenact_core.training.distributed import DistContext
    from reenact_core.training.fsr import FSRMethod, FSRNetworks, FSRTrainConfig
    from reenact_core.training.tiny import write_rendered_video

    g = Generator().to(device).eval().requires_grad_(False)
    mean = g.mean_latent()
    w = g.mapping(torch.randn(2, 512, device=device))[:, None].expand(-1, 14, -1).detach()
    with torch.no_grad():   # a prepared tree of one video for the method's validation pairs
        write_rendered_video(folder, "id", "video", g, mean, w, torch.zeros(2, 236), 0.7)
    config = FSRTrainConfig(batch_size=batch, data=str(folder), validation_samples=2, warmup=0)
    nets = FSRNetworks(g, mean, init_directions(DirectionsTrainConfig(), 512).to(device), LPIPS().to(device),
                       IdentityLoss(ArcFace()).to(device), "random")
    method = FSRMethod(config, nets, DistContext(device=device))
    module = method.trainable().to(device).train()
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    images = torch.rand(2, batch, 3, 256, 256, device=device) * 2 - 1
    sample = {"source_image": images[0], "target_image": images[1], "source_w_plus": w[:1].expand(batch, -1, -1),
              "source_codes": torch.zeros(batch, 236), "target_codes": torch.zeros(batch, 236)}
    dp = torch.zeros(batch, 15, device=device)

    def coarse():
        with torch.no_grad():
            method.refine(lambda x: torch.zeros(()), images[0], sample["source_w_plus"], dp, 1.0)

    def refiner():
        module(torch.rand(batch, 9, 256, 256, device=device)).square().sum().backward()

    def whole():
        loss, _ = method.loss(module, sample, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    yield "coarse passes (no grad)", coarse
    yield "E_F forward + backward", refiner
    yield "whole step (+ Adam)", whole


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(run) -> tuple[float, int, float, float]:
    """Seconds (best of 2), FLOPs and GFLOP/s of ``run``, and the matmul baseline GFLOP/s measured just before."""
    flops = count_flops(run)
    base = matmul_gflops()
    seconds = best_seconds(run, repeats=2)
    return seconds, flops, flops / seconds / 1e9, base


def section(title: str, make_cases, batches: list[int], device: torch.device) -> None:
    """Times each (name, function) of ``make_cases(batch, device, folder)`` at each batch, then the peak memory."""
    print(f"{title:<32} {'batch':>5} {'s':>8} {'GFLOP':>8} {'GFLOP/s':>8} {'matmul':>7} {'ratio':>6}")
    for batch in batches:
        with tempfile.TemporaryDirectory() as tmp:
            for name, fn in make_cases(batch, device, Path(tmp)):
                def run():
                    fn()
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                seconds, flops, rate, base = timed(run)
                print(f"{name:<32} {batch:>5} {seconds:>8.2f} {flops / 1e9:>8.1f} {rate:>8.1f} {base:>7.1f} "
                      f"{rate / base:>6.2f}")
        print(f"peak memory after batch {batch}: {peak_memory_mb(device):.0f} MiB ({device.type})")


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
        estimate_codes(models.deca.module, crops, kpt68)

    net = best_seconds(networks, repeats=1) / len(crops)
    e2e = seconds / frames
    print(f"prepare {video.name}: {frames} frames ({len(manifest['samples'])} samples) in {seconds:.1f} s: "
          f"{1 / e2e:.2f} frames/s end to end; networks alone (e4e + DECA, batch {len(crops)}) "
          f"{1 / net:.2f} frames/s; ratio {net / e2e:.2f}")


def bench_losses(args: argparse.Namespace) -> None:
    print(f"batch {args.batch}")
    print(f"{'losses':<28} {'pass':<8} {'ms/batch':>9} {'GFLOP':>7} {'GFLOP/s':>8} {'matmul':>7} {'ratio':>6}")
    for name, fn in cases(args.batch):
        for label, run in (("forward", lambda: fn(False)), ("fwd+bwd", lambda: fn(True).backward())):
            with torch.set_grad_enabled(label != "forward"):
                seconds, flops, rate, base = timed(run)
            print(f"{name:<28} {label:<8} {seconds * 1e3:>9.0f} {flops / 1e9:>7.1f} {rate:>8.1f} {base:>7.1f} "
                  f"{rate / base:>6.2f}")


def bench_step(args: argparse.Namespace) -> None:
    section("directions step (synthetic)", step_cases, [int(b) for b in args.step_batches.split(",")],
            torch.device(args.device))


def bench_fsr(args: argparse.Namespace) -> None:
    section("fsr step", fsr_cases, [int(b) for b in args.fsr_batches.split(",")], torch.device(args.device))


def joint_step(batch: int, cycle: str, device: torch.device, folder: Path):
    """One ``train joint`` step (loss + backward + Adam) with full-size random E_w, G, DECA, FLAME 2020, IR-SE-50
    and LPIPS, on a batch read from a small prepared tree (2 videos of 2 frames)."""
    from reenact_core.models.deca import DecaConfig, DecaEncoder
    from reenact_core.models.e4e import Encoder4Editing
    from reenact_core.models.stylegan2 import Generator
    from reenact_core.training.directions import DirectionsNetworks, loss_options
    from reenact_core.training.distributed import DistContext
    from reenact_core.training.joint import JointMethod, JointNetworks, JointTrainConfig
    from reenact_core.training.networks import DecaMeasure
    from reenact_core.training.tiny import random_flame as small_random_flame, write_rendered_video

    g = Generator().to(device).eval().requires_grad_(False)
    with torch.no_grad():
        w = g.mapping(torch.randn(4, 512, device=device))[:, None].expand(-1, 14, -1)
        for v in range(2):
            write_rendered_video(folder, f"id{v}", "video", g, g.mean_latent(), w[2 * v:2 * v + 2],
                                 torch.zeros(2, 236), 0.7)
    config = JointTrainConfig(batch_size=batch, data=str(folder), cycle=cycle, validation_samples=2)
    deca = DecaEncoder(DecaConfig()).to(device).eval().requires_grad_(False)
    flame = small_random_flame(0, FlameConfig().n_vertices, FlameConfig().n_faces)
    losses = TrainingLosses(flame, ArcFace(), LPIPS(), loss_options(config)).to(device)
    nets = JointNetworks(DirectionsNetworks(g, g.mean_latent(), DecaMeasure(deca), losses), Encoder4Editing())
    method = JointMethod(config, nets, DistContext(device=device))
    model = method.trainable().to(device).train()
    optimizer = torch.optim.Adam(method.param_groups(model))
    items = [method.frames[(0, i % len(method.frames))] for i in range(batch)]
    data = {k: torch.stack([item[k] for item in items]) for k in items[0]}

    def step():
        loss, _ = method.loss(model, data, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def joint_cases(cycles: list[str]):
    """``section`` cases: one joint step per cycle variant."""
    def make_cases(batch: int, device: torch.device, folder: Path):
        return [(f"joint step, cycle {cycle}", joint_step(batch, cycle, device, folder / cycle)) for cycle in cycles]
    return make_cases


def bench_joint(args: argparse.Namespace) -> None:
    section("joint step (E_w + A)", joint_cases(args.cycles.split(",")), [args.joint_batch], torch.device(args.device))


SECTIONS = {"losses": bench_losses, "step": bench_step, "prepare": bench_prepare, "fsr": bench_fsr,
            "joint": bench_joint}


def main() -> None:
    def configure(parser):
        parser.add_argument("--section", choices=sorted(SECTIONS), action="append",
                            help="run only these sections (repeatable; default all)")
        parser.add_argument("--batch", type=int, default=12, help="batch of the losses section")
        parser.add_argument("--step-batches", default="2,12", help="comma-separated batches of the step section")
        parser.add_argument("--fsr-batches", default="4", help="comma-separated batches of the fsr section")
        parser.add_argument("--device", default="cpu", help="device of the step, fsr and joint sections (cpu, cuda)")
        parser.add_argument("--video", default=str(MEDIA / "d1.mp4"), help="video for the prepare section")
        parser.add_argument("--batch-size", type=int, default=8, help="crops per e4e / DECA batch (prepare)")
        parser.add_argument("--joint-batch", type=int, default=4, help="batch of the joint section (GPU: 8)")
        parser.add_argument("--cycles", default="recurrent",
                            help="comma-separated cycle variants of the joint section (none, recurrent, back)")
    args = parse_bench_args(__doc__.splitlines()[0], configure)
    print(f"threads {torch.get_num_threads()}; {BASELINE_NOTE}")
    for name in args.section or sorted(SECTIONS):
        SECTIONS[name](args)


if __name__ == "__main__":
    main()
