"""Precision parity: does a reduced-precision artifact label frames like the FP32 reference?

Three checks, all on real frames (the user's video/folder or CamVid):

- pixel agreement: share of pixels with the same label as the FP32 reference;
- per-class IoU agreement: IoU of each class's candidate mask against its
  reference mask, and their mean (mIoU "vs FP32 labels"); ``100 * (1 - mIoU)``
  is the drop in points that the INT8 budget is checked against;
- NaN/Inf: count of non-finite logits when the artifact exposes logits.

Runners are plain callables ``frames uint8 [N,H,W,3] -> labels uint8 [N,H,W]``
(or ``(labels, logits)``), so a backend's ``infer``, an ONNX Runtime session
or a TensorRT engine can all be compared the same way.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from rtseg.core.errors import ExportError, UserInputError

Runner = Callable[[np.ndarray], Any]

#: FP16 labels must agree with FP32 on at least this share of pixels (issue acceptance).
FP16_MIN_AGREEMENT = 0.995
#: Default INT8 budget: mIoU vs FP32 labels may drop at most this many points.
INT8_MIOU_BUDGET = 1.0


def label_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Share of pixels on which two label maps agree."""
    if reference.shape != candidate.shape:
        raise ValueError(f"label shapes differ: {reference.shape} vs {candidate.shape}")
    return float(np.mean(reference == candidate))


def count_nonfinite(x: np.ndarray) -> int:
    """Number of NaN or +-Inf values (0 for integer arrays)."""
    if not np.issubdtype(x.dtype, np.floating):
        return 0
    return int(x.size - np.count_nonzero(np.isfinite(x)))


@dataclass(frozen=True)
class ParityReport:
    """Candidate vs reference on the same frames."""

    reference: str
    candidate: str
    frames: int
    pixels: int
    pixel_agreement: float
    worst_frame_agreement: float
    class_iou: dict[str, float]  # only classes present in reference or candidate
    miou: float  # mean of class_iou, in [0, 1]
    nonfinite: int  # NaN/Inf count in candidate logits (0 when no logits were given)
    logits_checked: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def miou_drop_points(self) -> float:
        """How many mIoU points the candidate loses against the reference labels."""
        return 100.0 * (1.0 - self.miou)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["miou_drop_points"] = self.miou_drop_points
        return d

    def summary(self) -> str:
        """A few human-readable lines for the CLI."""
        lines = [
            f"parity {self.candidate} vs {self.reference}: {self.frames} frames, {self.pixels} pixels",
            f"  pixel agreement {self.pixel_agreement:.4%} (worst frame {self.worst_frame_agreement:.4%})",
            f"  mIoU vs reference labels {self.miou:.4f} (drop {self.miou_drop_points:.2f} points)",
        ]
        worst = sorted(self.class_iou.items(), key=lambda kv: kv[1])[:3]
        if worst:
            lines.append("  lowest class IoU: " + ", ".join(f"{k} {v:.3f}" for k, v in worst))
        lines.append(f"  NaN/Inf in logits: {self.nonfinite}" if self.logits_checked
                     else "  NaN/Inf: not checked (no logits output)")
        return "\n".join(lines)


def split_outputs(out: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A runner's result as ``(labels, logits or None)``: runners return labels alone, or both."""
    if isinstance(out, tuple | list):
        labels = np.asarray(out[0])
        logits = np.asarray(out[1]) if len(out) > 1 else None
        return labels, logits
    return np.asarray(out), None


def parity_report(
    reference: Runner,
    candidate: Runner,
    batches: Iterable[np.ndarray],
    class_names: Sequence[str],
    *,
    reference_name: str = "fp32",
    candidate_name: str = "candidate",
) -> ParityReport:
    """Run both runners on every batch and compare their labels (and candidate logits).

    ``batches``: uint8 ``[N,H,W,3]`` BGR arrays at the artifact's input size.
    """
    from rtseg.eval.metrics import ConfusionMatrix

    n_cls = len(class_names)
    # The reference labels play the ground truth: IoU of the candidate against them.
    conf = ConfusionMatrix(n_cls)
    agree_px = 0
    total_px = 0
    frames = 0
    worst = 1.0
    nonfinite = 0
    logits_checked = False
    for batch in batches:
        ref_labels, _ = split_outputs(reference(batch))
        cand_labels, cand_logits = split_outputs(candidate(batch))
        if ref_labels.shape != cand_labels.shape:
            raise ExportError(f"{candidate_name} returned labels of shape {cand_labels.shape}, "
                              f"{reference_name} {ref_labels.shape}; they must run the same input size")
        if cand_logits is not None:
            logits_checked = True
            nonfinite += count_nonfinite(cand_logits)
        conf.update(cand_labels, ref_labels)
        eq = ref_labels == cand_labels
        agree_px += int(eq.sum())
        total_px += eq.size
        for i in range(eq.shape[0]):
            worst = min(worst, float(eq[i].mean()))
        frames += eq.shape[0]
    if frames == 0:
        raise UserInputError("parity check got no frames; point it at a video or folder with images")
    iou = conf.result().iou
    per_class = {class_names[i]: float(iou[i]) for i in range(n_cls) if not math.isnan(iou[i])}
    miou = float(np.mean(list(per_class.values()))) if per_class else 1.0
    return ParityReport(reference_name, candidate_name, frames, total_px, agree_px / total_px, worst,
                        per_class, miou, nonfinite, logits_checked)


def check_fp16(report: ParityReport, *, min_agreement: float = FP16_MIN_AGREEMENT) -> None:
    """Raise ``ExportError`` unless the FP16 candidate agrees well enough and is finite."""
    if report.nonfinite:
        raise ExportError(f"{report.candidate} produced {report.nonfinite} NaN/Inf logits; FP16 overflows in "
                          "this model: build with --precision fp32 or keep more ops in FP32")
    if report.pixel_agreement < min_agreement:
        raise ExportError(f"{report.candidate} labels agree with {report.reference} on only "
                          f"{report.pixel_agreement:.3%} of pixels (need {min_agreement:.2%}); "
                          "use --precision fp32 for this model")


def check_int8_budget(report: ParityReport, *, budget_points: float = INT8_MIOU_BUDGET) -> None:
    """Reject an INT8 artifact whose mIoU vs FP32 labels drops more than ``budget_points``."""
    if report.nonfinite:
        raise ExportError(f"{report.candidate} produced {report.nonfinite} NaN/Inf logits; "
                          "INT8 artifact rejected: use --precision fp16")
    if report.miou_drop_points > budget_points:
        raise ExportError(
            f"INT8 rejected: mIoU vs FP32 labels drops {report.miou_drop_points:.2f} points "
            f"(budget {budget_points:g}); calibrate on more representative frames (--calib-source), "
            "raise the budget, or use --precision fp16 (with labelled frames, `rtseg-eval INT8.onnx "
            "--baseline FP32.onnx` measures the real accuracy cost)"
        )


# -- CPU runners for verification (ONNX files) ---------------------------------

def onnxruntime_runner(onnx_path: str | os.PathLike[str], *, threads: int | None = None) -> Runner:
    """ONNX Runtime CPU session as a runner (returns all outputs: labels[, logits])."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name

    def run(frames: np.ndarray) -> Any:
        outs = sess.run(None, {in_name: frames})
        return tuple(outs) if len(outs) > 1 else outs[0]

    return run


def cpu_has_fp16_arithmetic() -> bool:
    """Whether OpenVINO's CPU plugin can compute in FP16 here (AVX512-FP16 or AMX-FP16)."""
    import openvino as ov

    return "FP16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def fp16_emulation_runner(mixed_fp16_onnx: str | os.PathLike[str], *, threads: int | None = None) -> Runner:
    """Run a mixed-precision ONNX on ONNX Runtime with every FP16 tensor rounded to FP16.

    For CPUs without FP16 arithmetic: FP16 weights and FP16 rounding (precision
    and range) between ops, FP32 arithmetic inside each op; see
    :mod:`rtseg.export.fp16_emulation`. Graph optimisations are off so that no
    optimiser folds the rounding casts away.
    """
    import onnx
    import onnxruntime as ort

    from rtseg.export.fp16_emulation import emulate_fp16_rounding

    emulated = emulate_fp16_rounding(onnx.load(str(mixed_fp16_onnx)))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(emulated.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name

    def run(frames: np.ndarray) -> Any:
        outs = sess.run(None, {in_name: frames})
        return tuple(outs) if len(outs) > 1 else outs[0]

    return run


def openvino_runner(onnx_path: str | os.PathLike[str], *, inference_precision: str = "f32",
                    threads: int | None = None) -> tuple[Runner, Counter[tuple[str, str]]]:
    """OpenVINO CPU runner with ``INFERENCE_PRECISION_HINT`` and what actually executes.

    Returns the runner and a count of ``(layerType, runtimePrecision)`` over the
    compiled model's execution graph, so a caller can prove that FP16 arithmetic
    ran (e.g. ``("Convolution", "f16")``) instead of trusting the hint.
    """
    import openvino as ov

    core = ov.Core()
    if inference_precision == "f16" and not cpu_has_fp16_arithmetic():
        caps = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        raise UserInputError("this CPU has no FP16 arithmetic (OpenVINO reports "
                             f"{', '.join(caps)}); run the FP16 check on a CPU with AVX512-FP16 or AMX-FP16, "
                             "or use fp16_emulation_runner")
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": inference_precision}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(str(onnx_path), "CPU", config)
    executed: Counter[tuple[str, str]] = Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        executed[(rt["layerType"].astype(str), rt["runtimePrecision"].astype(str))] += 1
    request = compiled.create_infer_request()
    n_out = len(compiled.outputs)

    def run(frames: np.ndarray) -> Any:
        res = request.infer({0: frames})
        outs = [np.array(res[compiled.outputs[i]]) for i in range(n_out)]
        return tuple(outs) if n_out > 1 else outs[0]

    return run, executed


def parity_on_source(
    reference: Runner,
    candidate: Runner,
    source: str | os.PathLike[str],
    *,
    input_size: tuple[int, int],
    class_names: Sequence[str],
    batch: int = 1,
    max_frames: int = 50,
    precision: str = "fp16",
    int8_budget: float = INT8_MIOU_BUDGET,
    min_agreement: float = FP16_MIN_AGREEMENT,
    reference_name: str = "fp32",
    candidate_name: str | None = None,
) -> ParityReport:
    """``rtseg-bench --parity``: compare two runners on frames of a video/folder and apply the
    acceptance rule for ``precision`` (fp16: pixel agreement; int8: mIoU budget).

    Returns the report; raises ``ExportError`` (with the report's numbers) when it fails.
    """
    from rtseg.export.quantize import read_frames

    frames = read_frames(source, input_size, max_frames)
    batches = [frames[i:i + batch] for i in range(0, len(frames) - batch + 1, batch)]
    report = parity_report(reference, candidate, batches, class_names, reference_name=reference_name,
                           candidate_name=candidate_name or precision)
    if precision in ("fp16", "f16"):
        check_fp16(report, min_agreement=min_agreement)
    elif precision == "int8":
        check_int8_budget(report, budget_points=int8_budget)
    return report
