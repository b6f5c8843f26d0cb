"""Decoding and encoding beside the networks: a background thread runs a reader's iterator a bounded number of
items ahead (:class:`Prefetched`), another writes items (chunks or single frames) through writers
(:class:`BackgroundWriter`).

Both wrap the reader and writers as they are; ``depth=0`` runs them in line, without a thread (the same
calls, for comparison). Memory stays flat: at most ``depth`` items wait in each queue. An
error in a thread is raised in the caller at its next call (with the thread's traceback); Ctrl-C in
the caller stops both threads at their next item (they are daemons, so they never keep the process alive).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, TypeVar


T = TypeVar("T")
DEPTH = 2          # items a thread may run ahead: one being used, one ready
_POLL_S = 0.1      # how often a blocked thread checks whether it was stopped
_END = object()    # a producer's last item


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class _Worker:
    """A daemon thread and its bounded queue; ``stop()`` makes its blocking puts and gets return."""

    def __init__(self, depth: int):
        if depth < 1:
            raise ValueError(f"a thread's queue holds at least 1 item, got {depth}")
        self.queue: queue.Queue = queue.Queue(depth)
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, target: Callable[[], None], name: str) -> None:
        self.thread = threading.Thread(target=target, name=name, daemon=True)
        self.thread.start()

    def put(self, item: Any) -> bool:
        """Puts ``item``, waiting for room; False when stopped meanwhile."""
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def get(self) -> Any:
        """The next item, waiting for it; ``_END`` when stopped meanwhile."""
        while not self.stopped.is_set():
            try:
                return self.queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END

    def stop(self) -> None:
        self.stopped.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join()


class Prefetched(Generic[T]):
    """Iterates ``items`` in a background thread, at most ``depth`` items ahead of the caller.

    Use as an iterator; :meth:`close` (or leaving a ``with`` block) stops the thread, also after an error or
    Ctrl-C in the caller. An exception raised by ``items`` is raised by ``next()`` in the caller.
    """

    def __init__(self, items: Iterable[T], depth: int = DEPTH):
        self._items = items
        self._done = False
        self._inline = iter(items) if depth == 0 else None
        if self._inline is None:
            self._worker = _Worker(depth)
            self._worker.start(self._run, "prefetch")

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._worker.put(item):
                    return
            self._worker.put(_END)
        except BaseException as exc:  # noqa: BLE001 (handed to the caller)
            self._worker.put(_Failure(exc))

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        if self._inline is not None:
            return next(self._inline)
        item = self._worker.get()
        if item is _END or isinstance(item, _Failure):
            self.close()
            if isinstance(item, _Failure):
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stops the thread (waiting for the item it is reading); later ``next()`` calls end the iteration."""
        self._done = True
        if self._inline is None:
            self._worker.stop()

    def __enter__(self) -> Prefetched[T]:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


class BackgroundWriter:
    """Writes chunks through ``writers`` (objects with ``write(...)``, ``close()`` and ``abort()``, e.g.
    ``VideoWriter``) in a background thread, at most ``depth`` chunks waiting.

    :meth:`write` hands a chunk over, one tuple of ``write`` arguments per writer (the caller must not change
    them afterwards); :meth:`close` waits for every chunk to be written and closes the writers; :meth:`abort`
    drops what waits and aborts them. An error in the thread is raised by the next :meth:`write` or by
    :meth:`close` (the writers are then aborted).
    """

    def __init__(self, writers: Sequence[Any], depth: int = DEPTH):
        self.writers = list(writers)
        self._error: BaseException | None = None
        self._ended = False
        self._worker = None if depth == 0 else _Worker(depth)
        if self._worker is not None:
            self._worker.start(self._run, "writer")

    def _run(self) -> None:
        while True:
            parts = self._worker.get()
            if parts is _END:
                return
            try:
                self._write(parts)
            except BaseException as exc:  # noqa: BLE001 (handed to the caller)
                self._error = exc
                self._worker.stopped.set()
                return

    def _write(self, parts: Sequence[tuple]) -> None:
        for w, args in zip(self.writers, parts, strict=True):
            w.write(*args)

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self.abort()
            raise error

    def write(self, parts: Sequence[tuple]) -> None:
        """Queues one chunk: ``parts[i]`` are the arguments of ``writers[i].write`` (e.g. ``(frames, times)``);
        waits while ``depth`` chunks wait already."""
        self._raise_error()
        if self._worker is None:
            try:
                self._write(parts)
            except BaseException:
                self.abort()
                raise
        elif not self._worker.put(parts):
            self._raise_error()

    def close(self) -> None:
        """Writes what waits, then closes every writer (raising the thread's error, if any, instead)."""
        if self._ended:
            return
        if self._worker is not None:
            self._worker.put(_END)
            self._worker.thread.join()
            self._raise_error()
        self._ended = True
        for w in self.writers:
            w.close()

    def abort(self) -> None:
        """Stops the thread, drops the chunks that wait and aborts every writer (once)."""
        if self._ended:
            return
        self._ended = True
        if self._worker is not None:
            self._worker.stop()
        for w in self.writers:
            w.abort()
