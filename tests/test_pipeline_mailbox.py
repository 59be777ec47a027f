"""One-slot mailbox: newest wins, drops counted, blocking mode, waking blocked threads."""

from __future__ import annotations

import threading
import time

from rtseg.pipeline.mailbox import Mailbox

WAIT = 5.0  # generous upper bound for a thread to react; the tests never sleep to synchronise


def test_put_replaces_unread_and_counts_drops() -> None:
    mb: Mailbox[int] = Mailbox()
    assert mb.put(1) and mb.put(2) and mb.put(3)
    assert mb.dropped == 2
    assert mb.take(timeout=0) == 3
    assert mb.take(timeout=0) is None  # empty again
    mb.put(4)
    assert mb.take() == 4
    assert mb.dropped == 2 and mb.delivered == 4 and mb.taken == 2


def test_take_blocks_until_put_from_another_thread() -> None:
    mb: Mailbox[str] = Mailbox()
    got: list[str | None] = []
    waiting = threading.Event()

    def consumer() -> None:
        waiting.set()
        got.append(mb.take(timeout=WAIT))

    t = threading.Thread(target=consumer)
    t.start()
    assert waiting.wait(WAIT)
    mb.put("frame")
    t.join(WAIT)
    assert not t.is_alive()
    assert got == ["frame"]


def test_close_wakes_a_blocked_taker() -> None:
    mb: Mailbox[int] = Mailbox()
    got: list[object] = ["unset"]
    started = threading.Event()

    def consumer() -> None:
        started.set()
        got[0] = mb.take()  # no timeout: only close() can end this

    t = threading.Thread(target=consumer)
    t.start()
    assert started.wait(WAIT)
    t0 = time.monotonic()
    mb.close()
    t.join(WAIT)
    assert not t.is_alive() and time.monotonic() - t0 < 1.0
    assert got[0] is None
    assert mb.put(1) is False  # closed for producers too


def test_cancelled_predicate_and_wake_all_release_one_taker() -> None:
    mb: Mailbox[int] = Mailbox()
    stop = threading.Event()
    got: list[object] = ["unset"]

    t = threading.Thread(target=lambda: got.__setitem__(0, mb.take(cancelled=stop.is_set)))
    t.start()
    stop.set()
    mb.wake_all()
    t.join(WAIT)
    assert not t.is_alive() and got[0] is None
    assert not mb.closed  # the mailbox stays usable for the next consumer
    mb.put(7)
    assert mb.take(timeout=0) == 7


def test_blocking_mode_drops_nothing_and_keeps_order() -> None:
    mb: Mailbox[int] = Mailbox(blocking=True)
    n = 200
    received: list[int] = []

    def consumer() -> None:
        while True:
            item = mb.take(timeout=WAIT)
            if item is None or item < 0:
                return
            received.append(item)

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(n):
        assert mb.put(i, timeout=WAIT)
    assert mb.put(-1, timeout=WAIT)
    t.join(WAIT)
    assert received == list(range(n))
    assert mb.dropped == 0


def test_blocking_put_waits_for_the_slot_and_close_releases_it() -> None:
    mb: Mailbox[int] = Mailbox(blocking=True)
    assert mb.put(1)
    assert mb.put(2, timeout=0.05) is False  # slot full: not delivered, nothing dropped
    assert mb.dropped == 0
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(mb.put(3)))
    t.start()
    assert mb.take(timeout=WAIT) == 1  # frees the slot: the blocked put goes through
    t.join(WAIT)
    assert result == [True] and mb.take(timeout=0) == 3

    assert mb.put(4)
    t = threading.Thread(target=lambda: result.append(mb.put(5)))
    t.start()
    mb.close()
    t.join(WAIT)
    assert not t.is_alive() and result[-1] is False


def test_per_call_block_override_and_clear() -> None:
    mb: Mailbox[int] = Mailbox(blocking=False)
    mb.put(1)
    assert mb.put(2, block=True, timeout=0.01) is False
    assert mb.clear() == 1  # clearing is not a drop
    assert mb.dropped == 0 and not mb.has_item()
    assert mb.clear() is None


def test_wait_empty_returns_once_taken() -> None:
    mb: Mailbox[int] = Mailbox()
    mb.put(1)
    done = threading.Event()
    t = threading.Thread(target=lambda: mb.wait_empty() and done.set())
    t.start()
    assert mb.take(timeout=WAIT) == 1
    assert done.wait(WAIT)
    t.join(WAIT)
