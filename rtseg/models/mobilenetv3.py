"""MobileNetV3-Large (Howard et al., ICCV 2019) features, in torchvision's key layout.

The 17 modules of torchvision's ``mobilenet_v3_large(...).features``: a stride-2 3x3
stem (16 channels, hard-swish), 15 inverted-residual "bneck" blocks (1x1 expansion,
depthwise kxk, optional squeeze-and-excitation with a hard-sigmoid gate, linear 1x1
projection, residual when shape allows) and a 1x1 convolution to 960 channels.
BatchNorm uses eps 0.001 (as the TF-trained original and torchvision).

``dilated=True`` (what torchvision's segmentation models use): the last stage (blocks
13-15) replaces its stride by dilation 2, so the features stay at 1/16 of the input.
``forward`` returns (stride-8 features of block 4, 40 channels; last features, 960).
"""

from __future__ import annotations

import torch
from torch import nn

#: (kernel, expanded, out, squeeze-excite, activation, stride) of the 15 bneck blocks.
LARGE_BNECKS = (
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2),
    (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2),
    (5, 120, 40, True, "RE", 1),
    (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2),
    (3, 200, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1),
    (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2),
    (5, 960, 160, True, "HS", 1),
    (5, 960, 160, True, "HS", 1),
)
#: Index in ``features`` of the stride-8 output (the last module of the 1/8 stage).
LOW_INDEX = 4
BN_EPS = 0.001


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor``, never below 90% of ``v`` (MobileNet's rule)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _act(kind: str | None) -> nn.Module | None:
    return {"RE": nn.ReLU(inplace=True), "HS": nn.Hardswish(inplace=True), None: None}[kind]


class ConvBNAct(nn.Sequential):
    """Conv (no bias) + BatchNorm (eps 0.001) + optional activation; keys ``0.weight``, ``1.*``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, *, groups: int = 1,
                 dilation: int = 1, act: str | None = "HS") -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2 * dilation, dilation=dilation,
                      groups=groups, bias=False),
            nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=0.01),
        ]
        a = _act(act)
        if a is not None:
            layers.append(a)
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Global average -> 1x1 -> ReLU -> 1x1 -> hard-sigmoid, rescaling the channels (keys fc1, fc2)."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True)))
        return x * nn.functional.hardsigmoid(self.fc2(s))


class InvertedResidual(nn.Module):
    """One bneck block (``block`` holds expand / depthwise / SE / project in torchvision's order)."""

    def __init__(self, in_ch: int, kernel: int, expanded: int, out_ch: int, se: bool, act: str, stride: int,
                 dilation: int) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_ch == out_ch
        layers: list[nn.Module] = []
        if expanded != in_ch:
            layers.append(ConvBNAct(in_ch, expanded, 1, act=act))
        # A dilated block keeps its resolution: the stride becomes the dilation.
        layers.append(ConvBNAct(expanded, expanded, kernel, 1 if dilation > 1 else stride, groups=expanded,
                                dilation=dilation, act=act))
        if se:
            layers.append(SqueezeExcite(expanded, make_divisible(expanded // 4)))
        layers.append(ConvBNAct(expanded, out_ch, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_residual else y


class MobileNetV3LargeFeatures(nn.Sequential):
    """``features`` of MobileNetV3-Large (17 modules); see the module docstring."""

    out_channels = (40, 960)  # (stride-8 low features, last features)

    def __init__(self, dilated: bool = True) -> None:
        layers: list[nn.Module] = [ConvBNAct(3, 16, 3, 2, act="HS")]
        in_ch = 16
        for i, (k, exp, out, se, act, stride) in enumerate(LARGE_BNECKS):
            dilation = 2 if dilated and i >= 12 else 1
            layers.append(InvertedResidual(in_ch, k, exp, out, se, act, stride, dilation))
            in_ch = out
        layers.append(ConvBNAct(in_ch, 6 * in_ch, 1, act="HS"))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        low = x
        for i, m in enumerate(self):
            x = m(x)
            if i == LOW_INDEX:
                low = x
        return low, x


def init_mobilenet(module: nn.Module) -> None:
    """torchvision's MobileNetV3 initialisation: He-normal (fan-out) convolutions, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
