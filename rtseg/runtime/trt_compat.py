"""Every TensorRT version difference rtseg cares about, in one place.

rtseg supports TensorRT 10 and 11 with one build path: a *strongly typed*
network parsed from an ONNX whose precision is already decided (FP32, mixed
FP16 with Casts, or explicit INT8 Q/DQ). That path exists on both:

- TensorRT 10 (>= 10.0): ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` opts in;
  weak typing (``BuilderFlag.FP16``/``INT8`` with implicit calibration) still
  exists but is deprecated (INT8 calibrators since 10.1, weak typing since 10.12).
- TensorRT 11: every network is strongly typed; the creation flag is accepted
  and ignored; ``BuilderFlag.FP16``/``INT8``/``BF16``/``OBEY_PRECISION_CONSTRAINTS``
  and the INT8 calibrators are removed.

So rtseg never sets a precision builder flag. What still differs, and is
handled here: the creation flag (pass it when it exists), the progress monitor
(``IProgressMonitor``, 10.0+), and the version/parser reporting. Nothing else in
rtseg may branch on ``tensorrt.__version__``.

This module imports ``tensorrt`` only inside functions; type-check it with
``mypy`` against ``tensorrt-stubs`` (see docs/tensorrt.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING

from rtseg.core.errors import BackendError
from rtseg.runtime.engine_file import Platform

if TYPE_CHECKING:
    import tensorrt as trt

#: Oldest TensorRT rtseg builds with (strongly typed networks, execute_async_v3, IProgressMonitor).
MIN_MAJOR = 10
#: Newest major version checked against its documented API.
MAX_KNOWN_MAJOR = 11

INSTALL_HINT = ("install TensorRT 10 or 11 for your CUDA version on a machine with an NVIDIA GPU, e.g. "
                "`pip install tensorrt-cu12` (or `pip install 'rtseg[trt]'`), see docs/tensorrt.md")

#: Progress callback: (phase, step, steps). Raising (e.g. KeyboardInterrupt) cancels the build.
Progress = Callable[[str, int, int], None]


def import_tensorrt() -> ModuleType:
    """``import tensorrt``, or a ``BackendError`` saying how to install it."""
    try:
        trt_mod = importlib.import_module("tensorrt")
    except ImportError as exc:
        raise BackendError(f"TensorRT is not installed ({exc.msg}); {INSTALL_HINT}") from None
    except OSError as exc:  # the wheel is there but libnvinfer/libcudart cannot load
        raise BackendError(f"TensorRT is installed but its libraries failed to load ({exc}); "
                           "check the NVIDIA driver and CUDA runtime, see docs/tensorrt.md") from None
    if not hasattr(trt_mod, "Builder"):
        # ``tensorrt-stubs`` installs a ``tensorrt`` folder holding only .pyi files,
        # which Python imports as an empty namespace package.
        raise BackendError(f"TensorRT is not installed (only its type stubs are); {INSTALL_HINT}")
    major = version_major(str(trt_mod.__version__))
    if major < MIN_MAJOR:
        raise BackendError(f"TensorRT {trt_mod.__version__} is too old: rtseg needs TensorRT {MIN_MAJOR} or 11; "
                           f"{INSTALL_HINT}")
    return trt_mod


def tensorrt_available() -> bool:
    """True when a real TensorRT (not just its type stubs) can be imported."""
    try:
        import_tensorrt()
    except BackendError:
        return False
    return True


def version_major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError:
        return 0


def make_logger(verbose: bool = False) -> trt.ILogger:
    """TensorRT's stock logger: warnings and errors to stderr (INFO with ``verbose``)."""
    import tensorrt as trt

    sev = trt.Logger.INFO if verbose else trt.Logger.WARNING
    return trt.Logger(sev)


def network_flags() -> int:
    """Creation flags for a strongly typed network on TensorRT 10 and 11.

    10: STRONGLY_TYPED opts in. 11: accepted and ignored (always strongly
    typed). Should a later release drop the enum member, 0 is the same thing.
    """
    import tensorrt as trt

    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def create_network(builder: trt.Builder) -> trt.INetworkDefinition:
    return builder.create_network(network_flags())


def set_workspace(config: trt.IBuilderConfig, gigabytes: float | None) -> None:
    """Cap the builder's scratch memory (``MemoryPoolType.WORKSPACE``); None keeps TensorRT's default (all free memory)."""
    import tensorrt as trt

    if gigabytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(gigabytes * (1 << 30)))


def has_progress_monitor() -> bool:
    import tensorrt as trt

    return hasattr(trt, "IProgressMonitor")


def attach_progress(config: trt.IBuilderConfig, progress: Progress | None) -> trt.IProgressMonitor | None:
    """Attach an ``IProgressMonitor`` that forwards to ``progress``; returns it (keep it alive!).

    TensorRT calls the monitor from its own builder threads. An exception from
    ``progress`` (Ctrl-C arrives as KeyboardInterrupt in the main thread, but a
    callback may raise to cancel) is remembered and ``step_complete`` returns
    False, which asks TensorRT to cancel; ``build`` re-raises it afterwards.
    """
    import tensorrt as trt

    if progress is None or not has_progress_monitor():
        return None

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps: dict[str, int] = {}
            self.error: BaseException | None = None

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            self._call(phase_name, 0, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            self._call(phase_name, step + 1, self.steps.get(phase_name, 0))
            return self.error is None

        def phase_finish(self, phase_name: str) -> None:
            self.steps.pop(phase_name, None)

        def _call(self, phase: str, step: int, steps: int) -> None:
            if self.error is not None or progress is None:
                return
            try:
                progress(f"TensorRT: {phase}", step, steps)
            except BaseException as exc:  # noqa: BLE001 - re-raised by the caller after cancel
                self.error = exc

    monitor = _Monitor()
    config.progress_monitor = monitor
    return monitor


def load_timing_cache(config: trt.IBuilderConfig, data: bytes) -> trt.ITimingCache:
    """Create a timing cache from ``data`` (b"" for a new one) and attach it to ``config``.

    ``ignore_mismatch=False``: a cache from another GPU/TensorRT is refused by
    TensorRT rather than silently mixing timings.
    """
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, False):
        raise BackendError("TensorRT refused the timing cache (made by another TensorRT version or GPU); "
                           "delete the --timing-cache file or pass a different path")
    return cache


def serialize_timing_cache(config: trt.IBuilderConfig) -> bytes:
    return bytes(memoryview(config.get_timing_cache().serialize()))


def parser_errors(parser: trt.OnnxParser) -> str:
    msgs = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        msgs.append(str(err.desc()))
    return "; ".join(msgs) or "unknown parser error"


def build_serialized(builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig) -> bytes:
    """``build_serialized_network`` as bytes; ``BackendError`` when TensorRT returns nothing.

    TensorRT 10 and 11 return ``None`` (not an exception) on failure and log
    the reason through the logger.
    """
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BackendError("TensorRT could not build the engine (see its messages above); try --workspace with "
                           "more memory, --precision fp32, or a smaller --batch-range")
    return bytes(memoryview(plan))


def deserialize(runtime: trt.Runtime, plan: bytes) -> trt.ICudaEngine:
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise BackendError("TensorRT could not deserialize the engine (wrong TensorRT version or GPU, or a damaged "
                           "file); rebuild it with `rtseg-export --format engine`")
    return engine


def io_tensors(engine: trt.ICudaEngine) -> list[dict[str, object]]:
    """Name, direction, dtype and shape of every I/O tensor (name-based API, 10+)."""
    import tensorrt as trt

    out: list[dict[str, object]] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = engine.get_tensor_mode(name)
        dims = engine.get_tensor_shape(name)
        out.append({
            "name": name,
            "mode": "input" if mode == trt.TensorIOMode.INPUT else "output",
            "dtype": str(engine.get_tensor_dtype(name)).split(".")[-1],
            "shape": [int(dims[k]) for k in range(len(dims))],  # -1 = dynamic (batch)
        })
    return out


def numpy_dtype(trt_dtype: trt.DataType) -> str:
    """numpy dtype name of a TensorRT I/O DataType that rtseg engines use."""
    import tensorrt as trt

    table = {trt.DataType.UINT8: "uint8", trt.DataType.FLOAT: "float32", trt.DataType.HALF: "float16",
             trt.DataType.INT32: "int32", trt.DataType.INT64: "int64"}
    try:
        return table[trt_dtype]
    except KeyError:
        raise BackendError(f"engine I/O type {trt_dtype} is not one rtseg uses; rebuild the engine") from None


def detect_platform() -> Platform:
    """TensorRT version and GPU (name, compute capability, driver) of this machine.

    The GPU is queried through PyTorch's CUDA runtime, which rtseg's CUDA
    paths use anyway; ``BackendError`` when TensorRT or a CUDA GPU is missing.
    """
    trt_mod = import_tensorrt()
    try:
        import torch
    except ImportError:
        raise BackendError("the TensorRT path needs PyTorch with CUDA for device memory and streams; "
                           "install a CUDA build of torch (see docs/tensorrt.md)") from None
    if not torch.cuda.is_available():
        raise BackendError("no CUDA GPU is visible (torch.cuda.is_available() is False); TensorRT needs an NVIDIA "
                           "GPU, its driver and a CUDA build of torch")
    dev = torch.cuda.current_device()
    major, minor = torch.cuda.get_device_capability(dev)
    return Platform(trt_version=str(trt_mod.__version__), gpu_name=torch.cuda.get_device_name(dev),
                       compute_capability=f"{major}.{minor}", driver=_driver_version(),
                       cuda=str(torch.version.cuda))


def _driver_version() -> str:
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
        return out.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown"
