"""A result sink: hands the pipeline's results to one consumer thread, in order, and never traps the
inference thread.

    sink = ResultSink()
    pipe = Pipeline(on_result=sink.put, on_error=sink.error, on_end=sink.end)
    pipe.start(source, factory, mode="benchmark")
    try:
        for r in sink:              # consumer thread (a CLI's main thread)
            ...                     # encode, blend, measure
    finally:
        sink.close()                # before stop(): releases a put() waiting for room
        pipe.stop()

``put`` runs on the inference thread. It waits while ``capacity`` results are
unread (back-pressure: in benchmark mode nothing is dropped and memory stays
bounded, so the pipeline runs at the consumer's pace), but only until the
consumer takes one or ``close()`` is called; after ``close()`` it drops
results at once. A consumer that stops early (``--max-frames``) therefore
never leaves the inference thread blocked, so ``Pipeline.stop()`` can join it
and release the backend.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator

from rtseg.core.errors import RtsegError
from rtseg.core.frames import Result


class ResultSink:
    """Bounded, closable hand-off of ``Result``s from the inference thread to one consumer."""

    def __init__(self, capacity: int = 8) -> None:
        if capacity < 1:
            raise ValueError("a result sink holds at least one result")
        self.capacity = capacity
        self._cond = threading.Condition()
        self._items: deque[Result] = deque()
        self._ended = False
        self._closed = False
        self.errors: list[RtsegError] = []
        self.dropped_after_close = 0

    # -- pipeline side (inference thread) -------------------------------------------------
    def put(self, r: Result) -> None:
        """``on_result``: queue ``r``, waiting while the sink is full (until taken from or closed)."""
        with self._cond:
            while len(self._items) >= self.capacity and not self._closed:
                self._cond.wait()
            if self._closed:
                self.dropped_after_close += 1
                return
            self._items.append(r)
            self._cond.notify_all()

    def end(self) -> None:
        """``on_end``: the source ended; the consumer gets what is queued, then the end."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def error(self, e: RtsegError) -> None:
        """``on_error``: remember the error and end the consumer's wait (it raises ``errors[0]``)."""
        with self._cond:
            self.errors.append(e)
            self._ended = True
            self._cond.notify_all()

    # -- consumer side ----------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Result | None:
        """The next result; None at the end (after the queued ones), after ``close()``, or on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._ended or self._closed, timeout):
                return None
            if self._items and not self._closed:
                r = self._items.popleft()
                self._cond.notify_all()  # a put() may be waiting for room
                return r
            return None

    def __iter__(self) -> Iterator[Result]:
        while (r := self.get()) is not None:
            yield r

    def close(self) -> None:
        """Stop accepting results and release every waiter (any thread). Idempotent."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
