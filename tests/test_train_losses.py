"""OHEM cross-entropy, STDC detail ground truth and loss, LR schedule and parameter groups."""

from __future__ import annotations

import math

import pytest
import torch

from rtseg.train.detail import DetailLoss, detail_target, dice_loss
from rtseg.train.losses import OhemCrossEntropy, median_frequency_weights, ohem_select, parse_class_weights
from rtseg.train.schedule import param_groups, poly_lr

IGN = 255


# --- OHEM -------------------------------------------------------------------------
def test_ohem_keeps_at_least_min_kept_when_everything_is_easy():
    n = 4 * 16 * 16
    pixel = torch.full((4, 16, 16), 0.01)  # p(true) ~ 0.99: all easy
    pixel[0, 0, :5] = 3.0  # five hard pixels only
    valid = torch.ones_like(pixel, dtype=torch.bool)
    kept = ohem_select(pixel, valid, 0.7, 1 / 16)
    assert kept.numel() == n // 16
    # The hardest pixels are among the kept ones.
    assert (kept == 3.0).sum() == 5


def test_ohem_keeps_all_hard_pixels_when_there_are_many():
    pixel = torch.rand(2, 8, 8) + 1.0  # every loss > -log(0.7) ~ 0.357
    valid = torch.ones_like(pixel, dtype=torch.bool)
    assert ohem_select(pixel, valid, 0.7, 1 / 16).numel() == 128


def test_ohem_counts_only_labelled_pixels():
    logits = torch.zeros(1, 3, 8, 8)
    target = torch.full((1, 8, 8), IGN, dtype=torch.long)
    target[0, :2] = 1  # 16 labelled pixels, all at p = 1/3 (hard)
    loss = OhemCrossEntropy(IGN)(logits, target)
    assert loss.item() == pytest.approx(math.log(3), rel=1e-5)
    # All ignored: zero loss that still has a graph.
    logits.requires_grad_(True)
    z = OhemCrossEntropy(IGN)(logits, torch.full((1, 8, 8), IGN, dtype=torch.long))
    z.backward()
    assert z.item() == 0.0 and logits.grad is not None


def test_ohem_loss_matches_mean_of_kept_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 8, 8) * 3
    target = torch.randint(0, 4, (2, 8, 8))
    pixel = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    expected = ohem_select(pixel, torch.ones_like(target, dtype=torch.bool), 0.7, 1 / 16).mean()
    assert OhemCrossEntropy(IGN)(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_class_weighted_ohem_selects_unweighted_and_averages_weighted():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 8, 8) * 2
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, 0] = IGN
    weights = [0.5, 1.0, 4.0]
    pixel = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGN, reduction="none")
    valid = target != IGN
    # Selection is by the unweighted loss: the same pixels as plain OHEM ...
    hard = pixel[valid] > -math.log(0.7)
    assert hard.sum() >= valid.sum() // 16  # (enough hard pixels: the threshold decides alone)
    w = torch.tensor(weights)[target[valid]][hard]
    expected = (w * pixel[valid][hard]).sum() / w.sum()
    got = OhemCrossEntropy(IGN, class_weights=weights)(logits, target)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    # ... and equal weights give plain OHEM back.
    same = OhemCrossEntropy(IGN, class_weights=[2.0, 2.0, 2.0])(logits, target)
    assert same.item() == pytest.approx(OhemCrossEntropy(IGN)(logits, target).item(), rel=1e-6)


def test_class_weights_move_the_gradient_towards_the_rare_class():
    logits = torch.zeros(1, 2, 4, 4, requires_grad=True)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, 0] = 1  # one pixel of class 1, fifteen of class 0; all at p = 1/2 (hard)
    OhemCrossEntropy(IGN, class_weights=[1.0, 15.0])(logits, target).backward()
    g = logits.grad[0]
    # The lone class-1 pixel pulls as hard as all fifteen class-0 pixels together.
    assert g[1, 0, 0].abs().item() == pytest.approx(g[0, 1:].abs().sum().item() + g[0, 0, 1:].abs().sum().item(),
                                                    rel=1e-5)


def test_median_frequency_weights_follow_the_definition():
    # Class 0 everywhere (600 of 1000 px), class 1 in half the images (100 of 500 px),
    # class 2 rare (10 of 500 px), class 3 in no image.
    w = median_frequency_weights([600, 100, 10, 0], [1000, 500, 500, 0])
    freqs = [0.6, 0.2, 0.02]
    median = 0.2
    assert w[:3] == pytest.approx([median / f for f in freqs])
    assert w[1] == pytest.approx(1.0) and w[3] == pytest.approx(max(w[:3]))  # absent: the largest weight
    assert median_frequency_weights([600, 100, 10], [1000, 500, 500], power=0.5) == \
        pytest.approx([(median / f) ** 0.5 for f in freqs])
    with pytest.raises(ValueError):
        median_frequency_weights([0, 0], [0, 0])


def test_explicit_class_weights_are_parsed_and_checked():
    assert parse_class_weights("median-freq", 3) is None
    assert parse_class_weights("1,2.5,0.5", 3) == [1.0, 2.5, 0.5]
    for bad in ("1,2", "1,x,2", "1,0,2", "inverse"):
        with pytest.raises(ValueError, match="one per class"):
            parse_class_weights(bad, 3)
    with pytest.raises(ValueError):
        OhemCrossEntropy(IGN, class_weights=[1.0, -1.0])


# --- detail ground truth ----------------------------------------------------------
def test_detail_target_marks_a_vertical_boundary_only():
    lab = torch.zeros(1, 32, 32, dtype=torch.long)
    lab[:, :, 16:] = 3
    target, mask = detail_target(lab, IGN)
    assert target.shape == (1, 1, 32, 32) and mask.min() == 1  # nothing ignored
    cols = target[0, 0].sum(0)  # edge pixels per column
    edge_cols = torch.nonzero(cols).flatten().tolist()
    assert 15 in edge_cols and 16 in edge_cols  # both sides of the boundary (abs of the Laplacian)
    assert all(12 <= c <= 19 for c in edge_cols)  # strides 2 and 4 widen it by a few pixels, no more
    assert cols[0] == 0 and cols[-1] == 0 and cols[5] == 0 and cols[26] == 0
    # Every row is the same (a straight vertical boundary).
    assert torch.equal(target[0, 0], target[0, 0, :1].expand(32, 32))


def test_detail_target_flat_label_has_no_edges_and_box_has_a_ring():
    assert detail_target(torch.full((2, 24, 24), 5), IGN)[0].sum() == 0
    lab = torch.zeros(1, 40, 40, dtype=torch.long)
    lab[:, 12:28, 12:28] = 1
    target, _ = detail_target(lab, IGN)
    t = target[0, 0]
    assert t[20, 20] == 0  # box interior
    assert t[2, 2] == 0  # far background
    assert t[12, 20] == 1 and t[20, 12] == 1 and t[27, 20] == 1 and t[20, 27] == 1  # the box border


def test_detail_target_ignores_boundaries_with_unlabelled():
    lab = torch.zeros(1, 32, 32, dtype=torch.long)
    lab[:, :, 16:] = IGN  # right half unlabelled
    target, mask = detail_target(lab, IGN)
    assert target.sum() == 0  # a boundary with "unlabelled" is not a known edge
    assert mask[0, 0, :, 16:].sum() == 0  # ignored pixels are out of the loss
    assert mask[0, 0, :, 15].sum() == 0  # so are their neighbours
    assert mask[0, 0, :, :8].min() == 1  # far away pixels count


def test_detail_loss_prefers_the_right_edges():
    lab = torch.zeros(2, 32, 32, dtype=torch.long)
    lab[:, :, 16:] = 2
    target, _ = detail_target(lab, IGN)
    good = torch.nn.functional.avg_pool2d(target * 20 - 10, 4)  # 1/4 logits (any resolution works)
    bad = -good
    loss = DetailLoss(IGN)
    assert loss(good, lab).item() < 0.5 < loss(bad, lab).item()
    assert dice_loss(target, target, torch.ones_like(target)).item() == pytest.approx(0.0, abs=1e-6)


# --- schedule ---------------------------------------------------------------------
def test_poly_lr_warmup_and_decay():
    assert poly_lr(0, 1000, 0.01, warmup_iters=100) == pytest.approx(0.001)
    assert poly_lr(50, 1000, 0.01, warmup_iters=100) == pytest.approx(0.0055)
    assert poly_lr(100, 1000, 0.01, warmup_iters=100) == pytest.approx(0.01)
    assert poly_lr(550, 1000, 0.01, warmup_iters=100) == pytest.approx(0.01 * 0.5 ** 0.9)
    assert poly_lr(1000, 1000, 0.01, warmup_iters=100) == 0.0
    lrs = [poly_lr(i, 1000, 0.01, warmup_iters=100) for i in range(100, 1000)]
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_no_weight_decay_on_norms_and_biases():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 2, 1, bias=True))
    decay, no_decay = param_groups(net, 5e-4)
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(net[0].weight), id(net[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(net[0].bias), id(net[1].weight), id(net[1].bias),
                                                    id(net[2].bias)}
