"""CPU threads on a shared machine: a generator tuning step and a generator forward at 1, 2, ... threads, under
three OpenMP waiting settings, quiet and beside busy processes, as ratios of the best quiet time.

    .venv/bin/python bench/threads.py [--threads 1,2] [--seconds 2] [--busy N]

"Contended" runs one spinning process per core (``--busy``, default the core count) beside the measurement.
Each waiting setting (``WAITING``: the command line's short spin, passive, OpenMP's default) is measured in its
own process, as OpenMP reads it once, when torch loads it. The rule: quiet throughput within 10 % of the best
configuration's, and contended time at most 3x the best quiet time, on every workload of the full-size
generator (random weights: speed does not depend on them); the tiny test generator's rows are shown only.
The last line gives the counts that meet it under the command line's setting, and the declared default of
``--threads`` (reenact_core.options.THREADS; 0 = torch's own count, one per core). Run it on an otherwise idle
machine: another user's load makes the quiet figures contended ones (the load average is printed).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
from reenact_core.engine.tuning import tune_generator  # noqa: E402
from reenact_core.options import THREADS  # noqa: E402
from reenact_core.threads import SPIN_COUNT  # noqa: E402
from reenact_core.weights import kind, tiny_config  # noqa: E402

QUIET_MARGIN = 0.10       # quiet throughput within 10 % of the best count's
CONTENDED_LIMIT = 3.0     # contended time at most 3x the best quiet time
TUNING_STEPS = 3          # tuning steps per timed call (the time is reported per step)
SPIN = "while True:\n    pass"
WAITING = {   # OpenMP settings compared, each in its own process; the first is the command line's
    "short spin": {"GOMP_SPINCOUNT": SPIN_COUNT},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "default": {},
}
GENERATORS = {   # label: (its architecture, whether the rule applies to its workloads)
    "256-px G": (lambda: kind("stylegan2").config_class(), True),    # the default architecture: what a run computes
    "tiny G": (lambda: tiny_config("stylegan2"), False),             # small operations, where waking threads costs most
}


def workloads() -> list[tuple[str, int, Callable[[], object], bool]]:
    """(name, items per call, one timed call, whether the rule applies) for a tuning step and a batch-1 forward of
    each of ``GENERATORS`` (the rule picks the default by the full-size one; the tiny one is shown only)."""
    torch.manual_seed(0)
    jobs = []
    for label, (architecture, decides) in GENERATORS.items():
        config = architecture()
        g = kind("stylegan2").build(config).eval().requires_grad_(False)
        w_plus = torch.randn(1, config.n_latent, config.style_dim)
        target = torch.rand(1, 3, config.size, config.size) * 2 - 1

        def tuning(g=g, w_plus=w_plus, target=target):
            tune_generator(g, w_plus, target, mean_latent=None, truncation=1.0, steps=TUNING_STEPS)

        def forward(g=g, w_plus=w_plus):
            with torch.inference_mode():
                g(w_plus)
        jobs += [(f"tuning step, {label}", TUNING_STEPS, tuning, decides), (f"forward, {label}", 1, forward, decides)]
    return jobs


def median_seconds(fn: Callable[[], object], budget: float, per_call: int = 1, least: int = 3) -> float:
    """Median wall time per item of calls of ``fn`` (``per_call`` items each): one warm-up, then calls until
    ``budget`` seconds have passed and at least ``least`` were timed."""
    fn()
    times, start = [], time.perf_counter()
    while len(times) < least or time.perf_counter() - start < budget:
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) / per_call)
    return statistics.median(times)


class Busy:
    """``count`` processes spinning on the CPU for the duration of a ``with`` block."""

    def __init__(self, count: int) -> None:
        self.count, self.procs = count, []

    def __enter__(self) -> Busy:
        self.procs = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(self.count)]
        time.sleep(0.5)   # the spinners are running before the first timed call
        return self

    def __exit__(self, *exc) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()


def measure(counts: list[int], budget: float, busy: int) -> dict:
    """{(workload, threads, condition): seconds per item} in this process, condition ``quiet`` or ``contended``."""
    results = {}
    jobs = workloads()
    for condition in ("quiet", "contended"):
        for threads in counts:
            torch.set_num_threads(threads)
            for name, per_call, fn, _ in jobs:
                if condition == "quiet":
                    results[name, threads, condition] = median_seconds(fn, budget, per_call)
                else:
                    with Busy(busy):
                        results[name, threads, condition] = median_seconds(fn, budget, per_call)
    return results


def measure_waiting(waiting: str, args: argparse.Namespace) -> dict:
    """{(workload, waiting, threads, condition): seconds per item}, measured in a child process whose OpenMP runs
    with the ``WAITING[waiting]`` settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    child = subprocess.run([sys.executable, __file__, "--child", "--threads", args.threads, "--seconds",
                            str(args.seconds), "--busy", str(args.busy)], env={**env, **WAITING[waiting]},
                           capture_output=True, text=True, check=True)
    return {(name, waiting, threads, condition): seconds
            for name, threads, condition, seconds in json.loads(child.stdout.splitlines()[-1])}


def verdicts(results: dict, configs: list[tuple[str, int]], chosen_waiting: str) -> tuple[list[tuple], int | None]:
    """Table rows (workload, waiting, threads, quiet s, quiet throughput / best, contended s, contended / best quiet,
    own slowdown, meets the rule) and the smallest count meeting the rule on every workload under
    ``chosen_waiting`` (None if none does). "Best" is the fastest quiet configuration of any waiting setting and count."""
    rows, good = [], {t for p, t in configs if p == chosen_waiting}
    for name in dict.fromkeys(k[0] for k in results):
        best = min(results[name, p, t, "quiet"] for p, t in configs)
        for p, t in configs:
            quiet, contended = results[name, p, t, "quiet"], results[name, p, t, "contended"]
            ok = best / quiet >= 1 - QUIET_MARGIN and contended / best <= CONTENDED_LIMIT
            if not ok and p == chosen_waiting and GENERATORS[name.split(", ")[-1]][1]:
                good.discard(t)
            rows.append((name, p, t, quiet, best / quiet, contended, contended / best, contended / quiet, ok))
    return rows, min(good) if good else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="thread counts to compare, comma-separated (default 1,2)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing budget of each cell (default 2)")
    parser.add_argument("--busy", type=int, default=os.cpu_count() or 1,
                        help="spinning processes of the contended runs (default: one per core)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.getLogger("reenact_core.engine.tuning").setLevel(logging.ERROR)   # MSE-only tuning: no LPIPS file
    counts = sorted({int(c) for c in args.threads.split(",")})
    if args.child:
        print(json.dumps([[*key, seconds] for key, seconds in measure(counts, args.seconds, args.busy).items()]))
        return
    policies = list(WAITING)   # the command line's first
    print("command: " + shlex.join([Path(sys.executable).name, *sys.argv]))
    print(f"torch {torch.__version__}; {os.cpu_count()} cores; load average before: "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}; contended = {args.busy} spinning process(es)")
    results = {}
    for policy in policies:
        results.update(measure_waiting(policy, args))
    rows, chosen = verdicts(results, [(p, t) for p in policies for t in counts], policies[0])
    print(f"{'workload':<24} {'waiting':>10} {'threads':>7} {'quiet ms':>9} {'quiet thr/best':>14} {'contended ms':>12} "
          f"{'contended/best quiet':>20} {'contended/own quiet':>19}  rule")
    for name, policy, t, quiet, thr, contended, slow, own, ok in rows:
        print(f"{name:<24} {policy:>10} {t:>7} {quiet * 1e3:>9.2f} {thr:>14.2f} {contended * 1e3:>12.2f} "
              f"{slow:>20.2f} {own:>19.2f}  {'meets' if ok else 'fails'}")
    print(f"rule: quiet throughput >= {1 - QUIET_MARGIN:.2f} of the best configuration's and contended time <= "
          f"{CONTENDED_LIMIT:g}x the best quiet time, on every 256-px G workload")
    print(f"load average after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"meets the rule with the command line's {policies[0]} (GOMP_SPINCOUNT={SPIN_COUNT}): "
          f"{chosen if chosen is not None else 'no count'}; declared default (reenact_core.options.THREADS): "
          f"{THREADS.default}")


if __name__ == "__main__":
    main()
