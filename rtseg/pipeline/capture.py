"""The capture thread: opens one source, reads, paces, seeks and closes it.

It feeds the one-slot mailbox the inference thread takes from. In
``benchmark`` mode a file's frames are put with a blocking put, so nothing is
dropped; otherwise the newest frame replaces an unread one and the drop is
counted. A live source that stops delivering is reopened with exponential
backoff. Only ``run`` executes on the capture thread; every other method is a
command posted from the controlling thread.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from rtseg.core.errors import RtsegError, SourceError
from rtseg.pipeline.callbacks import END_OF_STREAM, Callbacks
from rtseg.pipeline.mailbox import Mailbox
from rtseg.pipeline.sources import Source, open_source
from rtseg.pipeline.stats import PipelineStats

log = logging.getLogger("rtseg.pipeline")

#: A file playing behind its schedule by more than this restarts the schedule
#: instead of bursting through the backlog.
MAX_LAG_S = 0.25
#: Reconnection delays for a live source that stopped delivering (seconds).
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 8.0


def reconnect_delays(first: float = RECONNECT_FIRST_S, cap: float = RECONNECT_MAX_S) -> Iterator[float]:
    """Exponential backoff: first, 2*first, 4*first... capped at ``cap`` (forever)."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2.0, cap)


class CaptureThread(threading.Thread):
    """Reads one source into the mailbox.

    ``run`` is the capture thread; every other method is called from the
    controlling thread and only posts a command under ``_cond``.
    """

    def __init__(self, spec: str | int | Source, mailbox: Mailbox[Any], stats: PipelineStats,
                 callbacks: Callbacks, epochs: itertools.count[int], *, mode: str = "realtime",
                 loop: bool = False, paused: bool = False, source_opts: dict[str, Any] | None = None,
                 hold: threading.Event | None = None) -> None:
        super().__init__(name="rtseg-capture", daemon=True)
        self.spec = spec
        self.mailbox = mailbox
        self.stats = stats
        # this thread's own view: silent once it is asked to stop (replaced or stopped)
        self.cb = callbacks.gated(lambda: self._stop_req)
        self.epochs = epochs
        self.mode = mode
        self.loop = loop
        self.source_opts = dict(source_opts or {})
        self.source: Source | None = None
        self.opened = threading.Event()  # set once opening succeeded or failed
        self.finished = threading.Event()  # set after the source is closed
        self._cond = threading.Condition()
        self._stop_req = False
        self._paused = paused
        self._steps = 1 if paused else 0  # a paused start still shows its first frame
        self._seek_to: int | None = None
        # A file, folder or synthetic source waits at its first frame until this
        # event is set (the model loaded or failed), so the frames played while
        # a model compiles are not dropped unseen. Live sources ignore it.
        self._hold = hold

    # -- commands (controlling thread) -----------------------------------------------
    def request_stop(self) -> None:
        with self._cond:
            self._stop_req = True
            self._cond.notify_all()
        self.mailbox.wake_all()  # a blocking put() re-checks ``_interrupted``

    def set_paused(self, paused: bool) -> None:
        with self._cond:
            self._paused = paused
            self._cond.notify_all()

    def request_step(self) -> None:
        with self._cond:
            self._paused = True
            self._steps += 1
            self._cond.notify_all()

    def set_hold(self, hold: threading.Event | None) -> None:
        """Controlling thread: replace the event playback waits for (None: play now)."""
        with self._cond:
            self._hold = hold
            self._cond.notify_all()

    def wake(self) -> None:
        """Any thread: re-check the hold event (called after it is set)."""
        with self._cond:
            self._cond.notify_all()

    def request_seek(self, index: int) -> None:
        with self._cond:
            self._seek_to = index
            self._cond.notify_all()
        self.mailbox.wake_all()

    def _interrupted(self) -> bool:
        # read without the lock: a stale read only delays the reaction by one wake-up
        return self._stop_req or self._seek_to is not None

    # -- the thread ---------------------------------------------------------------------
    def run(self) -> None:
        try:
            if isinstance(self.spec, Source):
                source = self.spec
            else:
                source = open_source(self.spec, **self.source_opts)
        except Exception as exc:  # noqa: BLE001 - reported, the pipeline stays usable
            self.cb.error(exc, f"could not open source {self.spec!r}")
            self.opened.set()
            self.finished.set()
            return
        self.source = source
        self.opened.set()
        try:
            self.cb.status(f"playing {source.describe()}")
            self._run(source)
        except Exception as exc:  # noqa: BLE001 - reported, the pipeline stays usable
            self.cb.error(exc, f"reading {source.describe()} failed")
            self.cb.status(f"capture stopped: {source.describe()}")
        finally:
            source.close()
            self.finished.set()

    def _run(self, source: Source) -> None:
        epoch = next(self.epochs)
        live = source.is_live
        fps = source.fps
        anchor: float | None = None  # perf_counter() the pacing schedule started at
        k = 0  # frames read since the anchor
        ended = False
        while True:
            # ---- commands: stop, seek, pause, step ----
            seek_to: int | None = None
            with self._cond:
                while True:
                    if self._stop_req:
                        return
                    if self._seek_to is not None:
                        # a slider drag posts many seeks; only the latest is done
                        seek_to, self._seek_to = self._seek_to, None
                        break
                    held = self._hold is not None and not self._hold.is_set()
                    if ended or (not live and (held or (self._paused and self._steps == 0))):
                        self._cond.wait()
                        anchor = None  # the schedule restarts after any wait
                        continue
                    break
                stepping = self._paused and self._steps > 0
                if stepping and seek_to is None:
                    self._steps -= 1
                # a paused camera keeps being read (its driver queue must not go
                # stale) but its frames are thrown away
                discard = self._paused and not stepping
            if seek_to is not None:
                # outside the lock: decoding up to the target may take a while and
                # the controlling thread must not wait for it
                try:
                    source.seek(seek_to)
                except RtsegError as exc:
                    self.cb.error(exc, "seek failed")
                    continue
                self.mailbox.clear()
                epoch, anchor, ended = next(self.epochs), None, False
                with self._cond:
                    if self._paused:
                        self._steps = max(self._steps, 1)  # show the frame sought to
                continue

            # ---- pacing: a file in realtime mode plays at its own fps ----
            if self.mode == "realtime" and not live and not stepping:
                now = time.perf_counter()
                if anchor is None or now - (anchor + k / fps) > MAX_LAG_S:
                    anchor, k = now, 0
                due = anchor + k / fps
                if due > now:
                    with self._cond:
                        # sleeping until the due time, woken early by any command
                        if self._cond.wait_for(lambda: self._stop_req or self._seek_to is not None
                                               or self._paused, timeout=due - now):
                            anchor = None
                            continue
                k += 1

            # ---- read ----
            frame = source.read()
            if frame is None:
                if live:
                    if not self._reconnect(source):
                        return
                    epoch, anchor = next(self.epochs), None
                    continue
                if self.loop and (source.frame_count or 0) > 0:
                    source.seek(0)
                    epoch, anchor = next(self.epochs), None
                    continue
                self.cb.status(f"end of {source.describe()}")
                # Waits until the last frame is taken, so END_OF_STREAM never
                # replaces (drops) it; on_end then comes after its result.
                self.mailbox.put(END_OF_STREAM, block=True, cancelled=self._interrupted)
                ended = True
                continue
            if discard:
                continue
            frame.epoch = epoch
            self.stats.note_captured(frame)
            before = self.mailbox.dropped
            # only this thread puts, so the difference is exactly this put's drop
            self.mailbox.put(frame, block=(self.mode == "benchmark" and not live), cancelled=self._interrupted)
            dropped = self.mailbox.dropped - before
            if dropped:
                self.stats.note_capture_drops(dropped)

    def _reconnect(self, source: Source) -> bool:
        """Reopen a live source with exponential backoff until it works or stop is requested."""
        for delay in reconnect_delays():
            self.cb.status(f"{source.describe()} stopped delivering frames; reconnecting in {delay:.1f} s")
            with self._cond:
                if self._cond.wait_for(lambda: self._stop_req, timeout=delay):
                    return False
            try:
                source.reopen()
            except SourceError as exc:
                log.info("reconnect failed: %s", exc)
                continue
            self.cb.status(f"reconnected to {source.describe()}")
            return True
        return False  # unreachable: the delays never end
