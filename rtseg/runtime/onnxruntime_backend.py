"""ONNX Runtime backend (CPU execution provider) for the fused deploy graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtseg.core.errors import BackendError
from rtseg.core.meta import ModelMeta
from rtseg.runtime.base import Backend, BackendInfo
from rtseg.runtime.onnx_file import OnnxArtifact


class OnnxRuntimeBackend(Backend):
    """Runs an rtseg ONNX file with ONNX Runtime's CPU provider in f32."""

    kind = "onnxruntime"

    def __init__(self, path: str | Path, *, precision: str | None = None, threads: int | None = None) -> None:
        super().__init__()
        if precision not in (None, "f32"):
            raise BackendError(
                f"ONNX Runtime CPU runs this graph in f32 only (asked {precision}); "
                "use --backend openvino for bf16"
            )
        self._artifact = OnnxArtifact.open(path)
        self._threads = threads
        self._sess = None

    def _activate(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError("onnxruntime is not installed: pip install 'rtseg[cpu]'") from exc
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self._threads:
            opts.intra_op_num_threads = self._threads
            opts.inter_op_num_threads = 1
        try:
            self._sess = ort.InferenceSession(str(self._artifact.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BackendError(f"ONNX Runtime could not load {self._artifact.path}: {exc}".splitlines()[0]) from exc

    def _deactivate(self) -> None:
        self._sess = None

    def _infer(self, frames: np.ndarray) -> np.ndarray:
        assert self._sess is not None
        return self._sess.run(["labels"], {"frames": frames})[0]

    @property
    def meta(self) -> ModelMeta:
        return self._artifact.meta

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._artifact.input_shape

    def info(self) -> BackendInfo:
        import onnxruntime as ort

        threads = self._threads
        if self._sess is not None and not threads:
            threads = None  # ORT's default: one thread per physical core
        return BackendInfo("onnxruntime", "CPU", "f32", threads, {"onnxruntime": ort.__version__})
