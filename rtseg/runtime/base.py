"""The one small lifecycle every backend shares (Polygraphy style), and its asynchronous protocol.

    with create_backend("openvino", "model.onnx", precision="f32") as be:
        labels = be.infer(frames)          # uint8 [N,H,W,3] BGR -> uint8 [N,H,W]

Synchronous use: ``infer(frames)``. Asynchronous use (what the pipeline's
inference thread does whenever ``max_in_flight`` > 1)::

    be.submit(frames_0)                    # returns once the backend owns a copy of the frames
    be.submit(frames_1)                    # up to max_in_flight submissions outstanding
    labels_0 = be.collect()                # oldest first; waits for it if still running
    be.submit(frames_2)
    labels_1 = be.collect()

``submit`` may return before the result exists (a CUDA backend's upload and
compute run on its streams; an OpenVINO backend's infer request runs on
OpenVINO's own threads), so the caller's work between ``submit`` and
``collect`` - preparing the next frame, publishing the previous result -
overlaps inference. A backend that cannot overlap keeps the default:
``max_in_flight`` is 1 and ``submit`` simply runs ``infer`` and keeps the
labels for ``collect``. Either way ``submit`` takes a copy of ``frames``
(staging upload, request input tensor, or the finished result), so the caller
may reuse its frame buffer at once. Results come back strictly in submission
order. ``deactivate`` drops whatever was not collected.

Optional logits (for parity checks; the live path never asks): ``has_logits``
says whether the artifact has a float ``logits`` output, and
``infer_with_logits`` returns ``(labels, logits)``.

Precision: every backend states, in ``info().precision``, the ``Precision``
the artifact really runs at (an INT8 Q/DQ ONNX on ONNX Runtime is ``int8``,
read from the artifact's own tag), never just what was asked for.

Threading: a backend is owned by one thread (the inference thread). ``activate``,
``infer``, ``submit``, ``collect`` and ``deactivate`` must all be called from
that thread; nothing else touches the backend's sessions, streams or buffers.
Construction reads metadata only and may happen on any thread.
"""

from __future__ import annotations

import abc
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtseg.core.errors import BackendError
from rtseg.core.meta import ModelMeta
from rtseg.core.precision import Precision


@dataclass(frozen=True)
class BackendInfo:
    """What a report needs to say about how inference ran."""

    backend: str  # "onnxruntime", "openvino", "torch", "torch-cuda", "tensorrt"
    device: str  # "CPU", "CUDA:0 (NVIDIA H100)", ...
    precision: Precision  # what the artifact really runs at (not merely what was asked)
    threads: int | None
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def precision_text(self) -> str:
        """The precision for people: e.g. ``int8 (float layers bf16)`` for an OpenVINO INT8 graph."""
        return precision_text(self.precision, self.extra)

    @property
    def schedule_text(self) -> str:
        """How frames go through, for reports: e.g. ``2 in flight, 2 streams``; empty for one at a time."""
        return schedule_text(self.extra)


def precision_text(precision: object, extra: dict[str, Any]) -> str:
    """``BackendInfo.precision_text`` of a precision and a report's ``extra`` dict."""
    rest = extra.get("float_layers")
    return str(precision) + (f" (float layers {rest})" if rest else "")


def schedule_text(extra: dict[str, Any]) -> str:
    """``BackendInfo.schedule_text`` of a report's ``extra`` dict (reports keep BackendInfo as a dict)."""
    parts = []
    if int(extra.get("requests", 1)) > 1:
        parts.append(f"{extra['requests']} in flight")
    if int(extra.get("streams", 1)) > 1:
        parts.append(f"{extra['streams']} streams")
    return ", ".join(parts)


class Backend(abc.ABC):
    """Runs the fused deploy graph: uint8 BGR frames in, uint8 class labels out."""

    #: short name used on command lines (``--backend``)
    kind: str = ""
    #: precisions this backend can be asked for; the first is its default (see ``choose_precision``)
    precisions: tuple[Precision, ...] = (Precision.F32,)

    def __init__(self) -> None:
        self._active = False
        self._in_flight = 0
        self._done: deque[np.ndarray] = deque()  # results of the synchronous default submit()
        #: device stage durations of the last collected batch (seconds), e.g. {"h2d", "compute",
        #: "d2h"} on CUDA backends; empty where the backend cannot split its time
        self.last_timings: dict[str, float] = {}

    # -- precision -----------------------------------------------------------
    @classmethod
    def choose_precision(cls, requested: str | Precision | None, artifact: Precision = Precision.F32) -> Precision:
        """The precision this backend will run an artifact tagged ``artifact`` at, when asked for
        ``requested`` (None: the default). Raises ``BackendError`` saying what to do instead.

        The default rule: an artifact whose graph fixes a reduced precision (FP16 mixed, INT8
        Q/DQ) runs at it; an FP32 artifact runs at the requested precision, which must be one
        of ``precisions``. Backends whose rules differ override this classmethod; the
        resolution layer calls it before anything is exported or loaded.
        """
        req = Precision.parse_optional(requested)
        if artifact is not Precision.F32:
            if req is not None and req is not artifact:
                raise BackendError(f"this artifact is a {artifact} graph: its precision was fixed when it was "
                                   f"exported, so {cls.kind} cannot run it at {req}; drop --precision, or "
                                   f"export the FP32 model at {req}")
            return artifact
        if req is None:
            return cls.precisions[0]
        if req not in cls.precisions:
            raise BackendError(f"the {cls.kind} backend runs {', '.join(map(str, cls.precisions))}, not {req}"
                               + _reduced_hint(req))
        return req

    # -- lifecycle ---------------------------------------------------------
    def activate(self) -> None:
        """Load the artifact and allocate resources. Idempotent."""
        if not self._active:
            self._activate()
            self._active = True

    def deactivate(self) -> None:
        """Release sessions, streams and buffers, dropping uncollected results. Idempotent."""
        if self._active:
            self._active = False
            self._in_flight = 0
            self._done.clear()
            self._deactivate()

    def __enter__(self) -> Backend:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    @property
    def active(self) -> bool:
        return self._active

    # -- synchronous inference ---------------------------------------------
    def infer(self, frames: np.ndarray) -> np.ndarray:
        """Labels for a batch: ``frames`` uint8 ``[N, H, W, 3]`` BGR at the model's
        input size (``input_shape``); returns uint8 ``[N, H, W]``."""
        self.check_frames(frames)
        if self._in_flight:
            raise BackendError(f"{self.kind}: infer() while {self._in_flight} submitted batch(es) are not "
                               "collected; collect() them first")
        return self._infer(np.ascontiguousarray(frames))

    def check_frames(self, frames: np.ndarray) -> None:
        """Raise ``BackendError`` unless the backend is active and ``frames`` fit ``input_shape``."""
        if not self._active:
            raise BackendError(f"{self.kind} backend used before activate(); use it as a context manager")
        n, h, w = self.input_shape
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (h, w, 3):
            raise BackendError(
                f"{self.kind} backend expects uint8 frames of shape [N,{h},{w},3], "
                f"got {frames.dtype} {tuple(frames.shape)}; resize frames to the model input first"
            )
        if frames.shape[0] != n:
            raise BackendError(f"this artifact was built for batch {n}, got {frames.shape[0]} frames")

    # -- asynchronous protocol -----------------------------------------------
    @property
    def max_in_flight(self) -> int:
        """How many ``submit``s may be outstanding before a ``collect``: 1 for a backend that
        cannot overlap (``submit`` then runs inference to completion), 2 for double buffering."""
        return 1

    @property
    def in_flight(self) -> int:
        """Submitted batches not yet collected."""
        return self._in_flight

    def submit(self, frames: np.ndarray) -> None:
        """Start inference on ``frames`` (as ``infer`` takes them); the result comes from ``collect``.

        Returns once the backend holds its own copy of the input; raises
        ``BackendError`` when ``max_in_flight`` submissions are already outstanding.
        """
        self.check_frames(frames)
        if self._in_flight >= self.max_in_flight:
            raise BackendError(f"{self.kind}: {self._in_flight} batch(es) already in flight "
                               f"(at most {self.max_in_flight}); collect() one before submitting another")
        self._submit(np.ascontiguousarray(frames))
        self._in_flight += 1

    def collect(self) -> np.ndarray:
        """Labels of the oldest submitted batch, waiting for them if needed; updates ``last_timings``."""
        if not self._active:
            raise BackendError(f"{self.kind} backend used before activate(); use it as a context manager")
        if not self._in_flight:
            raise BackendError(f"{self.kind}: collect() without a submitted batch")
        labels = self._collect()
        self._in_flight -= 1
        return labels

    # -- optional logits -------------------------------------------------------
    @property
    def has_logits(self) -> bool:
        """True when the artifact has a float ``logits`` output ``infer_with_logits`` can return."""
        return False

    def infer_with_logits(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(labels, logits)`` for a batch: the parity checks' NaN/Inf test reads the logits."""
        self.check_frames(frames)
        if not self.has_logits:
            raise BackendError(f"this {self.kind} artifact has no logits output; export the ONNX with "
                               "rtseg-export --logits to check logits")
        if self._in_flight:
            raise BackendError(f"{self.kind}: infer_with_logits() while batches are in flight; collect() them first")
        return self._infer_with_logits(np.ascontiguousarray(frames))

    # -- what subclasses implement -----------------------------------------
    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _deactivate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, frames: np.ndarray) -> np.ndarray: ...

    def _submit(self, frames: np.ndarray) -> None:
        """Default (synchronous) submit: run to completion now, keep the labels for ``collect``.

        A copy, because a backend may hand out a view of an output buffer its next call reuses."""
        self._done.append(np.array(self._infer(frames), copy=True))

    def _collect(self) -> np.ndarray:
        return self._done.popleft()

    def _infer_with_logits(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise BackendError(f"the {self.kind} backend cannot return logits")

    @property
    @abc.abstractmethod
    def meta(self) -> ModelMeta:
        """Metadata of the loaded artifact (classes, palette, normalisation...)."""

    @property
    @abc.abstractmethod
    def input_shape(self) -> tuple[int, int, int]:
        """(batch, height, width) the artifact takes."""

    @abc.abstractmethod
    def info(self) -> BackendInfo:
        """Backend, device, precision, threads and versions, for reports."""


def _reduced_hint(p: Precision) -> str:
    if p is Precision.INT8:
        return ("; INT8 is fixed in the artifact: export a Q/DQ ONNX with `rtseg-export --precision int8 "
                "--calib-source CLIP` and pass --onnx, or build an INT8 engine")
    if p is Precision.BF16:
        return "; use --backend openvino for bf16"
    if p is Precision.FP16:
        return ("; use --backend openvino (f16 on CPUs with FP16 arithmetic), torch-cuda, or an FP16 ONNX "
                "(`rtseg-export --precision fp16`)")
    return ""
