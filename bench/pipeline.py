"""Per-frame cost of reenactment at 256 px with the full-size architectures (random weights), on the CPU.

    .venv/bin/python bench/pipeline.py [--frames N] [--threads N]

Prints the in-process matmul GFLOP/s baseline, then ms/frame per stage (landmarks, DECA crop + E_flame, A,
generator, paste-back) at batch 1 and 8, the render step (A + G) without and with FSR refinement (E_F at
k = 4, output layer random) and their ratio at batch 8, and the end-to-end frames/s of a DriveSession (landmarks
included) on real driving frames, also as a ratio to the matmul rate (compare two versions by this ratio: each
run measures its own baseline). Target: >= 2 frames/s at batch 8 on a 2-core CPU; FSR ≈ 2–3× the plain
render (one more encoder pass and the generator after feature k again).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from common import best_seconds, matmul_gflops  # noqa: E402

from reenact_core.engine import (DriveOptions, DriveSession, ReenactModels, estimate_codes, fsr_context,  # noqa: E402
                                 prepare_source, render)
from reenact_core.landmarks import detect_faces  # noqa: E402
from reenact_core.faces.paste_back import paste_back  # noqa: E402
from reenact_core.faces.reference_crop import crop_using_landmarks  # noqa: E402
from reenact_core.video import VideoReader  # noqa: E402
from reenact_core.models.fsr import FSRConfig, randomise_output  # noqa: E402
from reenact_core.weights import INFERENCE, LoadedModel, kind, kind_names  # noqa: E402
from reenact_core.weights.identity import with_identity  # noqa: E402

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


def full_size_models() -> ReenactModels:
    loaded = {}
    for name in kind_names(INFERENCE):
        k = kind(name)
        config = k.config_from_dict({})
        module = k.set_mode(k.build(config), False)
        with torch.no_grad():
            extras = k.extra_tensors(module, config, 0)
        loaded[name] = LoadedModel(name, config, module, Path(f"<random {name}>"), {}, extras)
    return ReenactModels(loaded["stylegan2"], loaded["e4e"], loaded["deca"], loaded["directions"],
                         torch.device("cpu"), torch.float32)


def with_full_size_fsr(models: ReenactModels) -> ReenactModels:
    """``models`` plus a full-size E_F for feature k = 4 of their generator (random, its output layer too)."""
    g = models.generator
    config = FSRConfig.for_generator(g.config)
    module = kind("fsr").set_mode(kind("fsr").build(config), False)
    randomise_output(module)
    fsr = LoadedModel("fsr", config, module, Path("<random fsr>"), with_identity({}, g.module.state_dict()))
    return dataclasses.replace(models, fsr=fsr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48, help="driving frames for the end-to-end run")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--driver", default=str(MEDIA / "d1.mp4"))
    parser.add_argument("--source", default=str(MEDIA / "s1.jpg"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = matmul_gflops()
    print(f"threads {torch.get_num_threads()}; matmul baseline {base:.1f} GFLOP/s (fp32 2048x2048, this process)")
    models = full_size_models()
    from PIL import Image
    source = prepare_source(np.asarray(Image.open(args.source).convert("RGB")), models)
    frames = [f for _, f in zip(range(args.frames), VideoReader(args.driver))]
    while len(frames) < args.frames:
        frames += frames[: args.frames - len(frames)]
    faces = [max(detect_faces(f), key=lambda x: x.area) for f in frames[:8]]
    crops, kpts = zip(*[(c, t.frame_to_crop(fc.landmarks)) for fc, (c, t) in
                        ((fc, crop_using_landmarks(f, fc.landmarks)) for fc, f in zip(faces, frames))])
    crops, kpts = np.stack(crops), np.stack(kpts)
    g, a = models.generator.module, models.directions.module
    matrix = source.transform.crop_to_frame_matrix()
    print(f"{'stage':<28} {'batch':>5} {'ms/frame':>9}")
    with torch.inference_mode():
        rows = [("landmarks (dlib, 512 px)", 1, lambda: detect_faces(frames[0]))]
        for b in (1, 8):
            dp = torch.randn(b, 15)
            w = source.w_plus.expand(b, -1, -1)
            rows += [("DECA crop + E_flame", b, lambda b=b: estimate_codes(models, crops[:b], kpts[:b])),
                     ("A", b, lambda dp=dp: a(dp)),
                     ("generator 256 cm1", b, lambda w=w: g(w, truncation=0.7, truncation_latent=source.mean_latent))]
        rows.append(("paste-back", 1, lambda: paste_back(source.image, crops[0], matrix)))
        for name, b, fn in rows:
            print(f"{name:<28} {b:>5} {best_seconds(fn, repeats=2) / b * 1e3:>9.1f}")
        refined = with_full_size_fsr(models)
        context = fsr_context(refined, source)
        cost = {}
        for b in (1, 8):
            dp = torch.randn(b, 15)
            for name, m, kw in (("render (A + G)", models, {}), ("render + FSR k=4", refined, {"context": context})):
                cost[name, b] = best_seconds(lambda m=m, kw=kw, dp=dp: render(m, source, dp, paste=False, **kw),
                                             repeats=2) / b
                print(f"{name:<28} {b:>5} {cost[name, b] * 1e3:>9.1f}")
        print(f"FSR frame cost at batch 8: {cost['render + FSR k=4', 8] / cost['render (A + G)', 8]:.2f}x the plain "
              f"frame (render step, same process)")
    for b in (1, 8):
        session = DriveSession(models, source, DriveOptions(batch_size=b))
        session.process(frames[:b])        # warm-up
        start = time.perf_counter()
        n = len(session.process(frames)) + len(session.finish())
        seconds = time.perf_counter() - start
        print(f"end to end (landmarks included), batch {b}: {n / seconds:.2f} frames/s "
              f"({seconds / n * 1e3:.0f} ms/frame over {n} frames); {n / seconds / base * 1e3:.2f} frames/s per "
              f"1000 matmul GFLOP/s (compare runs by this ratio)")


if __name__ == "__main__":
    main()
