"""The one small lifecycle every backend shares (Polygraphy style).

    with create_backend("openvino", "model.onnx", precision="f32") as be:
        labels = be.infer(frames)          # uint8 [N,H,W,3] BGR -> uint8 [N,H,W]

Threading: a backend is owned by one thread (the inference thread). ``activate``,
``infer`` and ``deactivate`` must all be called from that thread; nothing else
touches the backend's sessions, streams or buffers.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtseg.core.errors import BackendError
from rtseg.core.meta import ModelMeta


@dataclass(frozen=True)
class BackendInfo:
    """What a report needs to say about how inference ran."""

    backend: str  # "onnxruntime", "openvino", "torch", "tensorrt"
    device: str  # "CPU", "CUDA:0 (NVIDIA H100)", ...
    precision: str  # "f32", "bf16", "fp16", "int8"
    threads: int | None
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class Backend(abc.ABC):
    """Runs the fused deploy graph: uint8 BGR frames in, uint8 class labels out."""

    #: short name used on command lines (``--backend``)
    kind: str = ""

    def __init__(self) -> None:
        self._active = False

    # -- lifecycle ---------------------------------------------------------
    def activate(self) -> None:
        """Load the artifact and allocate resources. Idempotent."""
        if not self._active:
            self._activate()
            self._active = True

    def deactivate(self) -> None:
        """Release sessions, streams and buffers. Idempotent."""
        if self._active:
            self._active = False
            self._deactivate()

    def __enter__(self) -> Backend:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    @property
    def active(self) -> bool:
        return self._active

    # -- inference ---------------------------------------------------------
    def infer(self, frames: np.ndarray) -> np.ndarray:
        """Labels for a batch: ``frames`` uint8 ``[N, H, W, 3]`` BGR at the model's
        input size (``input_shape``); returns uint8 ``[N, H, W]``."""
        self.check_frames(frames)
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

    # -- what subclasses implement -----------------------------------------
    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _deactivate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, frames: np.ndarray) -> np.ndarray: ...

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
