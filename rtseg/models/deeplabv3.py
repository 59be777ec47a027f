"""DeepLabv3 (Chen et al., 2017, "Rethinking Atrous Convolution for Semantic Image Segmentation").

The parallel design: a dilated encoder (ResNet-50/101 or MobileNetV3-Large) whose
last strides are replaced by dilation, then **ASPP** on its last features: a 1x1
branch, three 3x3 atrous branches, and an image-level branch (global average
pooling, 1x1 convolution, BatchNorm, broadcast back to the feature size), each with
256 filters and BatchNorm + ReLU; the five are concatenated and projected by a 1x1
convolution (256, BatchNorm, ReLU, dropout 0.5). Logits are upsampled to the input
bilinearly (``align_corners=False``).

Registered names follow torchvision's checkpoints, so the defaults are what those
files were trained with: ResNet at output stride 8 with ASPP rates (12, 24, 36) and no
multi-grid, and after ASPP torchvision's extra 3x3 conv + BN + ReLU before the 1x1
classifier (``head_conv=True``). The paper's settings are builder options::

    create_model("deeplabv3_resnet101", 21, output_stride=16, multi_grid=(1, 2, 4))
    # -> ASPP rates (6, 12, 18) (the paper's at OS 16; doubled at OS 8), block4 rates 2, 4, 8

``aspp_rates`` overrides the rates; ``head_conv=False`` gives the paper's head
(projection, then the 1x1 classifier). None of these change a key or shape, so
torchvision's files load into any of them. ``aux_classifier`` (an FCN head on
layer3, or on the stride-8 MobileNet features) is a training-only output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from rtseg.core.errors import UserInputError
from rtseg.models.base import SegModel
from rtseg.models.layers import resize_to
from rtseg.models.mobilenetv3 import MobileNetV3LargeFeatures, init_mobilenet
from rtseg.models.registry import register_model
from rtseg.models.release import ReleaseFormat
from rtseg.models.resnet import ResNet, init_resnet
from rtseg.models.torchvision_layout import FCNHead, resnet_blocks, torchvision_format

#: The paper's ASPP rates at output stride 16 (doubled at 8).
PAPER_RATES_OS16 = (6, 12, 18)
#: torchvision's rates (its ResNet models run at output stride 8).
TORCHVISION_RATES = (12, 24, 36)


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, dilation: int = 1) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, padding=pad, dilation=dilation, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class ImagePooling(nn.Sequential):
    """ASPP's image-level branch: global average pool, 1x1 conv, BN, ReLU, broadcast to the map size.

    Keys ``1.weight`` (conv), ``2.*`` (BN), as torchvision (index 0 is the pooling).
    """

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        h, w = x.shape[-2:]
        y = super().forward(x)
        # Bilinear upsampling of a 1x1 map is this broadcast, without a Resize in the graph.
        return y.expand(-1, -1, h, w)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (keys ``convs.0..4``, ``project.0/1``)."""

    def __init__(self, in_ch: int, rates: Sequence[int], out_ch: int = 256) -> None:
        super().__init__()
        branches: list[nn.Module] = [_conv_bn_relu(in_ch, out_ch, 1)]
        branches += [_conv_bn_relu(in_ch, out_ch, 3, r) for r in rates]
        branches.append(ImagePooling(in_ch, out_ch))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(nn.Conv2d(len(branches) * out_ch, out_ch, 1, bias=False),
                                     nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True), nn.Dropout(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    """ASPP, then (``head_conv``) 3x3 conv + BN + ReLU, then the 1x1 classifier (keys 0, 1, 2, 4).

    Without ``head_conv`` the 3x3 block is an identity: the paper's head.
    """

    def __init__(self, in_ch: int, num_classes: int, rates: Sequence[int], *, channels: int = 256,
                 head_conv: bool = True) -> None:
        mid: list[nn.Module] = ([nn.Conv2d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                 nn.ReLU(inplace=True)] if head_conv else [nn.Identity(), nn.Identity(),
                                                                           nn.Identity()])
        super().__init__(ASPP(in_ch, rates, channels), *mid, nn.Conv2d(channels, num_classes, 1))


def check_rates(rates: Sequence[int]) -> tuple[int, ...]:
    """ASPP rates as a tuple of three positive ints (a one-line error otherwise)."""
    out = tuple(rates)
    if len(out) != 3 or not all(isinstance(r, int) and r >= 1 for r in out):
        raise UserInputError(f"aspp_rates needs three positive integer rates, got {rates!r}")
    return out


class DeepLabV3(SegModel):
    """DeepLabv3 on a dilated encoder. Eval: logits at input size. Train: ``"out"`` and,
    with ``aux``, ``"aux"`` (torchvision's FCN head on the intermediate features)."""

    def __init__(self, name: str, backbone: nn.Module, num_classes: int, aux: bool, *,
                 rates: Sequence[int], channels: int = 256, head_conv: bool = True) -> None:
        super().__init__(num_classes, aux)
        self.name = name
        self.backbone = backbone
        # Every encoder here declares (intermediate, last) feature channels.
        low_ch, high_ch = backbone.out_channels  # type: ignore[misc]
        self.classifier = DeepLabHead(high_ch, num_classes, rates, channels=channels, head_conv=head_conv)
        if aux:
            self.aux_classifier = FCNHead(low_ch, num_classes)
        self.rates = tuple(rates)

    @property
    def train_outputs(self) -> tuple[str, ...]:
        return ("aux",) if self.aux else ()

    @property
    def encoder(self) -> nn.Module:
        return self.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        low, high = self.backbone(x)
        out = resize_to(self.classifier(high), size)
        if not self.training:
            return out
        outputs = {"out": out}
        if self.aux:
            outputs["aux"] = resize_to(self.aux_classifier(low), size)
        return outputs


def deeplabv3_resnet(name: str, depth: int, num_classes: int, aux: bool, *, output_stride: int = 8,
                     multi_grid: tuple[int, int, int] | None = None, aspp_rates_: Sequence[int] | None = None,
                     head_conv: bool = True, width: int = 64) -> DeepLabV3:
    """DeepLabv3-ResNet; see the module docstring for the options."""
    if aspp_rates_ is None and (output_stride != 8 or multi_grid is not None):
        # Leaving torchvision's configuration means the paper's: rates (6, 12, 18) at OS 16, doubled at OS 8.
        scale = {8: 2, 16: 1}.get(output_stride)
        if scale is None:
            raise UserInputError(f"DeepLabv3 runs at output_stride 8 or 16, got {output_stride!r}")
        aspp_rates_ = tuple(r * scale for r in PAPER_RATES_OS16)
    rates = check_rates(TORCHVISION_RATES if aspp_rates_ is None else aspp_rates_)
    backbone = ResNet(depth, output_stride=output_stride, multi_grid=multi_grid, width=width)
    model = DeepLabV3(name, backbone, num_classes, aux, rates=rates, channels=256 * width // 64,
                      head_conv=head_conv)
    init_resnet(model)
    return model


@register_model("deeplabv3_resnet50", family="DeepLabv3",
                summary="DeepLabv3-ResNet50: dilated ResNet + ASPP (Chen et al. 2017; loads torchvision's "
                        "deeplabv3_resnet50_coco-*.pth)")
def deeplabv3_resnet50(num_classes: int = 19, aux: bool = False, *, output_stride: int = 8,
                       multi_grid: tuple[int, int, int] | None = None, aspp_rates: Sequence[int] | None = None,
                       head_conv: bool = True, width: int = 64) -> DeepLabV3:
    """DeepLabv3-ResNet50 with random weights (defaults: torchvision's configuration)."""
    return deeplabv3_resnet("deeplabv3_resnet50", 50, num_classes, aux, output_stride=output_stride,
                            multi_grid=multi_grid, aspp_rates_=aspp_rates, head_conv=head_conv, width=width)


@register_model("deeplabv3_resnet101", family="DeepLabv3",
                summary="DeepLabv3-ResNet101 (Chen et al. 2017; loads torchvision's deeplabv3_resnet101_coco-*.pth)")
def deeplabv3_resnet101(num_classes: int = 19, aux: bool = False, *, output_stride: int = 8,
                        multi_grid: tuple[int, int, int] | None = None, aspp_rates: Sequence[int] | None = None,
                        head_conv: bool = True, width: int = 64) -> DeepLabV3:
    """DeepLabv3-ResNet101 with random weights (defaults: torchvision's configuration)."""
    return deeplabv3_resnet("deeplabv3_resnet101", 101, num_classes, aux, output_stride=output_stride,
                            multi_grid=multi_grid, aspp_rates_=aspp_rates, head_conv=head_conv, width=width)


@register_model("deeplabv3_mobilenet_v3_large", family="DeepLabv3",
                summary="DeepLabv3 on dilated MobileNetV3-Large, OS 16 (real-time; loads torchvision's "
                        "deeplabv3_mobilenet_v3_large-*.pth)")
def deeplabv3_mobilenet_v3_large(num_classes: int = 19, aux: bool = False, *,
                                 aspp_rates: Sequence[int] | None = None, head_conv: bool = True) -> DeepLabV3:
    """DeepLabv3-MobileNetV3-Large with random weights (torchvision's configuration: OS 16, rates 12/24/36)."""
    rates = check_rates(TORCHVISION_RATES if aspp_rates is None else aspp_rates)
    model = DeepLabV3("deeplabv3_mobilenet_v3_large", MobileNetV3LargeFeatures(dilated=True), num_classes, aux,
                      rates=rates, head_conv=head_conv)
    init_mobilenet(model)
    return model


# --- torchvision layouts ---------------------------------------------------------------


def _detect_resnet(blocks: int):  # type: ignore[no-untyped-def]
    def detect(sd: Mapping[str, torch.Tensor]) -> bool:
        return ("backbone.layer1.0.conv1.weight" in sd and "classifier.0.convs.0.0.weight" in sd
                and resnet_blocks(sd) == blocks)

    return detect


def _detect_mobilenet(sd: Mapping[str, torch.Tensor]) -> bool:
    return "backbone.16.0.weight" in sd and "classifier.0.convs.0.0.weight" in sd


#: Public weights this family loads (read by ``rtseg.models.checkpoint``).
RELEASE_FORMATS: list[ReleaseFormat] = [
    torchvision_format(model="deeplabv3_resnet50", label="DeepLabv3-ResNet50",
                       file_pattern="deeplabv3_resnet50_coco-*.pth", detect=_detect_resnet(6),
                       build=lambda n, aux: deeplabv3_resnet50(n, aux), classifier="classifier.4.weight"),
    torchvision_format(model="deeplabv3_resnet101", label="DeepLabv3-ResNet101",
                       file_pattern="deeplabv3_resnet101_coco-*.pth", detect=_detect_resnet(23),
                       build=lambda n, aux: deeplabv3_resnet101(n, aux), classifier="classifier.4.weight"),
    torchvision_format(model="deeplabv3_mobilenet_v3_large", label="DeepLabv3-MobileNetV3-Large",
                       file_pattern="deeplabv3_mobilenet_v3_large-*.pth", detect=_detect_mobilenet,
                       build=lambda n, aux: deeplabv3_mobilenet_v3_large(n, aux), classifier="classifier.4.weight"),
]
