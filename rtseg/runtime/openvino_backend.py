"""OpenVINO backend (CPU plugin) with an explicit inference precision.

OpenVINO's CPU plugin silently runs in bf16 on CPUs that support it, which
changes results and roughly doubles speed. We always set
``INFERENCE_PRECISION_HINT`` and report what the compiled model says it
runs, never the default; an INT8 Q/DQ graph is reported as ``int8`` (its
quantized convolutions run in INT8 whatever the hint says about the rest).
The layers an INT8 graph keeps in float (those NNCF's accuracy control
reverted, depthwise convolutions, resizes) run at ``float_precision``: f32 by
default, bf16 on request, which on this AVX512-BF16 EPYC took the default
model's NNCF INT8 graph from 23.4 to 16.2 ms per frame at 360x480
(rtseg-bench inference-only medians, docs/benchmarks.md).

Asynchronous protocol: with ``requests=2`` the backend keeps two OpenVINO infer
requests and ``submit`` starts one with ``start_async`` (the input is copied
into the request's tensor, inference runs on OpenVINO's threads with the GIL
released), so the pipeline's resize of the next frame and publication of the
previous result overlap inference. ``collect`` waits for the oldest request.
An ``AsyncInferQueue`` would fit the same protocol (``submit`` =
``start_async`` with a sequence number as userdata, ``collect`` = wait for the
oldest number); two plain requests are enough for two in flight. The constructor's default
stays one synchronous request; ``--backend auto`` (``rtseg.resolve.autotune``)
runs OpenVINO with two.

Streams: by default the model is compiled with the LATENCY hint, one stream
whose threads span every core, so each frame finishes as soon as it can. With
``streams=2`` it is compiled with the THROUGHPUT hint and two streams: the
cores are split between two frames and each runs on its half. One stream over
two cores loses time to the layers too small to split. ``requests=3`` with
two streams keeps a third frame queued, so that both streams stay busy while
the caller publishes one result and prepares the next frame. The default
model's INT8 graph (bf16 float layers) on this 2-core EPYC with about 3 ms of
that work per frame (``scripts/ov_streams.py``, two runs): LATENCY, two
requests 52.0-56.3 FPS; two streams, two requests 56.9-57.9; two streams,
three requests 57.9-61.8. Each frame takes longer from submit to labels, so two streams
are for files processed as fast as possible (benchmark mode), not for live
sources or a viewer, where the newest frame should come back soonest.
"""

from __future__ import annotations

from collections import Counter, deque
from pathlib import Path
from typing import Any

import numpy as np

from rtseg.core.errors import BackendError
from rtseg.core.meta import ModelMeta
from rtseg.core.precision import Precision
from rtseg.runtime.base import Backend, BackendInfo
from rtseg.runtime.onnx_file import OnnxArtifact

#: OpenVINO's names for the inference precisions rtseg asks for.
_HINTS = {Precision.F32: "f32", Precision.BF16: "bf16", Precision.FP16: "f16"}


def cpu_has_fp16_arithmetic() -> bool:
    """Whether OpenVINO's CPU plugin can compute in FP16 here (AVX512-FP16 or AMX-FP16)."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


class OpenVinoBackend(Backend):
    """Runs an rtseg ONNX file on OpenVINO's CPU plugin at f32, bf16 or fp16 (f16)."""

    kind = "openvino"
    precisions = (Precision.F32, Precision.BF16, Precision.FP16)

    def __init__(self, path: str | Path, *, precision: str | Precision | None = None, threads: int | None = None,
                 device: str = "CPU", requests: int = 1,
                 float_precision: str | Precision | None = None, streams: int = 1) -> None:
        """``float_precision``: INT8 graphs only, the precision of their float layers (default f32).
        ``requests``: 1 (synchronous), 2 or 3 in flight. ``streams``: 1 (LATENCY hint) or 2
        (THROUGHPUT hint; needs ``requests`` >= 2)."""
        super().__init__()
        requested = Precision.parse_optional(precision)  # a misspelt precision fails before any file is read
        rest = Precision.parse_optional(float_precision)
        self._artifact = OnnxArtifact.open(path)
        self._precision = self.choose_precision(requested, self._artifact.precision)
        if rest is not None and (self._precision is not Precision.INT8 or rest not in self.precisions):
            raise BackendError(f"float_precision applies to INT8 graphs and is one of "
                               f"{', '.join(map(str, self.precisions))}; got {rest} for a "
                               f"{self._artifact.precision} graph")
        if rest is None and self._precision is Precision.INT8 and requested in self.precisions:
            rest = requested  # e.g. --precision bf16 on an INT8 ONNX: its float layers at bf16
        self._float = rest or Precision.F32
        if requests not in (1, 2, 3):
            raise BackendError(f"OpenVINO backend: requests must be 1 (synchronous), 2 or 3 (in flight), "
                               f"got {requests}")
        if streams not in (1, 2) or streams > requests:
            raise BackendError(f"OpenVINO backend: streams must be 1, or 2 with at least 2 requests in "
                               f"flight, got streams={streams} with requests={requests}")
        self._requests_wanted = requests
        self._streams = streams
        self._threads = threads
        self._device = device
        self._compiled: Any = None  # ov.CompiledModel while active
        self._requests: list[Any] = []
        self._next = 0
        self._pending: deque[Any] = deque()  # started requests, oldest first
        self._actual: Precision | None = None

    @classmethod
    def choose_precision(cls, requested: str | Precision | None, artifact: Precision = Precision.F32) -> Precision:
        """INT8 graphs run in INT8 (a requested f32/bf16/f16 applies to their float layers); anything
        else at the requested inference precision (default f32): OpenVINO converts a mixed-FP16
        graph to the precision it is compiled for."""
        req = Precision.parse_optional(requested)
        if artifact is Precision.INT8:
            # Asking f32/bf16/f16 of an INT8 graph sets the precision of its float layers.
            return super().choose_precision(None if req in cls.precisions else req, artifact)
        return super().choose_precision(req, Precision.F32)

    def _activate(self) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise BackendError("openvino is not installed: pip install 'rtseg[cpu]'") from exc
        core = ov.Core()
        # INT8 graphs: the hint sets the precision of the layers left in float.
        hint = _HINTS[self._float] if self._precision is Precision.INT8 else _HINTS.get(self._precision, "f32")
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": hint}
        if self._streams == 1:
            # One stream over every core: each frame done as soon as it can be.
            config["PERFORMANCE_HINT"] = "LATENCY"
        else:
            # One stream per request in flight, the cores split between them (module docstring).
            config["PERFORMANCE_HINT"] = "THROUGHPUT"
            config["NUM_STREAMS"] = self._streams
        if self._threads:
            config["INFERENCE_NUM_THREADS"] = self._threads
        try:
            model = core.read_model(str(self._artifact.path))
            self._compiled = core.compile_model(model, self._device, config)
        except Exception as exc:
            msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise BackendError(f"OpenVINO could not compile {self._artifact.path} for {self._device} "
                               f"at {hint}: {msg}") from exc
        got = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        # An ov.Type ("f32", "bf16", "f16"): what the plugin will really run.
        name = got.get_type_name() if hasattr(got, "get_type_name") else str(got)
        self._actual = Precision.INT8 if self._precision is Precision.INT8 else Precision.parse(name)
        self._requests = [self._compiled.create_infer_request() for _ in range(self._requests_wanted)]
        self._outputs = {o.get_any_name(): i for i, o in enumerate(self._compiled.outputs)}
        self._next = 0
        self._pending.clear()

    def _deactivate(self) -> None:
        for req in self._pending:
            req.wait()  # a running request must finish before its compiled model goes away
        self._pending.clear()
        self._requests = []
        self._compiled = None

    def _output(self, request: Any, name: str) -> np.ndarray:
        # The output tensor's buffer is reused by the request's next run: copy it out.
        return np.array(request.get_output_tensor(self._outputs[name]).data, copy=True)

    def _infer(self, frames: np.ndarray) -> np.ndarray:
        req = self._requests[0]
        req.infer({0: frames})
        return self._output(req, "labels")

    # -- asynchronous protocol (requests 2 or 3) ------------------------------------
    @property
    def max_in_flight(self) -> int:
        return self._requests_wanted

    def _submit(self, frames: np.ndarray) -> None:
        if self._requests_wanted == 1:
            super()._submit(frames)
            return
        req = self._requests[self._next]
        self._next = (self._next + 1) % len(self._requests)
        req.start_async({0: frames}, share_inputs=False)  # copies frames into the request's tensor
        self._pending.append(req)

    def _collect(self) -> np.ndarray:
        if self._requests_wanted == 1:
            return super()._collect()
        req = self._pending.popleft()
        req.wait()
        return self._output(req, "labels")

    # -- logits, description -----------------------------------------------------
    @property
    def has_logits(self) -> bool:
        return self._artifact.has_logits

    def _infer_with_logits(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        req = self._requests[0]
        req.infer({0: frames})
        return self._output(req, "labels"), self._output(req, "logits")

    def executed_precisions(self) -> Counter[tuple[str, str]]:
        """``(layerType, runtimePrecision)`` counts of the compiled execution graph (after activate),
        so a check can prove e.g. that convolutions really ran in f16 instead of trusting the hint."""
        if self._compiled is None:
            raise BackendError("executed_precisions() needs an active OpenVINO backend")
        out: Counter[tuple[str, str]] = Counter()
        for op in self._compiled.get_runtime_model().get_ordered_ops():
            rt = op.get_rt_info()
            out[(rt["layerType"].astype(str), rt["runtimePrecision"].astype(str))] += 1
        return out

    @property
    def meta(self) -> ModelMeta:
        return self._artifact.meta

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self._artifact.input_shape

    @property
    def precision(self) -> Precision:
        """The precision the compiled model actually runs at (after activate), else the chosen one."""
        return self._actual or self._precision

    def info(self) -> BackendInfo:
        import openvino as ov

        threads = self._threads
        if self._compiled is not None:
            threads = int(self._compiled.get_property("INFERENCE_NUM_THREADS")) or threads
        return BackendInfo("openvino", self._device, self.precision, threads, {"openvino": ov.get_version()},
                           {"requested_precision": str(self._precision), "requests": self._requests_wanted,
                            "streams": self._streams,
                            "artifact": self._artifact.path.name,
                            **({"float_layers": str(self._float)} if self._precision is Precision.INT8 else {})})
