"""Background reading and writing (reenact_core.video.overlap): order, bounded look-ahead, errors, stopping."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from reenact_core.video.overlap import DEPTH, BackgroundWriter, Prefetched


class Counting:
    """An endless iterator counting what it produced."""

    def __init__(self):
        self.produced = 0

    def __iter__(self):
        while True:
            self.produced += 1
            yield self.produced


def _wait_until(condition, seconds: float = 5.0) -> None:
    end = time.monotonic() + seconds
    while not condition() and time.monotonic() < end:
        time.sleep(0.01)


def test_prefetched_gives_every_item_in_order():
    assert list(Prefetched(iter(range(50)))) == list(range(50))
    assert list(Prefetched([])) == []


def test_prefetched_runs_a_bounded_number_of_items_ahead_and_close_stops_it():
    source = Counting()
    items = Prefetched(source)
    assert [next(items) for _ in range(3)] == [1, 2, 3]
    _wait_until(lambda: source.produced >= 3 + DEPTH + 1)
    time.sleep(0.3)
    assert source.produced <= 3 + DEPTH + 1           # the queue plus the item waiting to be put
    items.close()
    assert not items._worker.thread.is_alive()
    with pytest.raises(StopIteration):
        next(items)


def test_an_error_while_reading_is_raised_in_the_caller():
    def failing():
        yield 1
        raise ValueError("bad frame 2")
    items = Prefetched(failing())
    assert next(items) == 1
    with pytest.raises(ValueError, match="bad frame 2"):
        next(items)
    assert not items._worker.thread.is_alive()


def test_an_interrupt_in_the_caller_stops_the_reader():
    source = Counting()
    with pytest.raises(KeyboardInterrupt):
        with Prefetched(source) as items:
            for item in items:
                if item == 2:
                    raise KeyboardInterrupt
    assert not items._worker.thread.is_alive()
    assert threading.active_count() < 50


class Recorder:
    def __init__(self, fail_at: int | None = None, delay: float = 0.0):
        self.chunks, self.closed, self.aborted = [], False, False
        self.fail_at, self.delay = fail_at, delay

    def write(self, frames):
        time.sleep(self.delay)
        if self.fail_at is not None and len(self.chunks) == self.fail_at:
            raise OSError("disk full")
        self.chunks.append(frames)

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True


def _chunk(i: int, writers: int = 1) -> list[tuple]:
    """Chunk ``i`` for each of ``writers`` writers (the arguments of their ``write``)."""
    return [(np.full((2, 4, 4, 3), i, np.uint8),)] * writers


def test_background_writer_writes_every_chunk_in_order_then_closes():
    writers = [Recorder(delay=0.01), Recorder()]
    sink = BackgroundWriter(writers)
    for i in range(10):
        sink.write(_chunk(i, len(writers)))
    sink.close()
    for w in writers:
        assert [int(c[0, 0, 0, 0]) for c in w.chunks] == list(range(10))
        assert w.closed and not w.aborted


def test_background_writer_holds_at_most_depth_chunks():
    """With the writer stuck on one chunk, ``DEPTH`` more are taken and the next ``write`` waits for room."""
    release = threading.Event()
    writer = Recorder()
    real_write = writer.write
    writer.write = lambda frames: (release.wait(), real_write(frames))
    sink = BackgroundWriter([writer])
    for i in range(DEPTH + 1):                          # one being written, DEPTH waiting
        sink.write(_chunk(i))
    extra = threading.Thread(target=sink.write, args=(_chunk(DEPTH + 1),))
    extra.start()
    extra.join(0.5)
    assert extra.is_alive(), "a write went through while DEPTH chunks were waiting"
    release.set()
    extra.join()
    sink.close()
    assert [int(c[0, 0, 0, 0]) for c in writer.chunks] == list(range(DEPTH + 2))


def test_a_write_error_is_raised_in_the_caller_and_the_writers_are_aborted():
    writer = Recorder(fail_at=1)
    sink = BackgroundWriter([writer])
    with pytest.raises(OSError, match="disk full"):
        for i in range(20):
            sink.write(_chunk(i))
            time.sleep(0.02)
        sink.close()
    assert writer.aborted and not writer.closed
    sink.abort()                                        # once is enough; a second call does nothing


def test_abort_drops_waiting_chunks_and_aborts():
    writer = Recorder(delay=0.1)
    sink = BackgroundWriter([writer])
    for i in range(DEPTH):
        sink.write(_chunk(i))
    sink.abort()
    assert writer.aborted and not writer.closed
    assert not sink._worker.thread.is_alive()


@pytest.mark.parametrize("depth", [0, DEPTH])
def test_inline_and_background_runs_agree(depth):
    assert list(Prefetched(iter(range(7)), depth)) == list(range(7))
    writer = Recorder()
    sink = BackgroundWriter([writer], depth)
    for i in range(5):
        sink.write(_chunk(i))
    sink.close()
    assert [int(c[0, 0, 0, 0]) for c in writer.chunks] == list(range(5)) and writer.closed
    failing = Recorder(fail_at=0)
    sink = BackgroundWriter([failing], depth)
    with pytest.raises(OSError):
        sink.write(_chunk(0))
        sink.close()
    assert failing.aborted
