"""A one-slot mailbox between the capture and the inference thread.

Display mode (``blocking=False``): ``put`` replaces an unread item, so the
consumer always gets the newest frame and a slow consumer never makes the
producer queue stale frames; each replaced item is counted in ``dropped``.

Benchmark mode (``blocking=True``): ``put`` waits until the slot is free, so
nothing is ever dropped and the producer runs at the consumer's pace.

All waiting is on one ``threading.Condition``: no sleep polling. A waiting
thread can be released early in two ways: ``close()`` (for good), or a
``cancelled`` predicate the caller passes plus ``wake_all()`` after changing
what the predicate reads (used to stop one thread while the mailbox stays in
use by its replacement).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

_EMPTY = object()


class Mailbox(Generic[T]):
    """One slot, newest wins (or, in blocking mode, producer waits).

    Thread-safe: ``put`` is called from the producer (capture) thread, ``take``
    from the consumer (inference) thread, ``close``/``wake_all``/``clear`` from
    any thread.
    """

    def __init__(self, blocking: bool = False) -> None:
        self.blocking = blocking
        self._cond = threading.Condition()
        self._item: object = _EMPTY
        self._closed = False
        self._dropped = 0
        self._put = 0
        self._taken = 0

    # -- producer side -----------------------------------------------------
    def put(self, item: T, *, block: bool | None = None, timeout: float | None = None,
            cancelled: Callable[[], bool] | None = None) -> bool:
        """Deliver ``item``. Called from the producer thread.

        ``block`` overrides the mailbox's mode for this call. Returns True when
        the item is in the slot; False when it was not delivered because the
        mailbox is closed, ``cancelled()`` became true, or ``timeout`` (seconds,
        blocking only) ran out.
        """
        block = self.blocking if block is None else block
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if cancelled is not None and cancelled():
                return False
            if block:
                while self._item is not _EMPTY and not self._closed:
                    if cancelled is not None and cancelled():
                        return False
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            if self._closed:
                return False
            if self._item is not _EMPTY:
                self._dropped += 1
            self._item = item
            self._put += 1
            self._cond.notify_all()
            return True

    # -- consumer side -----------------------------------------------------
    def take(self, timeout: float | None = None, cancelled: Callable[[], bool] | None = None) -> T | None:
        """Wait for an item and return it (the newest). Called from the consumer thread.

        Returns None when the mailbox is closed, ``cancelled()`` is true, or the
        ``timeout`` (seconds) ran out with nothing delivered.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._item is _EMPTY:
                if self._closed or (cancelled is not None and cancelled()):
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if cancelled is not None and cancelled():
                return None
            item = self._item
            self._item = _EMPTY
            self._taken += 1
            # a producer blocked in put() waits for exactly this
            self._cond.notify_all()
            return item  # type: ignore[return-value]

    def wait_empty(self, timeout: float | None = None, cancelled: Callable[[], bool] | None = None) -> bool:
        """Block until the slot is empty (the consumer took the last item). Any thread.

        Returns False if released by ``close()``, ``cancelled()`` or the
        ``timeout`` (seconds) instead.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._item is not _EMPTY:
                if self._closed or (cancelled is not None and cancelled()):
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    # -- any thread -----------------------------------------------------------
    def clear(self) -> T | None:
        """Remove and return an unread item without counting it as dropped (any thread).

        Used on seek and source switch, where the pending frame is obsolete by
        the user's choice rather than lost to a slow consumer.
        """
        with self._cond:
            item = self._item
            self._item = _EMPTY
            self._cond.notify_all()
            return None if item is _EMPTY else item  # type: ignore[return-value]

    def wake_all(self) -> None:
        """Wake every waiting thread so it re-checks its ``cancelled`` predicate (any thread)."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Release every waiter for good: ``take`` returns None, ``put`` False (any thread)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        """Accept items again after ``close()`` (any thread); the slot starts empty."""
        with self._cond:
            self._closed = False
            self._item = _EMPTY

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        """Items replaced before they were taken (display mode only; always 0 when blocking)."""
        return self._dropped

    @property
    def delivered(self) -> int:
        """Items put into the slot so far."""
        return self._put

    @property
    def taken(self) -> int:
        return self._taken

    def has_item(self) -> bool:
        with self._cond:
            return self._item is not _EMPTY
