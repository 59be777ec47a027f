"""Create a backend by name. Each backend module (and its framework) is
imported only when that backend is asked for; the modules themselves import
nothing heavy at module level, so ``backend_class`` is cheap."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from rtseg.core.errors import BackendError, UserInputError
from rtseg.core.precision import Precision
from rtseg.runtime.base import Backend

# kind -> (module, class); aliases map to a kind.
_BACKENDS: dict[str, tuple[str, str]] = {
    "onnxruntime": ("rtseg.runtime.onnxruntime_backend", "OnnxRuntimeBackend"),
    "openvino": ("rtseg.runtime.openvino_backend", "OpenVinoBackend"),
    "torch": ("rtseg.runtime.torch_backend", "TorchBackend"),
    "torch-cuda": ("rtseg.runtime.torch_cuda_backend", "TorchCudaBackend"),
    "trt": ("rtseg.runtime.tensorrt_backend", "TensorRTBackend"),
}
_ALIASES = {"ort": "onnxruntime", "ov": "openvino", "tensorrt": "trt", "pytorch": "torch"}

#: Backends that run an ONNX file.
ONNX_BACKENDS = ("onnxruntime", "openvino")
#: Backends that build the deploy graph from a checkpoint (or random weights) in PyTorch.
TORCH_BACKENDS = ("torch", "torch-cuda")


def backend_kinds() -> list[str]:
    """Backend names accepted by ``create_backend`` (without aliases)."""
    return list(_BACKENDS)


def canonical_kind(kind: str) -> str:
    k = _ALIASES.get(kind.lower(), kind.lower())
    if k not in _BACKENDS:
        raise UserInputError(f"unknown backend {kind!r}; choose one of: {', '.join(_BACKENDS)}")
    return k


def backend_class(kind: str) -> type[Backend]:
    """The ``Backend`` subclass for ``kind`` (any alias), for its ``precisions`` and ``choose_precision``."""
    k = canonical_kind(kind)
    module_name, cls_name = _BACKENDS[k]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"backend {k!r} is not available: {exc}") from exc
    cls: type[Backend] = getattr(module, cls_name)
    return cls


def create_backend(kind: str, artifact: str | Path | None, *, precision: str | Precision | None = None,
                   threads: int | None = None, **kwargs: Any) -> Backend:
    """Create (not yet activate) a backend.

    ``artifact`` is an ONNX file for onnxruntime/openvino, a weights file (or
    None with ``model=NAME`` for random weights) for torch/torch-cuda, and an
    engine file for trt. Prefer ``rtseg.resolve.resolve`` in commands: it
    applies the same rules to every command and exports on demand.
    """
    cls = backend_class(kind)
    return cls(artifact, precision=precision, threads=threads, **kwargs)  # type: ignore[call-arg]
