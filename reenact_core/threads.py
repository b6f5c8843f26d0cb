"""How many CPU threads torch uses: chosen by the command line only (the library and the nodes leave a host's
setting alone, tests/test_host_effects.py).

With OpenMP's default, a thread that waits for work spins for a long while before it sleeps (libgomp, torch's
OpenMP on Linux: 300 000 iterations). On a machine where other processes also compute, the spinning threads
take the cores from the thread that has work, and every parallel region waits for it: one busy process beside a
tuning run slowed each step by two orders of magnitude. Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``) cures
that but costs ~13 % alone, waking threads for every small operation. The command line therefore sets a short
spin (:data:`SPIN_COUNT`, :func:`limit_openmp_spinning`, unless the user set ``GOMP_SPINCOUNT`` or
``OMP_WAIT_POLICY``): ``bench/threads.py`` measured one thread per core with it within 10 % of the fastest
setting alone and at most 3x slower beside one busy process per core, on the full-size generator.
:data:`~reenact_core.options.THREADS` holds the pick (0: torch's own count, one per core). Under torchrun each
rank takes one thread, so N ranks use N cores.
"""
from __future__ import annotations

import os
import sys

from .options import THREADS

SPIN_COUNT = "10000"   # libgomp's GOMP_SPINCOUNT: iterations a waiting thread spins before it sleeps (bench/threads.py)


def limit_openmp_spinning() -> bool:
    """Sets ``GOMP_SPINCOUNT`` to :data:`SPIN_COUNT` for this process unless ``GOMP_SPINCOUNT`` or
    ``OMP_WAIT_POLICY`` is set; OpenMP reads it once, when torch is first imported, so this must run before that.
    Returns whether it took effect. For the command line only (the library leaves its host's settings alone)."""
    if "torch" in sys.modules or "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    return True


def torchrun_world_size() -> int:
    """The number of processes torchrun started (its ``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def thread_count(requested: int | None, world_size: int = 1) -> int:
    """Threads for one process: ``requested`` (``--threads``) when given, else 1 per rank under torchrun
    (``world_size`` > 1), else the declared default :data:`~reenact_core.options.THREADS`; 0 means torch's own
    count (one per core)."""
    if requested is not None:
        return THREADS.check(requested)
    return 1 if world_size > 1 else THREADS.default


def use_threads(requested: int | None) -> int:
    """Sets torch's intra-op thread count for this process (:func:`thread_count` under this environment; 0 leaves
    torch's own) and returns the count in use. For the command line: a library call must not change its host's
    threading."""
    import torch

    count = thread_count(requested, torchrun_world_size())
    if count:
        torch.set_num_threads(count)
    return torch.get_num_threads()
