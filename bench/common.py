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


class _ConvRecorder(torch.overrides.TorchFunctionMode):
    """Records every 3×3 ``conv2d`` / ``conv_transpose2d`` call (groups 1) made under it: function, input and
    weight shapes, dtype and the arguments after the bias (stride, padding, ...)."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.conv2d, torch.conv_transpose2d) and args[1].shape[-2:] == (3, 3) \
                and kwargs.get("groups", 1) == 1:
            rest = tuple(tuple(v) if isinstance(v, list) else v for v in args[3:])
            self.calls.append((func, tuple(args[0].shape), tuple(args[1].shape), args[0].dtype, rest,
                               tuple(sorted((k, v) for k, v in kwargs.items() if k != "bias"))))
        return func(*args, **kwargs)


def conv_rate(fn: Callable[[], object], device: torch.device | str = "cpu", repeats: int = 3) -> float:
    """GFLOP/s of the plain library 3×3 convolutions (oneDNN on CPU, cuDNN on CUDA) on the 3×3 layer shapes that
    one call of ``fn`` runs, replayed with random channels-last tensors of the same shapes, dtype and arguments.

    This is the ceiling a network of those layers can reach in this process: ratios of a network's rate to it
    say how much time goes outside the convolutions.
    """
    recorder = _ConvRecorder()
    with recorder:
        fn()
    if not recorder.calls:
        raise ValueError("the network ran no 3x3 convolution")
    flops = seconds = 0.0
    for call in sorted(set(recorder.calls), key=str):
        func, x_shape, w_shape, dtype, rest, kwargs = call
        x = torch.randn(x_shape, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(w_shape, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
        replay = lambda: func(x, w, None, *rest, **dict(kwargs))  # noqa: E731
        n = recorder.calls.count(call)
        flops += count_flops(replay) * n
        seconds += best_seconds(lambda: synchronized(replay, device), repeats=repeats) * n
    return flops / seconds / 1e9


def synchronized(fn: Callable[[], object], device: torch.device | str = "cpu") -> object:
    """``fn()``, waiting for the device to finish it (CUDA runs asynchronously)."""
    out = fn()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return out
