"""STDC detail guidance: binary boundary targets from labels, BCE + Dice loss.

Following STDC-Seg (Fan et al., CVPR 2021): the detail ground truth is made
from the label map with a 3x3 Laplacian applied at strides 1, 2 and 4; each
response is binarised, brought back to full resolution (nearest) and the three
are fused into one binary map. The 1/8 detail head's logits are upsampled to the
label size and trained with binary cross-entropy plus Dice loss (Dice copes
with boundaries being a few percent of the pixels).

Three choices differ from a literal port, on purpose:

- The Laplacian response is taken in absolute value, so both sides of a class
  boundary are marked whatever the order of the class ids (ids are arbitrary).
- Fusion is the union of the three strides. The paper fuses with a 1x1 conv
  (0.6, 0.3, 0.1) and thresholds at 0.1; with binary inputs that is a union of
  the strides weighted above the threshold, and we keep the coarse stride too.
- Pixels whose Laplacian window (at any stride) touches an ignored pixel are
  left out of the loss: a boundary with "unlabelled" is not known to be a
  real boundary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STRIDES = (1, 2, 4)
_LAPLACIAN = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]]).view(1, 1, 3, 3)


@torch.no_grad()
def detail_target(labels: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``labels [N,H,W]`` (int) -> ``(target, mask)``, both float ``[N,1,H,W]`` in {0, 1}.

    ``target`` is 1 on class boundaries; ``mask`` is 0 where the loss must not look.
    """
    lab = labels.unsqueeze(1).float()
    ign = (labels == ignore_index).unsqueeze(1).float()
    h, w = labels.shape[-2:]
    kernel = _LAPLACIAN.to(lab.device)
    target = torch.zeros_like(lab)
    touched = torch.zeros_like(lab)
    for s in STRIDES:
        # Replicate padding: the image border is not a class boundary (zero
        # padding would mark every border of a non-zero class as an edge).
        edge = F.conv2d(F.pad(lab, (1, 1, 1, 1), mode="replicate"), kernel, stride=s).abs() > 0.1
        near_ign = F.max_pool2d(ign, 3, stride=s, padding=1) > 0
        if s > 1:
            edge = F.interpolate(edge.float(), size=(h, w), mode="nearest") > 0.5
            near_ign = F.interpolate(near_ign.float(), size=(h, w), mode="nearest") > 0.5
        target = torch.maximum(target, edge.float())
        touched = torch.maximum(touched, near_ign.float())
    mask = 1.0 - touched
    return target * mask, mask


def dice_loss(prob: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """1 - Dice coefficient per image (masked), averaged over the batch."""
    p = (prob * mask).flatten(1)
    t = (target * mask).flatten(1)
    inter = (p * t).sum(1)
    return (1 - (2 * inter + smooth) / (p.sum(1) + t.sum(1) + smooth)).mean()


class DetailLoss(nn.Module):
    """``forward(detail_logits [N,1,h,w], labels [N,H,W]) -> BCE + Dice`` on the fused boundary map."""

    def __init__(self, ignore_index: int, bce_weight: float = 1.0, dice_weight: float = 1.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight

    def forward(self, detail_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        target, mask = detail_target(labels, self.ignore_index)
        logits = F.interpolate(detail_logits.float(), size=labels.shape[-2:], mode="bilinear",
                               align_corners=False)
        bce = F.binary_cross_entropy_with_logits(logits, target, weight=mask, reduction="sum")
        bce = bce / mask.sum().clamp_min(1.0)
        return self.bce_weight * bce + self.dice_weight * dice_loss(torch.sigmoid(logits), target, mask)
