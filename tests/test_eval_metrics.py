"""Confusion-matrix metrics: perfect agreement, a hand-built case, ignore handling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtseg.eval.metrics import ConfusionMatrix, SegMetrics


def test_labels_against_themselves_score_100_percent():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, (3, 40, 50)).astype(np.uint8)
    gt[:, :3] = 255
    cm = ConfusionMatrix(5, ignore_index=255)
    cm.update(gt, gt)
    m = cm.result()
    assert m.miou == 1.0 and m.pixel_accuracy == 1.0 and m.mean_class_accuracy == 1.0
    assert np.all(m.iou == 1.0)
    assert m.confusion.sum() == 3 * 37 * 50  # ignored rows not counted
    assert np.count_nonzero(m.confusion - np.diag(np.diag(m.confusion))) == 0


def test_hand_built_confusion_case():
    # 3 classes; gt and prediction over 10 pixels (+2 ignored):
    gt = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 9, 9])
    pr = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0, 2, 1, 0])
    cm = ConfusionMatrix(3, ignore_index=9)
    cm.update(pr, gt)
    expected = np.array([[3, 1, 0],
                         [0, 2, 1],
                         [1, 0, 2]])
    assert np.array_equal(cm.mat, expected)
    m = cm.result(("a", "b", "c"))
    # IoU = TP / (TP + FP + FN): a 3/(3+1+1), b 2/(2+1+1), c 2/(2+1+1)
    np.testing.assert_allclose(m.iou, [3 / 5, 2 / 4, 2 / 4])
    assert m.miou == pytest.approx((0.6 + 0.5 + 0.5) / 3)
    assert m.pixel_accuracy == pytest.approx(7 / 10)
    assert m.mean_class_accuracy == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    assert m.per_class() == {"a": pytest.approx(0.6), "b": 0.5, "c": 0.5}
    table = m.format_table()
    assert "mIoU" in table and "53.33" in table and "60.00" in table


def test_absent_class_is_left_out_of_the_mean_and_updates_accumulate():
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 1]), np.array([0, 1]))
    cm.update(np.array([[1, 1]]), np.array([[1, 0]]))
    m = cm.result()
    assert math.isnan(m.iou[2]) and math.isnan(m.iou[3])
    assert m.miou == pytest.approx((1 / 2 + 2 / 3) / 2)
    d = m.to_dict()
    assert d["per_class_iou"]["class 2"] is None and len(d["confusion_matrix"]) == 4


def test_out_of_range_predictions_count_as_misses():
    cm = ConfusionMatrix(2)
    cm.update(np.array([0, 7]), np.array([0, 1]))
    m = cm.result()
    assert m.iou[1] == 0.0 and m.pixel_accuracy == 0.5


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(2).update(np.zeros((2, 2)), np.zeros((2, 3)))


def test_from_confusion_roundtrip():
    mat = np.array([[5, 0], [2, 3]])
    m = SegMetrics.from_confusion(mat, ("x", "y"))
    np.testing.assert_allclose(m.iou, [5 / 7, 3 / 5])
