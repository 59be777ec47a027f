"""LR-ASPP on MobileNetV3-Large (Howard et al., "Searching for MobileNetV3", ICCV 2019), torchvision's layout.

Lite reduced ASPP: on the dilated encoder's stride-16 features (960 channels), a
1x1 conv + BN + ReLU branch (``cbr``, 128 channels) is gated by a squeeze branch
(``scale``: global average pooling, 1x1 conv, sigmoid), upsampled bilinearly to the
stride-8 features, and classified (``high_classifier``); a 1x1 classifier on the
stride-8 features (``low_classifier``, 40 channels) is added, and the sum is
upsampled to the input (bilinear, ``align_corners=False``). No aux head.

Keys follow torchvision, so ``lraspp_mobilenet_v3_large-*.pth`` loads strictly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from rtseg.models.base import SegModel
from rtseg.models.layers import resize_to
from rtseg.models.mobilenetv3 import MobileNetV3LargeFeatures, init_mobilenet
from rtseg.models.registry import register_model
from rtseg.models.release import ReleaseFormat
from rtseg.models.torchvision_layout import torchvision_format


class LRASPPHead(nn.Module):
    """Keys ``cbr.0/1``, ``scale.1``, ``low_classifier``, ``high_classifier`` (torchvision's names)."""

    def __init__(self, low_ch: int, high_ch: int, num_classes: int, inter: int = 128) -> None:
        super().__init__()
        self.cbr = nn.Sequential(nn.Conv2d(high_ch, inter, 1, bias=False), nn.BatchNorm2d(inter),
                                 nn.ReLU(inplace=True))
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_ch, inter, 1, bias=False), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low_ch, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.cbr(high) * self.scale(high)
        x = resize_to(x, low.shape[-2:])
        return self.low_classifier(low) + self.high_classifier(x)


class LRASPP(SegModel):
    """LR-ASPP-MobileNetV3-Large. Eval: logits at input size; train: ``{"out"}`` (no aux head)."""

    def __init__(self, num_classes: int, aux: bool = False) -> None:
        super().__init__(num_classes, aux)
        self.name = "lraspp_mobilenet_v3_large"
        self.backbone = MobileNetV3LargeFeatures(dilated=True)
        low_ch, high_ch = self.backbone.out_channels
        self.classifier = LRASPPHead(low_ch, high_ch, num_classes)
        init_mobilenet(self)

    @property
    def encoder(self) -> nn.Module:
        return self.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        low, high = self.backbone(x)
        out = resize_to(self.classifier(low, high), x.shape[-2:])
        return out if not self.training else {"out": out}


@register_model("lraspp_mobilenet_v3_large", family="LR-ASPP",
                summary="LR-ASPP on dilated MobileNetV3-Large (real-time; Howard et al. 2019; loads "
                        "torchvision's lraspp_mobilenet_v3_large-*.pth)")
def lraspp_mobilenet_v3_large(num_classes: int = 19, aux: bool = False) -> LRASPP:
    """LR-ASPP-MobileNetV3-Large with random weights (it has no training-only head)."""
    return LRASPP(num_classes, aux)


def _detect(sd: Mapping[str, torch.Tensor]) -> bool:
    return "classifier.cbr.0.weight" in sd and "backbone.16.0.weight" in sd


#: Public weights this family loads (read by ``rtseg.models.checkpoint``).
RELEASE_FORMATS: list[ReleaseFormat] = [
    torchvision_format(model="lraspp_mobilenet_v3_large", label="LR-ASPP-MobileNetV3-Large",
                       file_pattern="lraspp_mobilenet_v3_large-*.pth", detect=_detect,
                       build=lambda n, aux: LRASPP(n, aux), classifier="classifier.high_classifier.weight",
                       aux=False),
]
