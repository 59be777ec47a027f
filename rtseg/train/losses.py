"""Online hard example mining (OHEM) cross-entropy.

Keep every pixel whose predicted probability of its true class is below
``thresh`` (0.7), i.e. whose loss exceeds -log(0.7); if fewer than
``min_kept`` pixels qualify, keep the ``min_kept`` hardest instead, so easy
batches still give a gradient. ``min_kept`` is the number of labelled pixels
divided by 16. Ignored pixels never count.

Optional class weights (``class_weights``) rebalance rare classes. Selection
stays on the *unweighted* loss, so the threshold keeps its meaning as a
probability; the kept pixels are then averaged with their class weights
(``sum(w * loss) / sum(w)``, the same normalisation as PyTorch's weighted
cross-entropy).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def ohem_keep(losses: torch.Tensor, thresh: float, min_kept_ratio: float) -> torch.Tensor:
    """Indices into the 1-D ``losses`` (labelled pixels only) of the pixels OHEM keeps."""
    n = losses.numel()
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=losses.device)
    min_kept = min(n, max(1, int(n * min_kept_ratio)))
    hard = torch.nonzero(losses > -math.log(thresh)).flatten()
    if hard.numel() >= min_kept:
        return hard
    return torch.topk(losses, min_kept, sorted=False).indices


def ohem_select(pixel_loss: torch.Tensor, valid: torch.Tensor, thresh: float,
                min_kept_ratio: float) -> torch.Tensor:
    """Losses of the kept pixels (1-D). ``pixel_loss``/``valid`` are the same shape."""
    losses = pixel_loss[valid]
    return losses[ohem_keep(losses, thresh, min_kept_ratio)]


class OhemCrossEntropy(nn.Module):
    """``forward(logits [N,C,H,W], target [N,H,W] long) -> scalar``."""

    weight: torch.Tensor | None  # per-class loss weights (a buffer), None for unweighted

    def __init__(self, ignore_index: int, thresh: float = 0.7, min_kept_ratio: float = 1 / 16,
                 class_weights: Sequence[float] | None = None) -> None:
        super().__init__()
        if not 0 < thresh < 1:
            raise ValueError("OHEM threshold is a probability in (0, 1)")
        self.ignore_index = ignore_index
        self.thresh = thresh
        self.min_kept_ratio = min_kept_ratio
        weight = None if class_weights is None else torch.tensor(list(class_weights), dtype=torch.float32)
        if weight is not None and (weight.ndim != 1 or not bool((weight > 0).all())):
            raise ValueError("class weights must be one positive number per class")
        # A buffer, so .to(device) moves it with the module; not persistent: the run's
        # config records the weights, a state dict need not.
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Loss in float32 even under AMP: log-softmax of fp16 logits loses the
        # small losses OHEM compares against its threshold.
        pixel = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none")
        valid = target != self.ignore_index
        losses = pixel[valid]
        keep = ohem_keep(losses, self.thresh, self.min_kept_ratio)
        if keep.numel() == 0:
            # An all-ignored batch: a zero that still depends on the logits keeps
            # DDP/AMP bookkeeping happy and contributes nothing.
            return logits.sum() * 0.0
        if self.weight is None:
            return losses[keep].mean()
        if self.weight.numel() != logits.shape[1]:
            raise ValueError(f"{self.weight.numel()} class weights for {logits.shape[1]} classes")
        w = self.weight[target[valid][keep]]
        return (w * losses[keep]).sum() / w.sum()


#: ``--class-weights`` modes computed from the training labels.
CLASS_WEIGHT_MODES = ("none", "median-freq", "sqrt-median-freq")


def median_frequency_weights(class_pixels: Sequence[int], image_pixels: Sequence[int],
                             power: float = 1.0) -> list[float]:
    """Median frequency balancing (Eigen & Fergus 2015, used by SegNet on CamVid).

    ``freq(c) = class_pixels[c] / image_pixels[c]`` where ``image_pixels[c]`` counts the
    labelled pixels of the images in which class ``c`` appears, and
    ``weight(c) = (median(freq) / freq(c)) ** power``: the median class gets 1, rarer
    classes more. ``power=0.5`` is a softer version (rare classes gain without
    flooding the picture with false positives). A class absent from every image gets
    the largest weight of the others, so a rare class missing from a subset does not
    divide by zero.
    """
    if len(class_pixels) != len(image_pixels) or not class_pixels:
        raise ValueError("one class-pixel and one image-pixel count per class")
    freqs = [c / t if t else None for c, t in zip(class_pixels, image_pixels, strict=True)]
    present = sorted(f for f in freqs if f)
    if not present:
        raise ValueError("no labelled pixels: cannot compute class weights")
    median = statistics.median(present)
    weights = [None if not f else (median / f) ** power for f in freqs]
    top = max(w for w in weights if w is not None)
    return [top if w is None else w for w in weights]


def parse_class_weights(spec: str, num_classes: int) -> list[float] | None:
    """An explicit ``--class-weights`` list ("1,2.5,...", one per class), or None for a mode name."""
    if spec in CLASS_WEIGHT_MODES:
        return None
    try:
        values = [float(v) for v in spec.split(",")]
    except ValueError:
        values = []
    if len(values) != num_classes or not all(v > 0 for v in values):
        raise ValueError(f"--class-weights takes one of {', '.join(CLASS_WEIGHT_MODES)} or {num_classes} "
                         f"positive comma-separated numbers, one per class; got {spec!r}")
    return values
