"""SIGTERM (``kill``, ``timeout``, ``docker stop``, job schedulers) taken like Ctrl-C by the processes this package
starts or runs as: the command line's run and the dataset workers stop through their clean-up (outputs written
whole or not at all), where the default action would kill them on the spot and leave temporaries behind."""
from __future__ import annotations

import signal
import sys
from collections.abc import Callable

SIGTERM_EXIT = 128 + signal.SIGTERM   # the exit status of a process ended by SIGTERM (shells' convention)


class Terminated(KeyboardInterrupt):
    """SIGTERM during a command line run: it stops as Ctrl-C does, exit status :data:`SIGTERM_EXIT`."""


def _raise_terminated(signum, frame):
    raise Terminated


def handle(signum: int, handler: Callable) -> Callable[[], None]:
    """Sets ``handler`` for signal ``signum`` in the main thread; returns the function that puts back the caller's
    handler (the command may run in a process that goes on). Outside the main thread: no change."""
    try:
        previous = signal.signal(signum, handler)
    except ValueError:   # not the main thread
        return lambda: None
    if previous is None:   # a handler installed from C: it cannot be put back from Python
        return lambda: None
    return lambda: signal.signal(signum, previous)


def stop_on_sigterm() -> Callable[[], None]:
    """Makes SIGTERM raise :class:`Terminated` (see :func:`handle`); returns the function that undoes it."""
    return handle(signal.SIGTERM, _raise_terminated)


def _exit_terminated(signum, frame):
    sys.exit(SIGTERM_EXIT)


def worker_signals() -> None:
    """Initializer of a worker process: Ctrl-C is left to the parent (which then ends the workers) and SIGTERM
    exits through the worker's clean-up, quietly (SystemExit, not a traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_terminated)
