"""Online hard example mining (OHEM) cross-entropy.

Keep every pixel whose predicted probability of its true class is below
``thresh`` (0.7), i.e. whose loss exceeds -log(0.7); if fewer than
``min_kept`` pixels qualify, keep the ``min_kept`` hardest instead, so easy
batches still give a gradient. ``min_kept`` is the number of labelled pixels
divided by 16. Ignored pixels never count.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def ohem_select(pixel_loss: torch.Tensor, valid: torch.Tensor, thresh: float,
                min_kept_ratio: float) -> torch.Tensor:
    """Losses of the kept pixels (1-D). ``pixel_loss``/``valid`` are the same shape."""
    losses = pixel_loss[valid]
    n = losses.numel()
    if n == 0:
        return losses
    min_kept = min(n, max(1, int(n * min_kept_ratio)))
    loss_thresh = -math.log(thresh)
    hard = losses[losses > loss_thresh]
    if hard.numel() >= min_kept:
        return hard
    return torch.topk(losses, min_kept, sorted=False).values


class OhemCrossEntropy(nn.Module):
    """``forward(logits [N,C,H,W], target [N,H,W] long) -> scalar``."""

    def __init__(self, ignore_index: int, thresh: float = 0.7, min_kept_ratio: float = 1 / 16) -> None:
        super().__init__()
        if not 0 < thresh < 1:
            raise ValueError("OHEM threshold is a probability in (0, 1)")
        self.ignore_index = ignore_index
        self.thresh = thresh
        self.min_kept_ratio = min_kept_ratio

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Loss in float32 even under AMP: log-softmax of fp16 logits loses the
        # small losses OHEM compares against its threshold.
        pixel = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none")
        kept = ohem_select(pixel, target != self.ignore_index, self.thresh, self.min_kept_ratio)
        if kept.numel() == 0:
            # An all-ignored batch: a zero that still depends on the logits keeps
            # DDP/AMP bookkeeping happy and contributes nothing.
            return logits.sum() * 0.0
        return kept.mean()
