"""Shared bench helpers: the in-process matmul baseline, FLOP counting and timing."""
from __future__ import annotations

import argparse
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_gflops(n: int = 2048, repeats: int = 10, dtype=torch.float32) -> float:
    """Best achieved GFLOP/s of an n×n fp32 matmul on the CPU: the baseline every ratio is measured against."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return 2 * n ** 3 / best_seconds(lambda: a @ b, repeats=repeats, warmup=2) / 1e9


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (multiply-add = 2), as counted by torch's FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def best_seconds(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Fastest wall time of ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


BASELINE_NOTE = ("each row's baseline is the fp32 2048x2048 matmul rate measured just before it in this process "
                 "(the machine's load varies)")


def parse_bench_args(description: str, configure: Callable[[argparse.ArgumentParser], None] | None = None):
    """Command-line options (``--threads`` plus what ``configure`` adds); applies the thread count and seeds 0."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=None)
    if configure is not None:
        configure(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return args
