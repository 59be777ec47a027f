"""What the pipeline's threads report, and the markers they pass each other.

``Callbacks`` holds the four user callbacks. Each pipeline thread reports
through its own *gated* view (``Callbacks.gated``): once that thread has been
asked to stop - by ``stop()``, or because ``switch_model``/``switch_source``
replaced it - nothing it still does (a model that finishes loading late, an
error while releasing an old backend, an end-of-file status) reaches the user
any more. Only the thread that is current speaks.

Callbacks run on the pipeline's threads (see ``rtseg.pipeline.worker``); they
must return quickly, and an exception in one is reported to ``on_error`` and
otherwise ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from rtseg.core.errors import RtsegError
from rtseg.core.frames import Result
from rtseg.runtime.base import Backend

log = logging.getLogger("rtseg.pipeline")

BackendFactory = Callable[[], Backend]


class _EndOfStream:
    """Put into the mailbox after a file's last frame: the inference thread calls on_end
    once every frame before it has a result."""

    def __repr__(self) -> str:
        return "<end of stream>"


END_OF_STREAM = _EndOfStream()


@dataclass(frozen=True)
class Callbacks:
    """What the pipeline reports. See the module docstring for the threads they run on."""

    on_result: Callable[[Result], None] | None = None
    on_error: Callable[[RtsegError], None] | None = None
    on_status: Callable[[str], None] | None = None
    on_end: Callable[[], None] | None = None
    #: True once the reporting thread was asked to stop: from then on it reports nothing
    stopped: Callable[[], bool] | None = None

    def gated(self, stopped: Callable[[], bool]) -> Callbacks:
        """The same callbacks, silenced once ``stopped()`` is true (one view per thread)."""
        return replace(self, stopped=stopped)

    def _silenced(self) -> bool:
        return self.stopped is not None and self.stopped()

    def result(self, r: Result) -> None:
        self._call(self.on_result, r)

    def end(self) -> None:
        self._call(self.on_end)

    def status(self, text: str) -> None:
        if self._silenced():
            log.debug("(stopped thread) %s", text)
            return
        log.info("%s", text)
        self._call(self.on_status, text)

    def error(self, exc: BaseException, what: str) -> None:
        """Report ``exc``; anything that is not an RtsegError is a bug, wrapped and logged with its traceback."""
        if isinstance(exc, RtsegError):
            err = exc
        else:
            log.error("%s", what, exc_info=exc)
            first_line = (str(exc).strip().splitlines() or [""])[0]
            err = RtsegError(f"{what}: {type(exc).__name__}: {first_line}")
        if self._silenced():
            log.info("(stopped thread, not reported) %s", err)
            return
        if self.on_error is None:
            log.error("%s", err)
            return
        try:
            self.on_error(err)
        except Exception:  # noqa: BLE001 - the error reporter itself failed; only the log is left
            log.exception("on_error callback failed")

    def _call(self, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None or self._silenced():
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a broken callback must not stop the pipeline
            self.error(exc, f"callback {getattr(fn, '__name__', fn)!r} failed")
