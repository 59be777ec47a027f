"""Explicit INT8 quantization: an ONNX with Q/DQ nodes, calibrated on the user's own frames.

TensorRT 10.1 deprecated its implicit-quantization calibrators and TensorRT 11
removed ``BuilderFlag.INT8``; the supported path on both is explicit
quantization: the ONNX carries QuantizeLinear/DequantizeLinear pairs with the
scales baked in, and a strongly typed build honours them. We produce that ONNX
with ONNX Runtime's static quantizer, fed by frames decoded from the user's
video or image folder.

Choices, each because of what TensorRT accepts or what keeps accuracy:

- activations and weights INT8 *symmetric* (zero point 0): TensorRT's INT8 Q/DQ
  requires zero point 0;
- weights per output channel (TensorRT's recommended weight granularity);
- weights 8-bit by default (``weight_bits=8``: TensorRT's full range); ``weight_bits=7``
  (ONNX Runtime's ``reduce_range``) for ONNX Runtime on x86 CPUs without VNNI, whose INT8
  kernels saturate with 8-bit weights (``rtseg.core.cpu.int8_saturates``); recorded in the
  file's ``rtseg.int8_weight_bits``;
- biases left in FP32 (TensorRT fuses them; it does not dequantize INT32);
- only Conv/ConvTranspose/Gemm/MatMul inputs are quantized; the normalisation
  at the graph start, the attention/pooling paths and the ArgMax stay float,
  like the FP16 path keeps them in FP32;
- the calibration reader feeds *uint8 BGR frames at model size*, exactly what
  the deploy graph takes, so the graph's own preprocessing is what gets
  calibrated (read by ``rtseg.pipeline.sampling.read_frames``: the pipeline's
  own sources and resize).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rtseg.core.atomic import atomic_path
from rtseg.core.errors import ExportError, UserInputError
from rtseg.core.precision import Precision

if TYPE_CHECKING:
    import onnx

CALIB_METHODS = ("minmax", "percentile", "entropy")
#: Ops whose inputs get Q/DQ pairs.
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(frozen=True)
class Int8Report:
    path: Path
    calibration_frames: int
    method: str
    quantized_nodes: int  # nodes of QUANTIZED_OPS that received Q/DQ inputs
    weight_bits: int = 8


def _input_spec(model: onnx.ModelProto) -> tuple[str, tuple[int, int, int]]:
    from onnx import TensorProto

    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ExportError(f"expected one graph input (frames), found {len(inputs)}; quantize an rtseg deploy graph")
    tt = inputs[0].type.tensor_type
    dims = [d.dim_value for d in tt.shape.dim]
    if tt.elem_type != TensorProto.UINT8 or len(dims) != 4 or dims[3] != 3 or min(dims[1:]) <= 0:
        raise ExportError("INT8 quantization expects the deploy graph's uint8 [N,H,W,3] frames input with a fixed "
                          "size; re-export with rtseg-export --format onnx")
    # A dynamic batch dimension (0 here) is calibrated one frame at a time.
    return inputs[0].name, (max(1, dims[0]), dims[1], dims[2])


def check_weight_bits(bits: int) -> int:
    """The INT8 weight range, 7 or 8 bits; anything else is refused in one line."""
    if bits not in (7, 8):
        raise UserInputError(f"INT8 weights are 7 or 8 bits, got {bits}: 7 for CPUs without VNNI, 8 for TensorRT")
    return bits


class FrameCalibrationReader:
    """ONNX Runtime ``CalibrationDataReader`` over uint8 frames, in batches the graph takes."""

    def __init__(self, input_name: str, frames: np.ndarray, batch: int,
                 progress: Callable[[str, int, int], None] | None = None) -> None:
        self.input_name = input_name
        self.progress = progress
        self._done = 0
        n = (len(frames) // batch) * batch
        if n == 0:
            raise UserInputError(f"need at least {batch} calibration frames for batch {batch}, got {len(frames)}")
        self._batches = [frames[i:i + batch] for i in range(0, n, batch)]
        self._it: Iterator[np.ndarray] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self._it, None)
        if self.progress is not None:
            # Called from ONNX Runtime's calibration loop, in the calling thread;
            # an exception here (Ctrl-C) aborts the calibration.
            self.progress("INT8 calibration", min(self._done, len(self._batches)), len(self._batches))
        self._done += 1
        return None if b is None else {self.input_name: np.ascontiguousarray(b)}

    def rewind(self) -> None:
        self._it = iter(self._batches)
        self._done = 0


def quantize_int8(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    calib_source: str | os.PathLike[str] | None = None,
    calib_frames: np.ndarray | None = None,
    max_frames: int = 64,
    method: str = "minmax",
    progress: Callable[[str, int, int], None] | None = None,
    weight_bits: int = 8,
) -> Int8Report:
    """File in, file out: write the explicit Q/DQ INT8 version of an FP32 deploy-graph ONNX atomically.

    Calibrates on ``calib_frames`` (uint8 ``[N,H,W,3]`` at model size) or on
    frames read from ``calib_source`` (video or folder). ``progress(phase, step, steps)``
    is called once per calibration batch. ``weight_bits``: 8 (TensorRT) or 7 (ONNX Runtime on a CPU
    without VNNI; see the module docstring).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from rtseg.export.precision import PRECISION_META_KEY, _preprocessing_nodes, _set_meta
    from rtseg.runtime.onnx_file import INT8_WEIGHT_BITS_META_KEY

    check_weight_bits(weight_bits)
    if method not in CALIB_METHODS:
        raise UserInputError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIB_METHODS)}")
    src = Path(onnx_path)
    if not src.is_file():
        raise UserInputError(f"ONNX file {src} not found; export one first with `rtseg-export --format onnx`")
    model = onnx.load(str(src))
    name, (batch, h, w) = _input_spec(model)
    if calib_frames is None:
        if calib_source is None:
            raise UserInputError("INT8 needs calibration frames: pass --calib-source VIDEO_OR_FOLDER "
                                 "with footage like what the model will see")
        from rtseg.pipeline.sampling import read_frames  # the pipeline's sources and resize

        calib_frames = read_frames(calib_source, (h, w), max_frames)
    if calib_frames.dtype != np.uint8 or calib_frames.shape[1:] != (h, w, 3):
        raise UserInputError(f"calibration frames must be uint8 [N,{h},{w},3], got "
                             f"{calib_frames.dtype} {tuple(calib_frames.shape)}")

    pre = _preprocessing_nodes(model.graph)
    exclude = [n.name for i, n in enumerate(model.graph.node) if i in pre and n.name]
    reader = FrameCalibrationReader(name, calib_frames, batch, progress)
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
               "entropy": CalibrationMethod.Entropy}
    extra: dict[str, Any] = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
    }
    out = Path(out_path)
    with atomic_path(out) as tmp:
        try:
            quantize_static(
                str(src), str(tmp), reader,  # type: ignore[arg-type]  # duck-typed reader
                quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                calibrate_method=methods[method], extra_options=extra, reduce_range=weight_bits == 7,
            )
        except (RuntimeError, ValueError) as exc:
            raise ExportError(f"INT8 calibration failed: {str(exc).splitlines()[0]}; "
                              "try --precision fp16 or another calibration method") from exc
        q = onnx.load(str(tmp))
        # quantize_static keeps metadata_props on current ONNX Runtime; make sure
        # the rtseg metadata survives whatever version did the work.
        have = {p.key for p in q.metadata_props}
        for p in model.metadata_props:
            if p.key not in have:
                _set_meta(q, p.key, p.value)
        _set_meta(q, PRECISION_META_KEY, str(Precision.INT8))
        _set_meta(q, INT8_WEIGHT_BITS_META_KEY, str(weight_bits))
        producers = {o: n for n in q.graph.node for o in n.output}
        quantized = sum(
            1 for n in q.graph.node if n.op_type in QUANTIZED_OPS
            and n.input and n.input[0] in producers and producers[n.input[0]].op_type == "DequantizeLinear"
        )
        if quantized == 0:
            raise ExportError("INT8 quantization inserted no Q/DQ nodes (no Conv/MatMul found); "
                              "this model cannot run in INT8, use --precision fp16")
        onnx.save(q, str(tmp))
    return Int8Report(out, int(len(calib_frames) // batch * batch), method, quantized, weight_bits)
