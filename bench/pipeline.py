"""Per-frame cost of reenactment at 256 px with the full-size architectures (random weights).

    .venv/bin/python bench/pipeline.py [--frames N] [--threads N] [--batch B] [--compile] [--no-bf16]
    .venv/bin/python bench/pipeline.py --device cuda --dtype float16 [--batch 16] [--tuning-steps 5]
    .venv/bin/python bench/pipeline.py --record faces.npz   # then, where dlib is missing: --recorded faces.npz
    .venv/bin/python bench/pipeline.py --memory [--megapixels 24 64] [--frames 16 64] [--paths cli node]

Prints the in-process matmul GFLOP/s baseline and the machine's load, then for G, e4e and DECA's E_flame each
speed lever on and off (G: weight cache; e4e, DECA: channels-last, BatchNorm folding, both; all: opt-in
``torch.compile`` with its first-call time, or why it is skipped, and bf16), as ms/frame at batch B, time relative
to the lever off, the output's difference, and the achieved rate as a fraction of the plain 3×3 convolution rate
on the network's own layer shapes, measured in this process; then ms/frame per stage (landmarks, DECA crop +
E_flame, A, generator, paste-back) at batch 1 and B, the render step (A + G) without and with FSR refinement (E_F
at k = 4, output layer random), the generator tuning s/step if asked, the end-to-end frames/s of a DriveSession
(landmarks included) on real driving frames with the levers on (batch 1 and B), with DECA as built and with bf16
encoders, also per 1000 matmul GFLOP/s (compare two versions by this ratio: each run measures its own
baseline), and frames/s of a whole file run (decode, reenact, encode) with decoding and encoding overlapped and
in line.
On CUDA the networks run in ``--dtype`` (fp16 or fp32) and times wait for the device. A machine without dlib or
its 68-point model (a GPU machine may have neither) replays the source, the frames and their faces recorded
elsewhere with ``--record`` (``--recorded FILE``; the landmarks row then times the replay, not dlib). Targets (CPU, fp32,
batch 8, quiet 2 cores): G >= 0.7 of the conv rate, end to end >= 3.5 frames/s. ``--memory`` prints only the peak
RSS of big-portrait runs through the command line and the Reenact Video node (``portrait_memory.py``; targets at
24 MP: growth from 16 to 64 frames ≤ 0.2 GB, peak ≤ 3 GB).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from common import best_seconds, matmul_gflops, synchronized  # noqa: E402
from levers import LEVER_HEADER, encoder_variants, generator_variants, print_levers  # noqa: E402

from reenact_core.engine.speed import has_native_bfloat16  # noqa: E402
from reenact_core.engine.tuning import tune_generator  # noqa: E402
from reenact_core.engine import (DriveOptions, DriveSession, ReenactModels, estimate_codes, fsr_context,  # noqa: E402
                                 prepare_source, render)
from recorded import RecordedBackend, record  # noqa: E402
from reenact_core.landmarks import DEFAULT_BACKEND, detect_faces  # noqa: E402
from reenact_core.faces.paste_back import paste_back  # noqa: E402
from reenact_core.faces.reference_crop import crop_using_landmarks  # noqa: E402
from reenact_core.faces.tracking import choose_face  # noqa: E402
from reenact_core.video import VideoReader  # noqa: E402
from reenact_core.models.fsr import FSRConfig, randomise_output  # noqa: E402
from reenact_core.models.kind import eval_mode  # noqa: E402
from reenact_core.pipeline import reenact_file  # noqa: E402
from reenact_core.weights import INFERENCE, LoadedModel, kind, kind_names  # noqa: E402
from reenact_core.weights.identity import with_identity  # noqa: E402

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def full_size_models(device: torch.device, dtype: torch.dtype) -> ReenactModels:
    loaded = {}
    for name in kind_names(INFERENCE):
        k = kind(name)
        config = k.config_from_dict({})
        module = k.set_mode(k.build(config).to(device=device, dtype=dtype), False)
        with torch.no_grad():
            extras = k.extra_tensors(module, config, 0)
        loaded[name] = LoadedModel(name, config, module, Path(f"<random {name}>"), {}, extras)
    return ReenactModels(loaded["stylegan2"], loaded["e4e"], loaded["deca"], loaded["directions"], device, dtype)


def with_full_size_fsr(models: ReenactModels) -> ReenactModels:
    """``models`` plus a full-size E_F for feature k = 4 of their generator (random, its output layer too)."""
    g = models.generator
    config = FSRConfig.for_generator(g.config)
    module = kind("fsr").set_mode(kind("fsr").build(config).to(device=models.device, dtype=models.dtype), False)
    randomise_output(module)
    fsr = LoadedModel("fsr", config, module, Path("<random fsr>"), with_identity({}, g.module.state_dict()))
    return dataclasses.replace(models, fsr=fsr)


def print_network_levers(models: ReenactModels, source, batch: int, compile_: bool, bf16: bool) -> None:
    device, dtype = models.device, models.dtype
    w = source.w_plus.expand(batch, -1, -1).contiguous()
    g = models.generator.module
    print(LEVER_HEADER)
    print_levers("G 256", generator_variants(g, w, source.mean_latent, compile_, bf16), batch, device)
    for title, name, size, low in (("e4e", "e4e", 256, -1.0), ("DECA", "deca", 224, 0.0)):
        x = (torch.rand(batch, 3, size, size, device=device) * (1 - low) + low).to(dtype)
        print_levers(title, encoder_variants(name, x, dtype, compile_, bf16), batch, device)


def print_tuning(models: ReenactModels, source, steps: int) -> None:
    g = models.generator.module
    target = torch.rand(1, 3, g.config.size, g.config.size, device=models.device, dtype=models.dtype) * 2 - 1
    tune = lambda n: tune_generator(g, source.w_plus, target, mean_latent=source.mean_latent, steps=n)  # noqa: E731
    synchronized(lambda: tune(1), models.device)
    seconds = best_seconds(lambda: synchronized(lambda: tune(steps), models.device), repeats=1, warmup=0)
    print(f"generator tuning (MSE term, no LPIPS weights): {seconds / steps:.2f} s/step over {steps} steps")


def with_plain_deca(models: ReenactModels) -> ReenactModels:
    """``models`` with DECA as built (BatchNorms, contiguous weights; random weights, as the bench's others): the
    fp32 encoder levers off."""
    module = eval_mode(kind("deca").build(models.deca.config).to(models.device, models.dtype), False)
    return dataclasses.replace(models, deca=dataclasses.replace(models.deca, module=module))


def with_bf16_encoders(models: ReenactModels) -> ReenactModels:
    """``models`` with e4e and DECA in bf16 (``--dtype bfloat16`` on a CPU), G in its own dtype."""
    return dataclasses.replace(models, **{name: dataclasses.replace(
        getattr(models, name), module=copy.deepcopy(getattr(models, name).module).to(torch.bfloat16))
        for name in ("e4e", "deca")})


def print_end_to_end(models: ReenactModels, source, frames, backend, batch: int, base: float, bf16: bool) -> None:
    """Frames/s of a DriveSession on ``frames`` (landmarks included) with the levers on, at batch 1 and
    ``batch``, then at ``batch`` with DECA as built (fp32 levers off) and with bf16 encoders."""
    runs = [("fp32, levers on", models, 1), ("fp32, levers on", models, batch),
            ("fp32, DECA as built (levers off)", with_plain_deca(models), batch)]
    if bf16:
        runs.append(("bf16 e4e + DECA, fp32 G", with_bf16_encoders(models), batch))
    for label, m, b in runs:
        session = DriveSession(m, source, DriveOptions(batch_size=b, backend=backend))
        session.process(frames[:b])        # warm-up
        start = time.perf_counter()
        n = len(session.process(frames)) + len(session.finish())
        seconds = time.perf_counter() - start
        print(f"end to end (landmarks included), {label}, batch {b}: {n / seconds:.2f} frames/s "
              f"({seconds / n * 1e3:.0f} ms/frame over {n} frames); {n / seconds / base * 1e3:.2f} frames/s per "
              f"1000 matmul GFLOP/s (compare runs by this ratio)")


def print_file_runs(models: ReenactModels, source, driver: Path, backend, batch: int, frames: int) -> None:
    """Frames/s of ``reenact_file`` (decode, reenact, encode an .mp4) with decoding and encoding in background
    threads and in line, interleaved in this process."""
    options = DriveOptions(batch_size=batch, backend=backend)
    with tempfile.TemporaryDirectory() as folder:
        for overlap in (False, True, False, True):
            start = time.perf_counter()
            summary = reenact_file(models, source, driver, Path(folder) / "out.mp4", options, num_frames=frames,
                                   chunk=batch * 2, overlap=overlap)
            seconds = time.perf_counter() - start
            print(f"file run (decode + reenact + encode .mp4), batch {batch}, "
                  f"{'overlapped' if overlap else 'in line':<10}: {summary.frames / seconds:.2f} frames/s")


def load_note() -> str:
    try:
        return "load average (1 min) %.1f on %d CPUs" % (os.getloadavg()[0], os.cpu_count())
    except OSError:
        return "load average unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48, help="driving frames for the end-to-end run")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 8 on CPU, 16 on CUDA)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow first call)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 rows")
    parser.add_argument("--tuning-steps", type=int, default=0, help="time generator tuning over this many steps")
    parser.add_argument("--driver", default=str(MEDIA / "d1.mp4"))
    parser.add_argument("--source", default=str(MEDIA / "s1.jpg"))
    parser.add_argument("--record", metavar="FILE", help="only write the source, the frames and their faces (.npz)")
    parser.add_argument("--recorded", metavar="FILE", help="replay a --record file instead of reading and detecting")
    parser.add_argument("--memory", nargs=argparse.REMAINDER, metavar="OPTION",
                        help="only the peak-memory table of big portraits (options of portrait_memory.py follow)")
    args = parser.parse_args()
    if args.memory is not None:
        from portrait_memory import main as memory_table
        return memory_table(args.memory)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    batch = args.batch or (16 if device.type == "cuda" else 8)
    bf16 = not args.no_bf16 and has_native_bfloat16(device)
    base = matmul_gflops()
    print(f"threads {torch.get_num_threads()}; {load_note()}; matmul baseline {base:.1f} GFLOP/s "
          f"(fp32 2048x2048, this process); networks on {device} in {dtype}")
    if args.recorded:
        backend = RecordedBackend(Path(args.recorded))
        image, frames = backend.source, backend.frames
    else:
        from PIL import Image
        backend, image = DEFAULT_BACKEND, np.asarray(Image.open(args.source).convert("RGB"))
        frames = [f for _, f in zip(range(args.frames), VideoReader(args.driver))]
        while len(frames) < args.frames:
            frames += frames[: args.frames - len(frames)]
    if args.record:
        return record(Path(args.record), image, frames)
    models = full_size_models(device, dtype)
    source = prepare_source(image, models, backend=backend)
    with torch.inference_mode():
        print_network_levers(models, source, batch, args.compile, bf16)
    faces = [choose_face(detect_faces(f, backend), "largest") for f in frames[:batch]]
    crops, kpts = zip(*[(c, t.frame_to_crop(fc.landmarks)) for fc, (c, t) in
                        ((fc, crop_using_landmarks(f, fc.landmarks)) for fc, f in zip(faces, frames))])
    crops, kpts = np.stack(crops), np.stack(kpts)
    g, a = models.generator.module, models.directions.module
    matrix = source.transform.crop_to_frame_matrix()
    timed = lambda fn: best_seconds(lambda: synchronized(fn, device), repeats=2)  # noqa: E731
    print(f"{'stage':<28} {'batch':>5} {'ms/frame':>9}")
    with torch.inference_mode():
        rows = [(f"landmarks ({getattr(backend, 'name', backend)})", 1, lambda: detect_faces(frames[0], backend))]
        for b in (1, batch):
            dp = torch.randn(b, 15, device=device, dtype=dtype)
            w = source.w_plus.expand(b, -1, -1)
            rows += [("DECA crop + E_flame", b, lambda b=b: estimate_codes(models.deca.module, crops[:b], kpts[:b])),
                     ("A", b, lambda dp=dp: a(dp)),
                     ("generator 256 cm1", b, lambda w=w: g(w, truncation=0.7, truncation_latent=source.mean_latent))]
        rows.append(("paste-back", 1, lambda: paste_back(source.image, crops[0], matrix)))
        for name, b, fn in rows:
            print(f"{name:<28} {b:>5} {timed(fn) / b * 1e3:>9.1f}")
        refined = with_full_size_fsr(models)
        context = fsr_context(g, refined.refiner, source)
        cost = {}
        for b in (1, batch):
            dp = torch.randn(b, 15, device=device, dtype=dtype)
            for name, kw in (("render (A + G)", {}),
                             ("render + FSR k=4", {"fsr": refined.refiner, "context": context})):
                cost[name, b] = timed(lambda kw=kw, dp=dp: render(a, g, source, dp, paste=False, **kw)) / b
                print(f"{name:<28} {b:>5} {cost[name, b] * 1e3:>9.1f}")
        ratio = cost["render + FSR k=4", batch] / cost["render (A + G)", batch]
        print(f"FSR frame cost at batch {batch}: {ratio:.2f}x the plain frame (render step, same process)")
    if args.tuning_steps:
        print_tuning(models, source, args.tuning_steps)
    print_end_to_end(models, source, frames, backend, batch, base, bf16)
    if not args.recorded:
        print_file_runs(models, source, Path(args.driver), backend, batch, args.frames)
    print(load_note())


if __name__ == "__main__":
    main()
