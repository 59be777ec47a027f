"""TensorRT backend: runs an rtseg engine with ``execute_async_v3`` on a CUDA stream.

    with TensorRTBackend("engines/stdc1_....engine") as be:   # inference thread
        labels = be.infer(frames)            # uint8 [N,H,W,3] BGR -> uint8 [N,H,W]
        be.last_timings                      # {"h2d": s, "compute": s, "d2h": s, "total": s}

Loading reads the JSON sidecar and checks it against the running TensorRT and
GPU *before* deserialising (``engine_cache.check_compatible``): a mismatch is
a one-line error naming what differs and the command that rebuilds the engine.

Device buffers are bound by address (``set_tensor_address``) - one pair per
double-buffer slot - and inference, upload and download are asynchronous on
the backend's streams (``cuda_staging.CudaStaging``). ``submit``/``collect``
let a caller keep two frames in flight so the next upload overlaps the
current inference; ``infer`` is submit+collect.

Threading: construct anywhere; ``activate``, ``infer``, ``submit``,
``collect`` and ``deactivate`` only from the one inference thread that owns
the backend (its CUDA context, streams and buffers are not shared).

Importing this module needs neither TensorRT nor CUDA; using it without them
raises ``BackendError`` saying how to install them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtseg.core.errors import BackendError, UserInputError
from rtseg.core.meta import ModelMeta
from rtseg.runtime.base import Backend, BackendInfo

if TYPE_CHECKING:
    import tensorrt as trt

    from rtseg.runtime.cuda_staging import CudaStaging


class TensorRTBackend(Backend):
    """An rtseg TensorRT engine (uint8 frames in, uint8 labels out) on one GPU."""

    kind = "trt"

    def __init__(self, engine: str | Path, *, precision: str | None = None, threads: int | None = None,
                 batch: int | None = None, verbose: bool = False) -> None:
        super().__init__()
        from rtseg.export import engine_cache as ec

        self._path = Path(engine)
        if self._path.suffix != ec.ENGINE_SUFFIX:
            raise UserInputError(f"{self._path} is not a TensorRT engine (.engine); build one with "
                                 "`rtseg-export --format engine`")
        # The sidecar is plain JSON: metadata and shapes are known before TensorRT loads.
        self._sidecar: dict[str, Any] = ec.read_sidecar(self._path)
        self._meta = ModelMeta.from_dict(self._sidecar["meta"])
        h, w = self._sidecar["input"]["size"]
        lo, opt, hi = self._sidecar["input"]["batch_range"]
        b = opt if batch is None else batch
        if not lo <= b <= hi:
            raise UserInputError(f"this engine takes batch {lo}..{hi}, asked {b}; rebuild with --batch-range")
        self._shape = (int(b), int(h), int(w))
        self._precision = str(self._sidecar["precision"])
        aliases = {"f32": "fp32", "f16": "fp16"}
        if precision is not None and aliases.get(precision, precision) != self._precision:
            raise BackendError(f"{self._path.name} is a {self._precision} engine, asked {precision}; "
                               f"build a {precision} engine with `rtseg-export --format engine --precision {precision}`")
        self._verbose = verbose
        self._torch: Any = None
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._staging: CudaStaging | None = None
        self._extra_outputs: dict[str, Any] = {}  # e.g. logits: bound, computed, never copied to the host
        self._platform: Any = None
        self.last_timings: dict[str, float] = {}

    # -- lifecycle (inference thread) -------------------------------------------
    def _activate(self) -> None:
        import tensorrt as trt

        from rtseg.export import engine_cache as ec
        from rtseg.export import trt_compat as tc
        from rtseg.runtime.cuda_staging import CudaStaging, require_cuda

        tc.import_tensorrt()
        torch = require_cuda()
        self._platform = tc.detect_platform()
        ec.check_compatible(self._path, self._platform)  # before deserialising: say what differs
        logger = tc.make_logger(self._verbose)
        runtime = trt.Runtime(logger)
        engine = tc.deserialize(runtime, self._path.read_bytes())
        context = engine.create_execution_context()
        if context is None:
            raise BackendError("TensorRT could not create an execution context (out of GPU memory?)")
        io = tc.io_tensors(engine)
        names = {str(t["name"]): t for t in io}
        if "frames" not in names or "labels" not in names:
            raise BackendError(f"{self._path.name} has I/O {sorted(names)}, not frames/labels; rebuild it with rtseg")
        n, h, w = self._shape
        if not context.set_input_shape("frames", (n, h, w, 3)):
            raise BackendError(f"the engine refused input shape {(n, h, w, 3)}; rebuild with a matching --batch-range")
        device = torch.device("cuda", torch.cuda.current_device())
        staging = CudaStaging(torch, n, h, w, device)
        # Outputs other than labels (logits) still need device memory bound by address.
        for name, t in names.items():
            if t["mode"] == "output" and name != "labels":
                dims = context.get_tensor_shape(name)
                shape = tuple(int(dims[i]) for i in range(len(dims)))
                dtype = getattr(torch, tc.numpy_dtype(engine.get_tensor_dtype(name)))
                self._extra_outputs[name] = torch.empty(shape, dtype=dtype, device=device)
        self._torch, self._runtime, self._engine, self._context, self._staging = torch, runtime, engine, context, staging

    def _deactivate(self) -> None:
        if self._staging is not None:
            self._staging.drain()
        # Release in reverse order of creation: context, engine, runtime, then buffers.
        self._context = None
        self._engine = None
        self._runtime = None
        self._staging = None
        self._extra_outputs.clear()

    # -- inference (inference thread) -------------------------------------------
    def _enqueue(self, slot: int) -> None:
        assert self._context is not None and self._staging is not None
        ctx, st = self._context, self._staging
        ctx.set_tensor_address("frames", int(st.dev_in[slot].data_ptr()))
        ctx.set_tensor_address("labels", int(st.dev_out[slot].data_ptr()))
        for name, buf in self._extra_outputs.items():
            ctx.set_tensor_address(name, int(buf.data_ptr()))
        if not ctx.execute_async_v3(int(st.compute_stream.cuda_stream)):
            raise BackendError("TensorRT execute_async_v3 failed (see TensorRT's messages above)")

    def submit(self, frames: np.ndarray) -> None:
        """Start inference on ``frames`` without waiting (at most two in flight)."""
        self.check_frames(frames)
        assert self._staging is not None
        self._staging.submit(frames, self._enqueue)

    def collect(self) -> np.ndarray:
        """Labels of the oldest submitted frames; updates ``last_timings``."""
        assert self._staging is not None
        labels = self._staging.collect()
        self.last_timings = dict(self._staging.last_timings)
        return labels

    def _infer(self, frames: np.ndarray) -> np.ndarray:
        self.submit(frames)
        return self.collect()

    # -- description --------------------------------------------------------------
    @property
    def meta(self) -> ModelMeta:
        return self._meta

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def sidecar(self) -> dict[str, Any]:
        return dict(self._sidecar)

    def info(self) -> BackendInfo:
        plat = self._platform
        device = f"CUDA:0 ({plat.gpu_name}, sm_{plat.sm})" if plat is not None else "CUDA (not activated)"
        versions = {"tensorrt": str(self._sidecar["platform"]["trt_version"])}
        if plat is not None:
            versions.update({"tensorrt_running": plat.trt_version, "driver": plat.driver, "cuda": plat.cuda})
        return BackendInfo("tensorrt", device, self._precision, None, versions,
                           {"engine": self._path.name, "batch_range": self._sidecar["input"]["batch_range"],
                            "last_timings": dict(self.last_timings)})
