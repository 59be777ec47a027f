"""Pipeline callbacks -> Qt signals, delivered on the GUI thread.

The pipeline calls ``on_result``/``on_error``/``on_status``/``on_end`` on its
own capture and inference threads. Widgets may only be touched on the GUI
thread, so these callbacks do nothing but emit a signal; every connection
made through ``connect`` is ``Qt.ConnectionType.QueuedConnection``, so the
slot runs later, on the thread that owns the receiver (the GUI thread), in
the order the callbacks happened.

Emitting is cheap (one posted event), so the inference thread never waits on
the GUI. A slow GUI cannot make results pile up unboundedly in practice
because the result slot only stores a reference (the view keeps the newest).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PyQt6.QtCore import QObject, Qt, pyqtSignal

from rtseg.core.errors import RtsegError
from rtseg.core.frames import Result

QUEUED = Qt.ConnectionType.QueuedConnection


class PipelineBridge(QObject):
    """Create on the GUI thread; pass ``callbacks()`` to ``Pipeline``."""

    result = pyqtSignal(object)  # Result
    error = pyqtSignal(object)  # RtsegError
    status = pyqtSignal(str)
    ended = pyqtSignal()

    # -- pipeline threads ----------------------------------------------------------------
    def _on_result(self, r: Result) -> None:
        self.result.emit(r)

    def _on_error(self, exc: RtsegError) -> None:
        self.error.emit(exc)

    def _on_status(self, text: str) -> None:
        self.status.emit(text)

    def _on_end(self) -> None:
        self.ended.emit()

    def callbacks(self) -> dict[str, Callable[..., None]]:
        """Keyword arguments for ``Pipeline(...)``."""
        return {"on_result": self._on_result, "on_error": self._on_error,
                "on_status": self._on_status, "on_end": self._on_end}

    # -- GUI thread --------------------------------------------------------------------------
    def connect_slots(self, *, result: Callable[[Any], None] | None = None, error: Callable[[Any], None] | None = None,
                status: Callable[[str], None] | None = None, ended: Callable[[], None] | None = None) -> None:
        """Connect slots with a queued connection (the only safe kind across threads)."""
        for signal, slot in ((self.result, result), (self.error, error), (self.status, status),
                             (self.ended, ended)):
            if slot is not None:
                signal.connect(slot, QUEUED)  # type: ignore[call-arg]  # the stubs omit the type argument
