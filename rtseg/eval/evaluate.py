"""Evaluate a deploy artifact on a dataset split, through its backend.

Every backend runs the deploy graph (uint8 BGR frames in, uint8 labels out),
so what is measured here is exactly what ships: frames are resized to the
artifact's input size the way the live pipeline does (linear), and predicted
labels are resized back to the ground truth's size (nearest) for scoring.

Threading: everything here runs on the caller's thread, which owns the
backend(s) for the duration of the call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from rtseg.core.errors import ExportError, UserInputError
from rtseg.data.augment import resize_for_model
from rtseg.data.datasets import SegDataset
from rtseg.eval.metrics import ConfusionMatrix, SegMetrics
from rtseg.eval.parity import ParityAccumulator, ParityReport, outputs

ProgressFn = Callable[[int, int], None]


def labels_to_size(pred: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Resize a uint8 label map to ``shape`` (H, W) with nearest neighbour (ids are not intensities)."""
    if pred.shape == tuple(shape):
        return pred
    return cv2.resize(pred, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def check_compatible(backend: Any, ds: SegDataset) -> None:
    """Refuse an artifact whose classes differ from the dataset's."""
    meta = backend.meta
    if meta.num_classes != ds.info.num_classes:
        raise UserInputError(
            f"the artifact predicts {meta.num_classes} classes but dataset {ds.info.name} has "
            f"{ds.info.num_classes}; evaluate it on a dataset with the same classes"
        )


def _batches(backend: Any, ds: SegDataset, limit: int | None, *, with_logits: bool = False):
    """Yield ``(indices, labels, logits or None)`` per backend batch; a fixed-batch artifact gets
    its last batch padded with repeats of the last frame, whose results are dropped. Logits only
    with ``with_logits`` and when the backend's artifact has them."""
    n_batch, h, w = backend.input_shape
    n = min(len(ds), limit) if limit else len(ds)
    for s in range(0, n, n_batch):
        idx = list(range(s, min(n, s + n_batch)))
        frames = [resize_for_model(ds.load_image(i), (h, w)) for i in idx]
        while len(frames) < n_batch:
            frames.append(frames[-1])
        batch = np.stack(frames)
        labels, logits = outputs(backend, batch) if with_logits else (backend.infer(batch), None)
        yield idx, labels[: len(idx)], None if logits is None else logits[: len(idx)]


def evaluate_backend(backend: Any, ds: SegDataset, *, limit: int | None = None,
                     progress: ProgressFn | None = None) -> SegMetrics:
    """Confusion-matrix metrics of an active backend on ``ds`` (the first ``limit`` pairs)."""
    check_compatible(backend, ds)
    cm = ConfusionMatrix(ds.info.num_classes, ds.info.ignore_index)
    n = min(len(ds), limit) if limit else len(ds)
    done = 0
    for idx, labels, _ in _batches(backend, ds, limit):
        for i, pred in zip(idx, labels, strict=True):
            gt = ds.load_label(i)
            cm.update(labels_to_size(pred, gt.shape), gt)
        done += len(idx)
        if progress:
            progress(done, n)
    return cm.result(ds.info.class_names)


def parity(backend_a: Any, backend_b: Any, ds: SegDataset, *, limit: int | None = None,
           names: tuple[str, str] = ("a", "b"), progress: ProgressFn | None = None) -> ParityReport:
    """Run both active backends on the same frames; compare their labels frame by frame
    (``b`` the candidate, ``a`` the reference) and score both against the ground truth.

    Returns the one ``ParityReport`` type, with per-frame agreement and both sides'
    mIoU against ground truth filled in."""
    check_compatible(backend_a, ds)
    check_compatible(backend_b, ds)
    if backend_a.input_shape[1:] != backend_b.input_shape[1:]:
        raise UserInputError(f"the two artifacts take different input sizes ({backend_a.input_shape[1:]} vs "
                             f"{backend_b.input_shape[1:]}); export both at the same size to compare them")
    acc = ParityAccumulator(ds.info.class_names, reference=names[0], candidate=names[1])
    cms = [ConfusionMatrix(ds.info.num_classes, ds.info.ignore_index) for _ in range(2)]
    n = min(len(ds), limit) if limit else len(ds)
    it_b = _batches(backend_b, ds, limit, with_logits=True)
    done = 0
    for idx, la, _ in _batches(backend_a, ds, limit):
        idx_b, lb, logits_b = next(it_b)
        assert idx_b == idx
        acc.add(la, lb, logits_b, names=[ds.name_of(i) for i in idx])
        for i, pa, pb in zip(idx, la, lb, strict=True):
            gt = ds.load_label(i)
            cms[0].update(labels_to_size(pa, gt.shape), gt)
            cms[1].update(labels_to_size(pb, gt.shape), gt)
        done += len(idx)
        if progress:
            progress(done, n)
    return acc.report(reference_miou_gt=cms[0].result(ds.info.class_names).miou,
                      candidate_miou_gt=cms[1].result(ds.info.class_names).miou)


def accuracy_drop(baseline: SegMetrics, candidate: SegMetrics,
                  names: tuple[str, str] = ("baseline", "candidate")) -> dict[str, Any]:
    """mIoU drop (points) of ``candidate`` against ground truth, relative to ``baseline``.

    This is the accuracy question a reduced-precision artifact must answer when
    labelled data exists (both evaluated on the same split against its ground
    truth). It differs from the parity check against FP32 *labels*, which has no
    ground truth to lean on and counts every flipped near-tie pixel of a class
    the model rarely predicts as an error.
    """
    per_class = {}
    for n, a, b in zip(baseline.class_names, baseline.iou, candidate.iou, strict=True):
        per_class[n] = None if (np.isnan(a) or np.isnan(b)) else float(100.0 * (a - b))
    return {"baseline": names[0], "candidate": names[1], "baseline_miou": baseline.miou,
            "candidate_miou": candidate.miou, "miou_drop_points": 100.0 * (baseline.miou - candidate.miou),
            "class_drop_points": per_class}


def check_accuracy_drop(drop: dict[str, Any], budget_points: float) -> None:
    """Raise ``ExportError`` when an :func:`accuracy_drop` result exceeds ``budget_points``."""
    if drop["miou_drop_points"] > budget_points:
        raise ExportError(f"{drop['candidate']} loses {drop['miou_drop_points']:.2f} mIoU points against ground "
                          f"truth relative to {drop['baseline']} ({100 * drop['baseline_miou']:.2f}% -> "
                          f"{100 * drop['candidate_miou']:.2f}%, budget {budget_points:g}); use a higher "
                          "precision or recalibrate on representative frames")
