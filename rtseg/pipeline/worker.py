"""The live pipeline: a capture thread, an inference thread and the ``Pipeline`` facade.

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

Every error reaches ``on_error`` as an ``RtsegError`` with a one-line message;
nothing here kills the process. A model that fails to load leaves the
pipeline running without inference, ready for ``switch_model``; a source that
fails to open leaves it ready for ``switch_source``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from rtseg.core.errors import BackendError, RtsegError, SourceError, UserInputError
from rtseg.core.frames import Frame, Result
from rtseg.core.meta import ModelMeta
from rtseg.pipeline.mailbox import Mailbox
from rtseg.pipeline.smoothing import MAX_K, HysteresisSmoother, flicker
from rtseg.pipeline.sources import Source, open_source
from rtseg.pipeline.stats import PipelineStats
from rtseg.runtime.base import Backend, BackendInfo

log = logging.getLogger(__name__)

#: ``realtime``: files play at their fps, a slow model drops frames (the GUI default).
#: ``fast``: files are read as fast as possible, a slow model drops frames.
#: ``benchmark``: files are read as fast as the model takes them; nothing is dropped.
#: Live sources always deliver at the sender's pace and always drop stale frames.
Mode = Literal["realtime", "fast", "benchmark"]
MODES: tuple[str, ...] = ("realtime", "fast", "benchmark")

#: A file playing behind its schedule by more than this restarts the schedule
#: instead of bursting through the backlog.
MAX_LAG_S = 0.25
#: Reconnection delays for a live source that stopped delivering (seconds).
RECONNECT_FIRST_S = 0.5
RECONNECT_MAX_S = 8.0

BackendFactory = Callable[[], Backend]


class _EndOfStream:
    """Put into the mailbox after a file's last frame: the inference thread calls on_end
    once every frame before it has a result."""

    def __repr__(self) -> str:
        return "<end of stream>"


END_OF_STREAM = _EndOfStream()


def reconnect_delays(first: float = RECONNECT_FIRST_S, cap: float = RECONNECT_MAX_S) -> Iterator[float]:
    """Exponential backoff: first, 2*first, 4*first... capped at ``cap`` (forever)."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2.0, cap)


@dataclass
class Callbacks:
    """What the pipeline reports. See the module docstring for the threads they run on."""

    on_result: Callable[[Result], None] | None = None
    on_error: Callable[[RtsegError], None] | None = None
    on_status: Callable[[str], None] | None = None
    on_end: Callable[[], None] | None = None

    def result(self, r: Result) -> None:
        self._call(self.on_result, r)

    def end(self) -> None:
        self._call(self.on_end)

    def status(self, text: str) -> None:
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
        if self.on_error is None:
            log.error("%s", err)
            return
        try:
            self.on_error(err)
        except Exception:  # noqa: BLE001 - the error reporter itself failed; only the log is left
            log.exception("on_error callback failed")

    def _call(self, fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is None:
            return
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a broken callback must not stop the pipeline
            self.error(exc, f"callback {getattr(fn, '__name__', fn)!r} failed")


# ----------------------------------------------------------------------------------------
# capture thread
# ----------------------------------------------------------------------------------------

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
        self.cb = callbacks
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


# ----------------------------------------------------------------------------------------
# inference thread
# ----------------------------------------------------------------------------------------

class InferenceThread(threading.Thread):
    """Owns one backend: takes the newest frame, runs the model, publishes ``Result``s.

    ``run`` is the inference thread; ``request_stop`` is called from the
    controlling thread; ``smoothing_k`` is read here every frame and written by
    the controlling thread (a plain attribute: the GIL makes the swap atomic).
    """

    def __init__(self, factory: BackendFactory, mailbox: Mailbox[Any], stats: PipelineStats,
                 callbacks: Callbacks, serials: itertools.count[int], smoothing_k: int = 0,
                 on_loaded: Callable[[], None] | None = None) -> None:
        super().__init__(name="rtseg-inference", daemon=True)
        self.factory = factory
        self.mailbox = mailbox
        self.stats = stats
        self.cb = callbacks
        self.serials = serials
        self.smoothing_k = smoothing_k
        self.loaded = threading.Event()  # set once loading succeeded or failed
        self._on_loaded = on_loaded  # called on this thread right after ``loaded`` is set
        self.finished = threading.Event()
        self.backend_info: BackendInfo | None = None
        self.meta: ModelMeta | None = None
        self.input_shape: tuple[int, int, int] | None = None
        self._stop_event = threading.Event()

    def request_stop(self) -> None:
        """Controlling thread: finish the frame in hand, release the backend, exit."""
        self._stop_event.set()
        self.mailbox.wake_all()

    def run(self) -> None:
        try:
            backend = self.factory()
            if not isinstance(backend, Backend):
                raise BackendError(f"the backend factory returned {type(backend).__name__}, not a Backend")
            backend.activate()
        except Exception as exc:  # noqa: BLE001 - reported; the pipeline waits for switch_model
            self.cb.error(exc, "the model could not be loaded")
            self.cb.status("no model loaded: choose another model or backend")
            self._mark_loaded()
            self.finished.set()
            return
        try:
            n, h, w = backend.input_shape
            if n != 1:
                raise BackendError(f"the live pipeline runs one frame at a time but this artifact takes "
                                   f"batch {n}; export it with batch 1")
            self.input_shape = (n, h, w)
            self.meta = backend.meta
            self.backend_info = backend.info()
            self._mark_loaded()
            self.cb.status(f"model {self.meta.model} {w}x{h} on {self.backend_info.backend} "
                           f"{self.backend_info.device} ({self.backend_info.precision})")
            self._loop(backend, h, w)
        except Exception as exc:  # noqa: BLE001 - reported; the pipeline waits for switch_model
            self.cb.error(exc, "inference failed")
            self.cb.status("inference stopped: choose another model or backend")
        finally:
            self._mark_loaded()
            try:
                backend.deactivate()
            except Exception as exc:  # noqa: BLE001
                self.cb.error(exc, "releasing the backend failed")
            self.finished.set()

    def _mark_loaded(self) -> None:
        if self.loaded.is_set():
            return
        self.loaded.set()
        if self._on_loaded is not None:
            self._on_loaded()

    def _loop(self, backend: Backend, h: int, w: int) -> None:
        meta = self.meta
        assert meta is not None
        smoother: HysteresisSmoother | None = None
        epoch: int | None = None
        prev_raw: np.ndarray | None = None
        prev_shown: np.ndarray | None = None
        batch = np.empty((1, h, w, 3), np.uint8)  # reused: resize writes straight into it
        while not self._stop_event.is_set():
            item = self.mailbox.take(cancelled=self._stop_event.is_set)
            if item is None:
                return
            if item is END_OF_STREAM:
                self.cb.end()
                continue
            frame: Frame = item
            t_start = time.perf_counter()
            image = frame.image
            if image.shape[:2] == (h, w):
                batch[0] = image
            else:
                cv2.resize(image, (w, h), dst=batch[0], interpolation=cv2.INTER_LINEAR)
            t_pre = time.perf_counter()
            # copied: a backend may reuse its output buffer, and the result outlives this call
            raw = backend.infer(batch)[0].copy()
            t_inf = time.perf_counter()

            k = self.smoothing_k
            if frame.epoch != epoch:
                epoch, prev_raw, prev_shown = frame.epoch, None, None
                if smoother is not None:
                    smoother.reset()
            if k > 1:
                if smoother is None or smoother.k != k:
                    smoother = HysteresisSmoother(k)
                    prev_shown = None
                shown = smoother.update(raw)
            else:
                smoother, shown = None, raw
            f_raw = flicker(prev_raw, raw) if prev_raw is not None else None
            f_shown = flicker(prev_shown, shown) if prev_shown is not None else None
            prev_raw, prev_shown = raw, shown
            t_smooth = time.perf_counter()

            result = Result(
                frame=frame, labels=shown, model_size=(h, w), meta=meta, serial=next(self.serials),
                t_start=t_start, preprocess_s=t_pre - t_start, infer_s=t_inf - t_pre,
                smoothing_s=t_smooth - t_inf, t_result=time.perf_counter(),
                flicker_raw=f_raw, flicker=f_shown, smoothing_k=k if k > 1 else 0,
            )
            if self._stop_event.is_set():
                return  # stopped (or replaced) while inferring: publish nothing more
            self.stats.note_result(result)
            self.cb.result(result)


# ----------------------------------------------------------------------------------------
# facade
# ----------------------------------------------------------------------------------------

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
                                          self._serials, self._smoothing, on_loaded=self._wake_capture)
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
