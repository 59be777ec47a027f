"""TensorRT backend: runs an rtseg engine with ``execute_async_v3`` on a CUDA stream.

    with TensorRTBackend("engines/stdc1_....engine") as be:   # inference thread
        labels = be.infer(frames)            # uint8 [N,H,W,3] BGR -> uint8 [N,H,W]
        be.last_timings                      # {"h2d": s, "compute": s, "d2h": s, "total": s}

Loading reads the JSON sidecar and checks it against the running TensorRT and
GPU *before* deserialising (``engine_file.check_compatible``): a mismatch is
a one-line error naming what differs and the command that rebuilds the engine.
After deserialising, ``check_engine_io`` verifies the engine's I/O tensors are
what the device buffers assume (``frames`` uint8 ``[N,H,W,3]`` in, ``labels``
uint8 ``[N,H,W]`` out): an engine with, say, INT32 labels would otherwise
write four bytes per pixel into a one-byte-per-pixel buffer.

Device buffers are bound by address (``set_tensor_address``) - one pair per
double-buffer slot - and inference, upload and download are asynchronous on
the backend's streams (``cuda_staging.CudaStaging``). The asynchronous
protocol of ``Backend`` (``max_in_flight`` 2) lets the pipeline keep two
frames in flight so the next upload overlaps the current inference; ``infer``
is submit+collect.

Threading: construct anywhere; ``activate``, ``infer``, ``submit``,
``collect`` and ``deactivate`` only from the one inference thread that owns
the backend (its CUDA context, streams and buffers are not shared).

Importing this module needs neither TensorRT nor CUDA; using it without them
raises ``BackendError`` saying how to install them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtseg.core.errors import BackendError, RtsegError, UserInputError
from rtseg.core.meta import ModelMeta
from rtseg.core.precision import Precision
from rtseg.runtime.base import Backend, BackendInfo

if TYPE_CHECKING:
    import tensorrt as trt

    from rtseg.runtime.cuda_staging import CudaStaging


#: numpy dtype of each logits element TensorRT may hand back (``io_tensors`` dtype names).
_FLOAT_IO = ("FLOAT", "HALF")


def check_engine_io(io: Sequence[Mapping[str, object]], shape: tuple[int, int, int], engine_name: str) -> None:
    """Refuse an engine whose I/O tensors differ from what the backend's buffers hold.

    ``io``: ``trt_compat.io_tensors(engine)`` (name, mode, dtype name, shape with -1 for
    dynamic dimensions). ``shape``: the (batch, H, W) the backend runs. The staging buffers
    are uint8 ``[N,H,W,3]`` in and uint8 ``[N,H,W]`` out; a ``logits`` output must be float
    ``[N,C,H,W]``; nothing else may be an input. Raises ``BackendError`` naming the mismatch.
    """
    n, h, w = shape
    by_name = {str(t["name"]): t for t in io}
    rebuild = "rebuild it with `rtseg-export --format engine`"
    for name, mode in (("frames", "input"), ("labels", "output")):
        if name not in by_name:
            raise BackendError(f"{engine_name} has I/O {sorted(by_name)}, not frames/labels; {rebuild}")
        if by_name[name]["mode"] != mode:
            raise BackendError(f"{engine_name}: '{name}' is an {by_name[name]['mode']}, not an {mode}; {rebuild}")

    def dims_ok(got: object, want: tuple[int, ...]) -> bool:
        dims: list[object] = list(got) if isinstance(got, (list, tuple)) else []
        return len(dims) == len(want) and all(_int(d) in (-1, x) if i == 0 else _int(d) == x
                                              for i, (d, x) in enumerate(zip(dims, want, strict=True)))

    wanted: tuple[tuple[str, tuple[int, ...]], ...] = (("frames", (n, h, w, 3)), ("labels", (n, h, w)))
    for name, want in wanted:
        t = by_name[name]
        if t["dtype"] != "UINT8" or not dims_ok(t["shape"], want):
            raise BackendError(
                f"{engine_name}: '{name}' is {t['dtype']} {t['shape']} (-1 = dynamic), but rtseg runs "
                f"uint8 {list(want)}; {rebuild}")
    for name, t in by_name.items():
        if name in ("frames", "labels"):
            continue
        if t["mode"] == "input":
            raise BackendError(f"{engine_name} has an extra input '{name}'; an rtseg engine takes frames only; "
                               f"{rebuild}")
        if name == "logits":
            got = t["shape"]
            dims = [_int(d) for d in got] if isinstance(got, (list, tuple)) else []
            if t["dtype"] not in _FLOAT_IO or len(dims) != 4 or dims[2:] != [h, w]:
                raise BackendError(f"{engine_name}: 'logits' is {t['dtype']} {dims}, not float [N,C,{h},{w}]; "
                                   f"{rebuild}")


def _int(v: object) -> int:
    return int(v) if isinstance(v, (int, float, str)) else -2  # -2: matches no dimension


class TensorRTBackend(Backend):
    """An rtseg TensorRT engine (uint8 frames in, uint8 labels out) on one GPU."""

    kind = "trt"
    precisions = (Precision.FP16, Precision.F32, Precision.INT8)

    def __init__(self, engine: str | Path, *, precision: str | Precision | None = None, threads: int | None = None,
                 batch: int | None = None, verbose: bool = False) -> None:
        super().__init__()
        from rtseg.runtime import engine_file as ef

        self._path = Path(engine)
        if self._path.suffix != ef.ENGINE_SUFFIX:
            raise UserInputError(f"{self._path} is not a TensorRT engine (.engine); build one with "
                                 "`rtseg-export --format engine`")
        # The sidecar is plain JSON: metadata and shapes are known before TensorRT loads.
        self._sidecar: dict[str, Any] = ef.read_sidecar(self._path)
        try:
            self._meta = ModelMeta.from_dict(self._sidecar["meta"])
            built = Precision.parse(self._sidecar["precision"])
            h, w = self._sidecar["input"]["size"]
            lo, opt, hi = self._sidecar["input"]["batch_range"]
        except (KeyError, TypeError, ValueError, RtsegError) as exc:
            raise BackendError(f"sidecar of {self._path.name} is damaged ({exc}); delete both files and "
                               "rebuild the engine") from None
        b = opt if batch is None else batch
        if not lo <= b <= hi:
            raise UserInputError(f"this engine takes batch {lo}..{hi}, asked {b}; rebuild with --batch-range")
        self._shape = (int(b), int(h), int(w))
        self._precision = self.choose_precision(precision, built)
        self._verbose = verbose
        self._torch: Any = None
        self._runtime: trt.Runtime | None = None
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None
        self._staging: CudaStaging | None = None
        self._extra_outputs: dict[str, Any] = {}  # e.g. logits: bound, computed, never copied to the host
        self._platform: Any = None

    @classmethod
    def choose_precision(cls, requested: str | Precision | None, artifact: Precision = Precision.F32) -> Precision:
        """An engine runs at the precision it was built at, FP32 engines included."""
        req = Precision.parse_optional(requested)
        if req is not None and req is not artifact:
            raise BackendError(f"this is a {artifact} engine, asked {req}: a TensorRT engine's precision is fixed "
                               f"when it is built; build a {req} engine with "
                               f"`rtseg-export --format engine --precision {req}`, or drop --precision")
        return artifact

    # -- lifecycle (inference thread) -------------------------------------------
    def _activate(self) -> None:
        import tensorrt as trt

        from rtseg.runtime import engine_file as ef
        from rtseg.runtime import trt_compat as tc
        from rtseg.runtime.cuda_staging import CudaStaging, require_cuda

        tc.import_tensorrt()
        torch = require_cuda()
        self._platform = tc.detect_platform()
        ef.check_compatible(self._path, self._platform)  # before deserialising: say what differs
        logger = tc.make_logger(self._verbose)
        runtime = trt.Runtime(logger)
        engine = tc.deserialize(runtime, self._path.read_bytes())
        context = engine.create_execution_context()
        if context is None:
            raise BackendError("TensorRT could not create an execution context (out of GPU memory?)")
        io = tc.io_tensors(engine)
        # Before any buffer is sized from our own assumptions about the I/O.
        check_engine_io(io, self._shape, self._path.name)
        names = {str(t["name"]): t for t in io}
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

    @property
    def max_in_flight(self) -> int:
        return 2  # the staging slots: the next upload overlaps the current inference

    def _submit(self, frames: np.ndarray) -> None:
        assert self._staging is not None
        self._staging.submit(frames, self._enqueue)

    def _collect(self) -> np.ndarray:
        assert self._staging is not None
        labels = self._staging.collect()
        self.last_timings = dict(self._staging.last_timings)
        return labels

    def _infer(self, frames: np.ndarray) -> np.ndarray:
        self._submit(frames)
        return self._collect()

    @property
    def has_logits(self) -> bool:
        return any(t.get("name") == "logits" for t in self._sidecar.get("io", []))

    def _infer_with_logits(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels = self._infer(frames)
        # collect() waited for the slot's download, which the compute stream orders after the
        # engine wrote logits; nothing else is in flight, so the shared buffer is this batch's.
        logits = self._extra_outputs["logits"].float().cpu().numpy()
        return labels, logits

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
