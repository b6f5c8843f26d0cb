"""Speed of the full-size networks on the CPU, as ratios of the matmul rate measured in the same process.

    .venv/bin/python bench/models.py [--threads N]

Prints ms/item, achieved GFLOP/s and the fraction of the matmul GFLOP/s for the generator at 256 px (cm 1)
at batch 1 and 8, e4e at 256 px and DECA's E_flame at 224 px (random weights: speed does not depend on them).
Target: generator batch-8 throughput >= 0.65 of the matmul rate.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from common import BASELINE_NOTE, best_seconds, count_flops, matmul_gflops, parse_bench_args  # noqa: E402

from reenact_core.weights import kind  # noqa: E402


def cases():
    g = kind("stylegan2").build(kind("stylegan2").config_from_dict({"size": 256, "channel_multiplier": 1})).eval()
    w = lambda b: torch.randn(b, g.config.n_latent, g.config.style_dim)  # noqa: E731
    yield "generator 256 cm1", 1, lambda x=w(1): g(x)
    yield "generator 256 cm1", 8, lambda x=w(8): g(x)
    e = kind("e4e").build(kind("e4e").config_from_dict({})).eval()
    yield "e4e IR-SE-50 256", 1, lambda x=torch.rand(1, 3, 256, 256) * 2 - 1: e(x)
    d = kind("deca").build(kind("deca").config_from_dict({})).eval()
    yield "DECA E_flame 224", 1, lambda x=torch.rand(1, 3, 224, 224): d(x)


def main() -> None:
    parse_bench_args(__doc__.splitlines()[0])
    print(f"threads {torch.get_num_threads()}; {BASELINE_NOTE}")
    print(f"{'model':<20} {'batch':>5} {'ms/item':>9} {'GFLOP/item':>11} {'GFLOP/s':>8} {'matmul':>7} {'ratio':>6}")
    with torch.inference_mode():
        for name, batch, fn in cases():
            flops = count_flops(fn) / batch
            base = matmul_gflops()
            seconds = best_seconds(fn, repeats=3 if batch == 1 else 2) / batch
            rate = flops / seconds / 1e9
            print(f"{name:<20} {batch:>5} {seconds * 1e3:>9.1f} {flops / 1e9:>11.2f} {rate:>8.1f} {base:>7.1f} "
                  f"{rate / base:>6.2f}")


if __name__ == "__main__":
    main()
