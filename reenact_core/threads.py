"""How many CPU threads torch uses: chosen by the command line only (the library and the nodes leave a host's
setting alone, tests/test_host_effects.py).

With torch's default (one thread per core) and OpenMP's default of spinning while it waits, a process beside one
busy process slows down by up to two orders of magnitude: every parallel region waits for its slowest thread, and
the spinning threads take the core from the one that shares it with the busy process. The command line therefore
runs OpenMP with passive waiting (:func:`prefer_passive_waiting`, unless ``OMP_WAIT_POLICY`` is set).
``bench/threads.py`` measures the trade-off; :data:`~reenact_core.options.THREADS` holds its pick. Under torchrun
each rank takes one thread, so N ranks use N cores.
"""
from __future__ import annotations

import os
import sys

from .options import THREADS

WAIT_POLICY = "PASSIVE"   # OpenMP's idle threads sleep instead of spinning (bench/threads.py)


def prefer_passive_waiting() -> bool:
    """Sets ``OMP_WAIT_POLICY`` to :data:`WAIT_POLICY` for this process unless the user set it; OpenMP reads it
    once, when torch is first imported, so this must run before that. Returns whether it took effect (False when
    torch was already imported). For the command line only."""
    if "torch" in sys.modules:
        return False
    os.environ.setdefault("OMP_WAIT_POLICY", WAIT_POLICY)
    return True


def torchrun_world_size() -> int:
    """The number of processes torchrun started (its ``WORLD_SIZE``; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def thread_count(requested: int | None, world_size: int = 1) -> int:
    """Threads for one process: ``requested`` (``--threads``) when given, else 1 per rank under torchrun
    (``world_size`` > 1), else the declared default :data:`~reenact_core.options.THREADS`."""
    if requested is not None:
        return THREADS.check(requested)
    return 1 if world_size > 1 else THREADS.default


def use_threads(requested: int | None) -> int:
    """Sets torch's intra-op thread count for this process (:func:`thread_count` under this environment) and
    returns it. For the command line: a library call must not change its host's threading."""
    import torch

    count = thread_count(requested, torchrun_world_size())
    torch.set_num_threads(count)
    return count
