"""ONNX Runtime backend (CPU execution provider) for the fused deploy graph.

ONNX Runtime runs a graph at the precision the graph itself was written at: an
FP32 export in f32, a Q/DQ INT8 export with its INT8 kernels (the Q/DQ pairs
fuse into QLinearConv), a mixed-FP16 export with FP16 tensors. The precision
reported is therefore the artifact's own ``rtseg.precision`` tag.

``emulate_fp16=True`` runs a mixed-FP16 graph with every FP16 tensor rounded
to FP16 between ops (``rtseg.runtime.fp16_emulation``), for FP16 parity checks
on CPUs without FP16 arithmetic; it is reported as such.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rtseg.core.errors import BackendError
from rtseg.core.meta import ModelMeta
from rtseg.core.precision import Precision
from rtseg.runtime.base import Backend, BackendInfo
from rtseg.runtime.onnx_file import OnnxArtifact


class OnnxRuntimeBackend(Backend):
    """Runs an rtseg ONNX file with ONNX Runtime's CPU provider at the file's precision."""

    kind = "onnxruntime"
    precisions = (Precision.F32,)  # an FP32 file runs in f32; reduced precisions come from the file

    def __init__(self, path: str | Path, *, precision: str | Precision | None = None, threads: int | None = None,
                 emulate_fp16: bool = False) -> None:
        super().__init__()
        requested = Precision.parse_optional(precision)  # a misspelt precision fails before any file is read
        self._artifact = OnnxArtifact.open(path)
        self._precision = self.choose_precision(requested, self._artifact.precision)
        if emulate_fp16 and self._artifact.precision is not Precision.FP16:
            raise BackendError(f"{self._artifact.path.name} is a {self._artifact.precision} graph; FP16 rounding "
                               "emulation runs the mixed-FP16 export (rtseg-export --precision fp16)")
        self._emulate = emulate_fp16
        self._threads = threads
        self._sess: Any = None

    def _activate(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError("onnxruntime is not installed: pip install 'rtseg[cpu]'") from exc
        opts = ort.SessionOptions()
        model: str | bytes = str(self._artifact.path)
        if self._emulate:
            import onnx

            from rtseg.runtime.fp16_emulation import emulate_fp16_rounding

            model = emulate_fp16_rounding(onnx.load(str(self._artifact.path))).SerializeToString()
            # No optimiser may fold the rounding casts away.
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        else:
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self._threads:
            opts.intra_op_num_threads = self._threads
            opts.inter_op_num_threads = 1
        try:
            self._sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BackendError(f"ONNX Runtime could not load {self._artifact.path}: {exc}".splitlines()[0]) from exc

    def _deactivate(self) -> None:
        self._sess = None

    def _infer(self, frames: np.ndarray) -> np.ndarray:
        assert self._sess is not None
        return self._sess.run(["labels"], {"frames": frames})[0]

    @property
    def has_logits(self) -> bool:
        return self._artifact.has_logits

    def _infer_with_logits(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self._sess is not None
        labels, logits = self._sess.run(["labels", "logits"], {"frames": frames})
        return labels, logits

    @property
    def meta(self) -> ModelMeta:
        return self._artifact.meta

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._artifact.input_shape

    @property
    def artifact(self) -> OnnxArtifact:
        return self._artifact

    def info(self) -> BackendInfo:
        import onnxruntime as ort

        device = "CPU (FP16 rounding emulated, FP32 arithmetic)" if self._emulate else "CPU"
        # threads None: ORT's default (one thread per physical core)
        return BackendInfo("onnxruntime", device, self._precision, self._threads or None,
                           {"onnxruntime": ort.__version__}, {"artifact": self._artifact.path.name})
