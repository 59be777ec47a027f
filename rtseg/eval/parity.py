"""Precision parity: does a candidate backend label frames like a reference? One report type for every check.

Used by ``rtseg-bench --parity`` (FP16/INT8 vs FP32 on a video), the INT8
acceptance of ``rtseg-export`` and the engine builder, and ``rtseg-eval
--parity-with`` (two backends on a labelled split). Both sides are
``Backend``s: the candidate's logits, when its artifact has them
(``Backend.has_logits``), are checked for NaN/Inf.

Three figures, all on real frames:

- pixel agreement: share of pixels with the same label as the reference
  (overall, and the worst frame);
- per-class IoU agreement: IoU of each class's candidate mask against its
  reference mask, and their mean (mIoU "vs reference labels");
  ``100 * (1 - mIoU)`` is the drop in points the INT8 budget is checked against;
- NaN/Inf: count of non-finite logits when the candidate exposes logits.

Threading: everything runs on the caller's thread, which owns both backends.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from rtseg.core.errors import ExportError, UserInputError
from rtseg.core.precision import Precision
from rtseg.eval.metrics import ConfusionMatrix


class LabelSource(Protocol):
    """What parity needs of a side: ``rtseg.runtime.base.Backend`` has it (structurally, so
    this library module, which training uses, imports no backend code)."""

    @property
    def has_logits(self) -> bool: ...

    def infer(self, frames: np.ndarray) -> np.ndarray: ...

    def infer_with_logits(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

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
    """Candidate vs reference on the same frames (the one parity report of rtseg)."""

    reference: str
    candidate: str
    frames: int
    pixels: int
    pixel_agreement: float
    worst_frame_agreement: float
    class_iou: dict[str, float]  # only classes present in reference or candidate
    miou: float  # mean of class_iou, in [0, 1]
    nonfinite: int  # NaN/Inf count in candidate logits (0 when no logits were checked)
    logits_checked: bool
    per_frame: tuple[tuple[str, float], ...] = ()  # (frame name, agreement), when frames have names
    #: both sides' mIoU against ground truth, when the frames were labelled (``rtseg-eval --parity-with``)
    reference_miou_gt: float | None = None
    candidate_miou_gt: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def miou_drop_points(self) -> float:
        """How many mIoU points the candidate loses against the reference labels."""
        return 100.0 * (1.0 - self.miou)

    def worst(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` least agreeing named frames."""
        return sorted(self.per_frame, key=lambda t: t[1])[:k]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["per_frame"] = [{"name": n, "agreement": a} for n, a in self.per_frame]
        d["miou_drop_points"] = self.miou_drop_points
        return d

    def summary(self) -> str:
        """A few human-readable lines for the CLIs."""
        lines = [
            f"parity {self.candidate} vs {self.reference}: {self.frames} frames, {self.pixels} pixels",
            f"  pixel agreement {self.pixel_agreement:.4%} (worst frame {self.worst_frame_agreement:.4%})",
            f"  mIoU vs reference labels {self.miou:.4f} (drop {self.miou_drop_points:.2f} points)",
        ]
        worst = sorted(self.class_iou.items(), key=lambda kv: kv[1])[:3]
        if worst:
            lines.append("  lowest class IoU: " + ", ".join(f"{k} {v:.3f}" for k, v in worst))
        if self.reference_miou_gt is not None and self.candidate_miou_gt is not None:
            lines.append(f"  mIoU against ground truth: {self.reference} {100 * self.reference_miou_gt:.2f}%, "
                         f"{self.candidate} {100 * self.candidate_miou_gt:.2f}% (difference "
                         f"{100 * (self.candidate_miou_gt - self.reference_miou_gt):+.2f} points)")
        if self.per_frame:
            lines.append("  least agreeing frames: " + ", ".join(f"{n} {a:.2%}" for n, a in self.worst()))
        lines.append(f"  NaN/Inf in logits: {self.nonfinite}" if self.logits_checked
                     else "  NaN/Inf: not checked (no logits output)")
        return "\n".join(lines)


class ParityAccumulator:
    """Builds a ``ParityReport`` batch by batch from label maps (and optional candidate logits)."""

    def __init__(self, class_names: Sequence[str], *, reference: str = "reference",
                 candidate: str = "candidate") -> None:
        self.class_names = list(class_names)
        self.reference, self.candidate = reference, candidate
        # The reference labels play the ground truth: IoU of the candidate against them.
        self._conf = ConfusionMatrix(len(self.class_names))
        self._agree = self._total = self._frames = self._nonfinite = 0
        self._worst = 1.0
        self._logits = False
        self._per_frame: list[tuple[str, float]] = []

    def add(self, ref_labels: np.ndarray, cand_labels: np.ndarray, cand_logits: np.ndarray | None = None,
            names: Sequence[str] | None = None) -> None:
        """One batch: uint8 ``[N,H,W]`` labels of both sides; ``names`` of its frames, if any."""
        if ref_labels.shape != cand_labels.shape:
            raise ExportError(f"{self.candidate} returned labels of shape {cand_labels.shape}, "
                              f"{self.reference} {ref_labels.shape}; they must run the same input size")
        if cand_logits is not None:
            self._logits = True
            self._nonfinite += count_nonfinite(cand_logits)
        self._conf.update(cand_labels, ref_labels)
        eq = ref_labels == cand_labels
        self._agree += int(eq.sum())
        self._total += eq.size
        for i in range(eq.shape[0]):
            a = float(eq[i].mean())
            self._worst = min(self._worst, a)
            if names is not None:
                self._per_frame.append((str(names[i]), a))
        self._frames += eq.shape[0]

    def report(self, **ground_truth: float | None) -> ParityReport:
        """The report so far (``reference_miou_gt``/``candidate_miou_gt`` may be passed)."""
        if self._frames == 0:
            raise UserInputError("parity check got no frames; point it at a video or folder with images")
        iou = self._conf.result().iou
        per_class = {self.class_names[i]: float(iou[i]) for i in range(len(self.class_names))
                     if not math.isnan(iou[i])}
        miou = float(np.mean(list(per_class.values()))) if per_class else 1.0
        return ParityReport(self.reference, self.candidate, self._frames, self._total, self._agree / self._total,
                            self._worst, per_class, miou, self._nonfinite, self._logits, tuple(self._per_frame),
                            **ground_truth)  # type: ignore[arg-type]


def outputs(backend: LabelSource, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(labels, logits or None)`` of an active backend: logits whenever its artifact has them."""
    if backend.has_logits:
        return backend.infer_with_logits(frames)
    return backend.infer(frames), None


def compare_backends(reference: LabelSource, candidate: LabelSource, batches: Iterable[np.ndarray],
                     class_names: Sequence[str], *, reference_name: str = "f32",
                     candidate_name: str = "candidate") -> ParityReport:
    """Run two active backends on every batch (uint8 ``[N,H,W,3]`` BGR at their input size) and compare."""
    acc = ParityAccumulator(class_names, reference=reference_name, candidate=candidate_name)
    for batch in batches:
        ref, _ = outputs(reference, batch)
        cand, logits = outputs(candidate, batch)
        acc.add(ref, cand, logits)
    return acc.report()


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


def check_precision(report: ParityReport, precision: Precision | str, *, int8_budget: float = INT8_MIOU_BUDGET,
                    min_agreement: float = FP16_MIN_AGREEMENT) -> None:
    """The acceptance rule of ``precision``: fp16 pixel agreement, int8 the mIoU budget; f32 and bf16
    have none (bf16 is a backend setting a user picks knowingly, reported but not gated)."""
    p = Precision.parse(precision)
    if p is Precision.INT8:
        check_int8_budget(report, budget_points=int8_budget)
    elif p is Precision.FP16:
        check_fp16(report, min_agreement=min_agreement)
