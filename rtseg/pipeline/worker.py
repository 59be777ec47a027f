"""The live pipeline's facade: ``Pipeline`` runs a capture thread and an inference thread.

The threads live in their own modules (``rtseg.pipeline.capture``,
``rtseg.pipeline.inference``); callbacks and markers in
``rtseg.pipeline.callbacks``; this module is the small API the GUI, the
headless runner and the benchmark drive.

::

    capture thread                       inference thread
    source.read() -> Frame  --mailbox-->  resize -> backend.infer -> smoothing -> Result
                                                                             -> on_result(result)

Threads and who calls what:

* The **controlling thread** (the GUI thread, or a CLI's main thread) calls
  every public ``Pipeline`` method. They never block on I/O or inference;
  only ``stop()`` (and the switches, which stop one thread) wait for joins,
  bounded by ``stop_timeout``.
* The **capture thread** opens the source (opening a camera or stream may take
  seconds), reads, paces, seeks and closes it. It calls ``on_status``,
  ``on_error``.
* The **inference thread** creates the backend from ``backend_factory`` (on GPU
  the thread that owns the CUDA context must create it), runs it, and calls
  ``on_result``, ``on_end``, ``on_status``, ``on_error``.

So **callbacks run on the pipeline's threads, never on the controlling
thread**: a Qt GUI must re-emit them as signals with a queued connection and do
its work in the slot. Callbacks must return quickly (a callback that takes
10 ms takes 10 ms off every frame); an exception in a callback is reported to
``on_error`` and otherwise ignored.

A thread that was asked to stop or was replaced by ``switch_model`` /
``switch_source`` reports nothing more: a model that finishes loading (or
fails) after the user switched away never shows its status or errors.

Every error reaches ``on_error`` as an ``RtsegError`` with a one-line message;
nothing here kills the process. A model that fails to load leaves the
pipeline running without inference, ready for ``switch_model``; a source that
fails to open leaves it ready for ``switch_source``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any, Literal

from rtseg.core.errors import RtsegError, SourceError, UserInputError
from rtseg.core.frames import Result
from rtseg.core.meta import ModelMeta
from rtseg.pipeline.callbacks import END_OF_STREAM, BackendFactory, Callbacks
from rtseg.pipeline.capture import MAX_LAG_S, RECONNECT_FIRST_S, RECONNECT_MAX_S, CaptureThread, reconnect_delays
from rtseg.pipeline.inference import InferenceThread
from rtseg.pipeline.mailbox import Mailbox
from rtseg.pipeline.smoothing import MAX_K
from rtseg.pipeline.sources import Source
from rtseg.pipeline.stats import PipelineStats
from rtseg.runtime.base import BackendInfo

# The threads' names stay importable from here (the module held them all before it was split).
__all__ = ["Pipeline", "Mode", "MODES", "BackendFactory", "Callbacks", "CaptureThread", "InferenceThread",
           "END_OF_STREAM", "MAX_LAG_S", "RECONNECT_FIRST_S", "RECONNECT_MAX_S", "reconnect_delays"]

#: ``realtime``: files play at their fps, a slow model drops frames (the GUI default).
#: ``fast``: files are read as fast as possible, a slow model drops frames.
#: ``benchmark``: files are read as fast as the model takes them; nothing is dropped.
#: Live sources always deliver at the sender's pace and always drop stale frames.
Mode = Literal["realtime", "fast", "benchmark"]
MODES: tuple[str, ...] = ("realtime", "fast", "benchmark")


class Pipeline:
    """Capture + inference threads behind one small API, for the GUI and the headless runner.

    Every public method is called from one controlling thread (the GUI thread);
    the callbacks come from the pipeline's own threads (module docstring)::

        p = Pipeline(on_result=show, on_error=report, on_status=status, on_end=done)
        p.start("clip.mp4", lambda: create_backend("onnxruntime", "bisenetv2.onnx"))
        ...
        p.switch_model(lambda: create_backend("openvino", "stdc1.onnx"))
        p.stop()
    """

    def __init__(self, on_result: Callable[[Result], None] | None = None,
                 on_error: Callable[[RtsegError], None] | None = None,
                 on_status: Callable[[str], None] | None = None,
                 on_end: Callable[[], None] | None = None, *,
                 stats: PipelineStats | None = None, stop_timeout: float = 1.0) -> None:
        self.callbacks = Callbacks(on_result, on_error, on_status, on_end)
        self.stats = stats if stats is not None else PipelineStats()
        self.stop_timeout = stop_timeout
        self.mailbox: Mailbox[Any] = Mailbox()
        self._capture: CaptureThread | None = None
        self._inference: InferenceThread | None = None
        self._epochs = itertools.count()
        self._serials = itertools.count()
        self._mode: str = "realtime"
        self._loop = False
        self._paused = False
        self._smoothing = 0

    # -- life cycle ---------------------------------------------------------------------
    def start(self, source: str | int | Source, backend_factory: BackendFactory, *,
              mode: str = "realtime", loop: bool = False, smoothing: int = 0, paused: bool = False,
              **source_opts: Any) -> None:
        """Open ``source`` and load the model, each on its own thread; returns at once.

        A file, folder or synthetic source waits at its first frame until the
        model has loaded (or failed), so no frame is dropped while it compiles;
        a camera or stream is read at once.

        ``source``: anything ``open_source`` takes, or an open ``Source`` (the
        pipeline then owns it and closes it). ``backend_factory``: a
        zero-argument callable returning a ``Backend``; it is called on the
        inference thread. ``mode``: see ``Mode``. ``loop``: files restart at the
        end. ``smoothing``: hysteresis frames (0 = off). ``paused``: start
        paused showing the first frame. ``source_opts`` go to ``open_source``.
        Failures to open or load arrive through ``on_error``.
        """
        if self.running:
            raise UserInputError("the pipeline is already running; use switch_source/switch_model or stop() first")
        if mode not in MODES:
            raise UserInputError(f"unknown pipeline mode {mode!r}; choose one of {', '.join(MODES)}")
        if not callable(backend_factory):
            raise UserInputError("backend_factory must be a callable that returns a Backend")
        self._check_k(smoothing)
        self._mode, self._loop, self._paused, self._smoothing = mode, loop, paused, smoothing
        self.mailbox.reopen()
        self.mailbox.blocking = False
        self.stats.reset()
        self._start_inference(backend_factory)
        self._start_capture(source, source_opts)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop both threads, release the source and the backend. Idempotent.

        Returns True when every thread ended within ``timeout`` seconds
        (default ``stop_timeout``, 1 s). A thread stuck in a driver call (a
        stream read waiting for its network timeout, a model still loading) is
        a daemon: it ends by itself later and publishes no more results.
        """
        deadline = time.monotonic() + (self.stop_timeout if timeout is None else timeout)
        cap, inf = self._capture, self._inference
        self._capture = self._inference = None
        for t in (cap, inf):
            if t is not None:
                t.request_stop()
        self.mailbox.close()
        ok = True
        for t in (cap, inf):
            if t is not None:
                t.join(max(0.0, deadline - time.monotonic()))
                ok = ok and not t.is_alive()
        return ok

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- playback control (files, folders, synthetic) -----------------------------------
    def pause(self) -> None:
        """Stop delivering new frames; the last result stays the newest."""
        self._paused = True
        if self._capture is not None:
            self._capture.set_paused(True)

    def resume(self) -> None:
        self._paused = False
        if self._capture is not None:
            self._capture.set_paused(False)

    def step(self) -> None:
        """Pause (if playing) and deliver exactly one more frame. Files, folders and synthetic only."""
        self._require_seekable("stepping")
        self._paused = True
        assert self._capture is not None
        self._capture.request_step()

    def seek(self, index: int) -> None:
        """Continue from frame ``index`` (when paused, that frame is shown). Files and folders only.

        Raises ``SourceError`` at once for a live source or an index outside the file.
        """
        source = self._require_seekable("seeking")
        source._check_seek(index)
        assert self._capture is not None
        self._capture.request_seek(int(index))

    # -- switching --------------------------------------------------------------------------
    def switch_source(self, source: str | int | Source, **source_opts: Any) -> bool:
        """Replace the source; the model keeps running. Returns False if the old capture
        thread did not end within ``stop_timeout`` (it is abandoned and ends by itself)."""
        if self._inference is None:
            raise UserInputError("the pipeline is not running; call start() first")
        ok = self._stop_thread(self._capture)
        self.mailbox.clear()
        self.stats.reset()
        self._start_capture(source, source_opts)
        return ok

    def switch_model(self, backend_factory: BackendFactory) -> bool:
        """Replace the model/backend; the source keeps playing. Returns False if the old
        inference thread did not end within ``stop_timeout``."""
        if self._capture is None and self._inference is None:
            raise UserInputError("the pipeline is not running; call start() first")
        if not callable(backend_factory):
            raise UserInputError("backend_factory must be a callable that returns a Backend")
        ok = self._stop_thread(self._inference)
        self.stats.reset()
        if self._capture is not None:
            # the source keeps playing while the new model loads (unlike start())
            self._capture.set_hold(None)
        self._start_inference(backend_factory)
        return ok

    def set_smoothing(self, k: int) -> None:
        """Hysteresis frames for temporal smoothing (0 or 1 = off); applies from the next frame."""
        self._check_k(k)
        self._smoothing = k
        if self._inference is not None:
            self._inference.smoothing_k = k

    # -- state (controlling thread) ---------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._capture is not None or self._inference is not None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def smoothing(self) -> int:
        return self._smoothing

    @property
    def source(self) -> Source | None:
        """The open source once the capture thread opened it (for ``describe()``, ``fps``,
        ``frame_count``, ``is_live``; do not read from it: the capture thread owns it)."""
        return self._capture.source if self._capture is not None else None

    @property
    def backend_info(self) -> BackendInfo | None:
        return self._inference.backend_info if self._inference is not None else None

    @property
    def meta(self) -> ModelMeta | None:
        return self._inference.meta if self._inference is not None else None

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the source is open and the model loaded (or either failed). For
        scripts and tests; a GUI waits for ``on_status``/``on_error`` instead."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for ev in ([self._capture.opened] if self._capture else []) + \
                  ([self._inference.loaded] if self._inference else []):
            if not ev.wait(None if deadline is None else max(0.0, deadline - time.monotonic())):
                return False
        return True

    # -- internals ---------------------------------------------------------------------------
    def _start_capture(self, source: str | int | Source, source_opts: dict[str, Any]) -> None:
        # A file waits at its first frame until the model is loaded (see CaptureThread).
        hold = self._inference.loaded if self._inference is not None else None
        self._capture = CaptureThread(source, self.mailbox, self.stats, self.callbacks, self._epochs,
                                      mode=self._mode, loop=self._loop, paused=self._paused,
                                      source_opts=source_opts, hold=hold)
        self._capture.start()

    def _start_inference(self, factory: BackendFactory) -> None:
        self._inference = InferenceThread(factory, self.mailbox, self.stats, self.callbacks,
                                          self._serials, self._smoothing, on_loaded=self._wake_capture,
                                          fill_wait=self._mode == "benchmark")
        self._inference.start()

    def _wake_capture(self) -> None:
        # Inference thread, right after the model loaded or failed: a capture
        # holding at its first frame re-checks its hold event. A capture started
        # after this call sees the event already set and does not wait.
        cap = self._capture
        if cap is not None:
            cap.wake()

    def _stop_thread(self, t: CaptureThread | InferenceThread | None) -> bool:
        if t is None:
            return True
        t.request_stop()
        t.join(self.stop_timeout)
        return not t.is_alive()

    def _require_seekable(self, what: str) -> Source:
        if self._capture is None:
            raise UserInputError(f"{what} needs a running pipeline; call start() first")
        self._capture.opened.wait(self.stop_timeout)
        source = self._capture.source
        if source is None:
            raise SourceError(f"{what} needs an open source; the source is still opening or failed to open")
        if source.is_live:
            raise SourceError(f"{source.describe()} is live: {what} works only on files, folders "
                              "and the synthetic source")
        return source

    @staticmethod
    def _check_k(k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_K:
            raise UserInputError(f"smoothing must be an integer number of frames in 0..{MAX_K}, got {k!r}")
