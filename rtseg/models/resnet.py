"""ResNet-50/101 (He et al., 2016) as a dilated segmentation encoder, in torchvision's key layout.

Bottleneck blocks (1x1 -> 3x3 -> 1x1, x4 expansion), the stride on the 3x3
convolution (as torchvision), stages ``layer1`` ... ``layer4`` of (3, 4, 6, 3) or
(3, 4, 23, 3) blocks. The output stride is set the DeepLab way: the strides of the
last stages are replaced by dilation (OS 8: layer3 and layer4, OS 16: layer4).

Dilation rates inside a dilated stage:

- ``multi_grid=None``: torchvision's scheme (what its segmentation checkpoints were
  trained with): the first block of a dilated stage keeps the previous stage's rate,
  the following blocks use the stage's rate (layer4 at OS 8: 2, 4, 4);
- ``multi_grid=(r1, r2, r3)``: DeepLabv3's multi-grid in layer4 (block4): block ``i``'s
  3x3 convolution uses ``r_i`` x the stage's rate (OS 16, (1, 2, 4): 2, 4, 8).

``width`` scales every channel count (64 is the published network; tests use 16).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Blocks per stage of the published depths.
RESNET_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class Bottleneck(nn.Module):
    """torchvision's ``Bottleneck`` (keys conv1..3, bn1..3, downsample.0/1)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = F.relu(self.bn2(self.conv2(out)), inplace=True)
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity, inplace=True)


def output_stride_dilation(output_stride: int) -> tuple[bool, bool, bool]:
    """Which of layer2..layer4 trade their stride for dilation for an output stride."""
    from rtseg.core.errors import UserInputError

    table = {8: (False, True, True), 16: (False, False, True), 32: (False, False, False)}
    if output_stride not in table:
        raise UserInputError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    return table[output_stride]


class ResNet(nn.Module):
    """ResNet trunk without its classifier; ``forward`` returns (layer3, layer4) features.

    ``out_channels`` = (layer3, layer4) channels: (1024, 2048) at width 64.
    """

    def __init__(self, depth: int = 50, *, output_stride: int = 8, multi_grid: tuple[int, ...] | None = None,
                 width: int = 64) -> None:
        super().__init__()
        from rtseg.core.errors import UserInputError

        if depth not in RESNET_LAYERS:
            raise UserInputError(f"ResNet depth must be one of {sorted(RESNET_LAYERS)}, got {depth!r}")
        layers = RESNET_LAYERS[depth]
        if multi_grid is not None and (len(multi_grid) != layers[3] or min(multi_grid) < 1):
            raise UserInputError(f"multi_grid needs {layers[3]} positive unit rates (one per block of layer4), "
                                 f"got {multi_grid!r}")
        dilate = output_stride_dilation(output_stride)
        self.inplanes = width
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2, dilate=dilate[0])
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2, dilate=dilate[1])
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2, dilate=dilate[2], multi_grid=multi_grid)
        self.out_channels = (width * 16, width * 32)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilate: bool = False,
                    multi_grid: tuple[int, ...] | None = None) -> nn.Sequential:
        previous = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * Bottleneck.expansion))
        if multi_grid is not None:
            rates = [self.dilation * r for r in multi_grid]
        else:
            rates = [previous] + [self.dilation] * (blocks - 1)
        out = [Bottleneck(self.inplanes, planes, stride, rates[0], downsample)]
        self.inplanes = planes * Bottleneck.expansion
        out += [Bottleneck(self.inplanes, planes, 1, rates[i]) for i in range(1, blocks)]
        return nn.Sequential(*out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        x = self.layer2(self.layer1(x))
        c3 = self.layer3(x)
        return c3, self.layer4(c3)


def init_resnet(module: nn.Module) -> None:
    """torchvision's ResNet initialisation: He-normal (fan-out) convolutions, identity BatchNorm."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
