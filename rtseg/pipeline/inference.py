"""The inference thread: owns one backend, turns frames into ``Result``s.

::

    mailbox.take() -> resize to the model input -> backend.submit ... backend.collect
                   -> temporal smoothing -> Result -> stats, on_result

The backend is created by the factory *on this thread* (on GPU the thread
that owns the CUDA context must create it) and never touched by another.

When the backend offers the asynchronous protocol (``max_in_flight`` 2: CUDA
double buffering, OpenVINO async requests) the thread keeps up to two frames
in flight: it submits frame n+1 before collecting frame n whenever n+1 is
ready - at once in the display modes (a frame is never held back waiting for
the next one), within about one inference time in benchmark mode (where the
capture thread is decoding the next frame while this one runs) - so the
upload, the resize and the publication of one frame overlap the inference of
the other. A synchronous backend (``max_in_flight`` 1) runs one frame at a
time exactly as ``infer`` would. Results are published in capture order
either way.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtseg.core.errors import BackendError
from rtseg.core.frames import Frame, Result, resize_to_model
from rtseg.core.meta import ModelMeta
from rtseg.pipeline.callbacks import END_OF_STREAM, BackendFactory, Callbacks
from rtseg.pipeline.mailbox import Mailbox
from rtseg.pipeline.smoothing import HysteresisSmoother, flicker
from rtseg.pipeline.stats import PipelineStats
from rtseg.runtime.base import Backend, BackendInfo

#: Frames the thread keeps in flight at most: two for double buffering, three for OpenVINO's two
#: streams in benchmark mode (a third frame queued keeps both streams busy).
MAX_IN_FLIGHT = 3


@dataclass
class _InFlight:
    """A frame submitted to the backend, waiting for its labels."""

    frame: Frame
    t_start: float  # taken from the mailbox
    t_submit: float  # preprocessing done, submit called


class InferenceThread(threading.Thread):
    """Owns one backend: takes the newest frame, runs the model, publishes ``Result``s.

    ``run`` is the inference thread; ``request_stop`` is called from the
    controlling thread; ``smoothing_k`` is read here every frame and written by
    the controlling thread (a plain attribute: the GIL makes the swap atomic).
    """

    def __init__(self, factory: BackendFactory, mailbox: Mailbox[Any], stats: PipelineStats,
                 callbacks: Callbacks, serials: itertools.count[int], smoothing_k: int = 0,
                 on_loaded: Callable[[], None] | None = None, *, fill_wait: bool = False) -> None:
        super().__init__(name="rtseg-inference", daemon=True)
        self.factory = factory
        self.mailbox = mailbox
        self.stats = stats
        self._stop_event = threading.Event()
        # this thread's own view: silent once it is asked to stop (a replaced model that
        # finishes loading late reports nothing)
        self.cb = callbacks.gated(self._stop_event.is_set)
        self.serials = serials
        self.smoothing_k = smoothing_k
        #: benchmark mode: with a frame in flight, wait up to one inference time for the next
        self.fill_wait = fill_wait
        self.loaded = threading.Event()  # set once loading succeeded or failed
        self._on_loaded = on_loaded  # called on this thread right after ``loaded`` is set
        self.finished = threading.Event()
        self.backend_info: BackendInfo | None = None
        self.meta: ModelMeta | None = None
        self.input_shape: tuple[int, int, int] | None = None
        #: the backend once created (read by tests and the facade; owned by this thread)
        self.backend: Backend | None = None

    @property
    def stop_requested(self) -> bool:
        return self._stop_event.is_set()

    def request_stop(self) -> None:
        """Controlling thread: finish the frame in hand, release the backend, exit."""
        self._stop_event.set()
        self.mailbox.wake_all()

    def run(self) -> None:
        try:
            backend = self.factory()
            if not isinstance(backend, Backend):
                raise BackendError(f"the backend factory returned {type(backend).__name__}, not a Backend")
            self.backend = backend
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

    # -- the loop ---------------------------------------------------------------------------
    def _loop(self, backend: Backend, h: int, w: int) -> None:
        depth = max(1, min(MAX_IN_FLIGHT, backend.max_in_flight))
        stop = self._stop_event.is_set
        # Reused for every frame: resize writes straight into it, and submit copies it
        # (the protocol's rule), so one buffer serves two frames in flight.
        batch = np.empty((1, h, w, 3), np.uint8)
        pending: deque[_InFlight] = deque()
        publisher = _Publisher(self, (h, w))
        last_in_flight = 0.0  # how long the previous frame took from submit to labels
        while not stop():
            if len(pending) < depth:
                if not pending:
                    wait: float | None = None  # nothing in flight: wait for the next frame
                elif self.fill_wait:
                    wait = last_in_flight
                else:
                    wait = 0.0  # take a frame only if one is already waiting
                item = self.mailbox.take(timeout=wait, cancelled=stop)
                if item is END_OF_STREAM:
                    while pending and not stop():  # every frame before it gets its result first
                        last_in_flight = publisher.publish(pending.popleft(), backend)
                    self.cb.end()
                    continue
                if item is not None:
                    frame: Frame = item
                    t_start = time.perf_counter()
                    resize_to_model(frame.image, (h, w), out=batch[0])
                    t_submit = time.perf_counter()
                    backend.submit(batch)
                    pending.append(_InFlight(frame, t_start, t_submit))
                    continue
                if not pending:
                    return  # closed or stopped
            if stop():
                return
            last_in_flight = publisher.publish(pending.popleft(), backend)


class _Publisher:
    """Collects one frame's labels and publishes its ``Result`` (inference thread only).

    Holds the temporal state: the smoother and the previous label maps for the
    flicker figure, restarted whenever the frames' epoch changes.
    """

    def __init__(self, thread: InferenceThread, model_size: tuple[int, int]) -> None:
        self.t = thread
        self.model_size = model_size
        self.smoother: HysteresisSmoother | None = None
        self.epoch: int | None = None
        self.prev_raw: np.ndarray | None = None
        self.prev_shown: np.ndarray | None = None

    def publish(self, job: _InFlight, backend: Backend) -> float:
        """Collect ``job``'s labels, smooth, publish; returns the frame's time in flight."""
        t = self.t
        # copied: a backend may reuse its output buffer, and the result outlives this call
        raw = backend.collect()[0].copy()
        t_inf = time.perf_counter()
        device_s = dict(backend.last_timings)
        frame = job.frame
        k = t.smoothing_k
        if frame.epoch != self.epoch:
            self.epoch, self.prev_raw, self.prev_shown = frame.epoch, None, None
            if self.smoother is not None:
                self.smoother.reset()
        if k > 1:
            if self.smoother is None or self.smoother.k != k:
                self.smoother = HysteresisSmoother(k)
                self.prev_shown = None
            shown = self.smoother.update(raw)
        else:
            self.smoother, shown = None, raw
        f_raw = flicker(self.prev_raw, raw) if self.prev_raw is not None else None
        f_shown = flicker(self.prev_shown, shown) if self.prev_shown is not None else None
        self.prev_raw, self.prev_shown = raw, shown
        t_smooth = time.perf_counter()
        meta = t.meta
        assert meta is not None
        result = Result(
            frame=frame, labels=shown, model_size=self.model_size, meta=meta, serial=next(t.serials),
            t_start=job.t_start, preprocess_s=job.t_submit - job.t_start, infer_s=t_inf - job.t_submit,
            smoothing_s=t_smooth - t_inf, t_result=time.perf_counter(),
            flicker_raw=f_raw, flicker=f_shown, smoothing_k=k if k > 1 else 0, device_s=device_s,
        )
        if not t.stop_requested:  # stopped (or replaced) while inferring: publish nothing more
            t.stats.note_result(result)
            t.cb.result(result)
        return t_inf - job.t_submit
