"""Precision parity on a video or image folder, through backends: ``rtseg-bench --parity``,
INT8 acceptance in ``rtseg-export`` and engine verification all run this.

    with reference, candidate:
        report = parity_on_source(reference, candidate, "clip.mp4", precision="int8")

Frames come from ``rtseg.pipeline.sampling.read_frames`` (the pipeline's own
sources and resize); both sides are ``Backend``s, compared by
``rtseg.eval.parity.compare_backends`` (one report type), and the acceptance
rule of the candidate's precision is applied (fp16: pixel agreement, int8:
the mIoU budget).

Threading: the caller's thread owns (and has activated) both backends.
"""

from __future__ import annotations

import os
from pathlib import Path

from rtseg.core.errors import UserInputError
from rtseg.core.precision import Precision
from rtseg.eval.parity import (
    FP16_MIN_AGREEMENT,
    INT8_MIOU_BUDGET,
    ParityReport,
    check_precision,
    compare_backends,
)
from rtseg.pipeline.sampling import read_frames
from rtseg.runtime.base import Backend


def parity_on_source(
    reference: Backend,
    candidate: Backend,
    source: str | os.PathLike[str],
    *,
    max_frames: int = 50,
    precision: str | Precision | None = None,
    int8_budget: float = INT8_MIOU_BUDGET,
    min_agreement: float = FP16_MIN_AGREEMENT,
    reference_name: str = "f32",
    candidate_name: str | None = None,
) -> ParityReport:
    """Compare two active backends on up to ``max_frames`` frames of ``source`` and apply the
    acceptance rule of ``precision`` (default: what the candidate reports it runs).

    Returns the report; raises ``ExportError`` (with the report's numbers) when it fails.
    """
    if reference.input_shape != candidate.input_shape:
        raise UserInputError(f"the reference takes {reference.input_shape} and the candidate "
                             f"{candidate.input_shape} (batch, H, W); export both alike")
    n, h, w = candidate.input_shape
    frames = read_frames(source, (h, w), max_frames)
    if len(frames) < n:
        raise UserInputError(f"{Path(source).name} gave {len(frames)} frames, fewer than the batch of {n}")
    batches = [frames[i:i + n] for i in range(0, len(frames) - n + 1, n)]
    p = Precision.parse(precision) if precision is not None else candidate.info().precision
    report = compare_backends(reference, candidate, batches, reference.meta.class_names,
                              reference_name=reference_name, candidate_name=candidate_name or str(p))
    check_precision(report, p, int8_budget=int8_budget, min_agreement=min_agreement)
    return report


def fp16_candidate(fp16_onnx: str | os.PathLike[str], *, threads: int | None = None) -> tuple[Backend, str]:
    """The backend that checks a mixed-FP16 ONNX on this CPU, and how to describe it.

    OpenVINO at f16 where the CPU has FP16 arithmetic (AVX512-FP16, AMX-FP16);
    elsewhere ONNX Runtime with FP16 rounding emulated between ops, said plainly
    in the description (FP16 weights and tensors, FP32 arithmetic inside each op).
    """
    from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from rtseg.runtime.openvino_backend import OpenVinoBackend, cpu_has_fp16_arithmetic

    if cpu_has_fp16_arithmetic():
        return (OpenVinoBackend(Path(fp16_onnx), precision=Precision.FP16, threads=threads),
                "mixed-FP16 ONNX on OpenVINO f16")
    return (OnnxRuntimeBackend(Path(fp16_onnx), threads=threads, emulate_fp16=True),
            "mixed-FP16 ONNX, FP16 rounding emulated on ONNX Runtime (this CPU has no FP16 arithmetic: "
            "FP16 weights and tensors, FP32 arithmetic inside each op)")
