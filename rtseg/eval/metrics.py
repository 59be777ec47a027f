"""Confusion matrix and the metrics derived from it (numpy only).

Rows are ground truth, columns are predictions. Pixels labelled
``ignore_index`` (or with any value outside the class range) are not counted.
IoU of a class is TP / (TP + FP + FN); a class that appears neither in the
ground truth nor in the predictions has no IoU (NaN) and is left out of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class ConfusionMatrix:
    """Accumulates a ``[C, C]`` int64 confusion matrix over many label maps."""

    def __init__(self, num_classes: int, ignore_index: int | None = None) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = np.zeros((num_classes, num_classes), dtype=np.int64)
        # Ground-truth pixels whose prediction was outside the class range (a
        # broken artifact): false negatives that belong to no column.
        self.fn_extra = np.zeros(num_classes, dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one or more label maps (any matching shapes, integer dtypes)."""
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
        g = gt.ravel().astype(np.int64)
        p = pred.ravel().astype(np.int64)
        keep = (g >= 0) & (g < self.num_classes)
        if self.ignore_index is not None:
            keep &= g != self.ignore_index
        g, p = g[keep], p[keep]
        # Predictions outside the class range cannot happen with an argmax over
        # num_classes logits; clip them into a miss rather than crash.
        p = np.where((p >= 0) & (p < self.num_classes), p, -1)
        miss = p < 0
        if miss.any():
            self.fn_extra += np.bincount(g[miss], minlength=self.num_classes)
            g, p = g[~miss], p[~miss]
        n = self.num_classes
        self.mat += np.bincount(g * n + p, minlength=n * n).reshape(n, n)

    def merge(self, other: ConfusionMatrix) -> None:
        self.mat += other.mat
        self.fn_extra += other.fn_extra

    def result(self, class_names: tuple[str, ...] | list[str] | None = None) -> SegMetrics:
        return SegMetrics.from_confusion(self.mat, class_names, self.fn_extra)


@dataclass
class SegMetrics:
    """mIoU, per-class IoU, pixel accuracy and the confusion matrix behind them."""

    class_names: tuple[str, ...]
    iou: np.ndarray  # float64 [C], NaN where a class is absent from GT and predictions
    miou: float
    pixel_accuracy: float
    mean_class_accuracy: float
    confusion: np.ndarray  # int64 [C, C], rows = ground truth

    @classmethod
    def from_confusion(cls, mat: np.ndarray, class_names: tuple[str, ...] | list[str] | None = None,
                       fn_extra: np.ndarray | None = None) -> SegMetrics:
        mat = np.asarray(mat, dtype=np.int64)
        n = mat.shape[0]
        names = tuple(class_names) if class_names is not None else tuple(f"class {i}" for i in range(n))
        tp = np.diag(mat).astype(np.float64)
        gt_total = mat.sum(1).astype(np.float64)
        if fn_extra is not None:
            gt_total = gt_total + fn_extra
        pred_total = mat.sum(0).astype(np.float64)
        union = gt_total + pred_total - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            acc = np.where(gt_total > 0, tp / gt_total, np.nan)
        total = gt_total.sum()
        return cls(
            class_names=names,
            iou=iou,
            miou=float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
            pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
            mean_class_accuracy=float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
            confusion=mat,
        )

    def per_class(self) -> dict[str, float | None]:
        return {n: (None if np.isnan(v) else float(v)) for n, v in zip(self.class_names, self.iou, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "miou": self.miou,
            "pixel_accuracy": self.pixel_accuracy,
            "mean_class_accuracy": self.mean_class_accuracy,
            "per_class_iou": self.per_class(),
            "class_names": list(self.class_names),
            "confusion_matrix": self.confusion.tolist(),
        }

    def format_table(self) -> str:
        width = max(12, *(len(n) for n in self.class_names))
        lines = [f"{'class':<{width}}  {'IoU %':>7}", "-" * (width + 9)]
        for name, v in zip(self.class_names, self.iou, strict=True):
            lines.append(f"{name:<{width}}  {'   n/a' if np.isnan(v) else f'{100 * v:7.2f}'}")
        lines.append("-" * (width + 9))
        lines.append(f"{'mIoU':<{width}}  {100 * self.miou:7.2f}")
        lines.append(f"{'pixel acc':<{width}}  {100 * self.pixel_accuracy:7.2f}")
        lines.append(f"{'mean class acc':<{width}}  {100 * self.mean_class_accuracy:7.2f}")
        return "\n".join(lines)
