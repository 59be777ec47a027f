"""Building blocks shared by several families, named so their state_dict keys
match the public release checkpoints (``conv``/``bn`` pairs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Module):
    """Conv (no bias) -> BatchNorm -> ReLU. Keys: ``conv.weight``, ``bn.*``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
                 padding: int | None = None, groups: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride,
                              kernel // 2 if padding is None else padding, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.use_relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x, inplace=True) if self.use_relu else x


class AttentionRefinement(nn.Module):
    """BiSeNet's attention refinement module: 3x3 ConvBNReLU, then a channel
    attention vector from global average pooling (1x1 conv -> BN -> sigmoid)
    that rescales the features. Used by STDC-Seg and BiSeNetV1 with the same keys."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, out_ch, 3)
        self.conv_atten = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        atten = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * atten


def resize_to(x: torch.Tensor, size: tuple[int, int] | torch.Size, mode: str = "bilinear",
              align_corners: bool | None = False) -> torch.Tensor:
    """Resize to an explicit size (never a scale factor), so odd feature sizes line up."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=tuple(size), mode="nearest")
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=align_corners)
