"""What torchvision's segmentation checkpoints have in common, for the families that load them.

torchvision's ``fcn_resnet50_coco-*.pth``, ``deeplabv3_*-*.pth`` and
``lraspp_mobilenet_v3_large-*.pth`` (as ``torch.hub`` caches them) are plain
state_dicts: ``backbone.*`` (a ResNet trunk, or the ``features`` modules of
MobileNetV3-Large), ``classifier.*`` (the head) and, for all but LR-ASPP,
``aux_classifier.*`` (an FCN head on an earlier stage, used only in training).
They were trained on a COCO subset with the 21 VOC classes, on RGB in [0, 1]
normalised with ImageNet's mean/std, and their logits are upsampled to the
input bilinearly with ``align_corners=False``.

Each family module describes its files with ``torchvision_format`` (detection from
key names, strict conversion, VOC metadata); the aux classifier is loaded into the
training-only head, which no eval forward runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from rtseg.core.datasets_meta import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.release import Converted, ReleaseFormat, convert_classifier_layout

AUX_HEAD = "aux_classifier"


class FCNHead(nn.Sequential):
    """torchvision's ``FCNHead``: 3x3 conv to in/4 (no bias), BN, ReLU, dropout 0.1, 1x1 to the classes.

    Keys ``0.weight``, ``1.*``, ``4.weight``/``4.bias``. Also the aux classifier of
    every torchvision model that has one.
    """

    def __init__(self, in_ch: int, num_classes: int) -> None:
        inter = in_ch // 4
        super().__init__(
            nn.Conv2d(in_ch, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(inter, num_classes, 1),
        )


def resnet_blocks(sd: Mapping[str, torch.Tensor], layer: str = "layer3") -> int:
    """Number of blocks of ``backbone.<layer>`` in a file (ResNet-50: 6 in layer3, ResNet-101: 23)."""
    prefix = f"backbone.{layer}."
    idx = {int(k.split(".")[2]) for k in sd if k.startswith(prefix) and k.split(".")[2].isdigit()}
    return max(idx) + 1 if idx else 0


def torchvision_format(*, model: str, label: str, file_pattern: str,
                       detect: Callable[[Mapping[str, torch.Tensor]], bool],
                       build: Callable[[int, bool], nn.Module], classifier: str,
                       aux: bool = True) -> ReleaseFormat:
    """A ``ReleaseFormat`` for one torchvision checkpoint family (VOC classes, ImageNet mean/std, RGB)."""
    layout = f"torchvision {label} layout ({file_pattern})"

    def convert(sd: Mapping[str, torch.Tensor]) -> Converted:
        return convert_classifier_layout(sd, layout=layout, model=model, classifier=classifier,
                                         aux_heads=(AUX_HEAD,) if aux else (), build=build,
                                         heads_word="auxiliary classifier")

    return ReleaseFormat(name=layout, model=model, detect=detect, convert=convert, mean=IMAGENET_MEAN,
                         std=IMAGENET_STD, channel_order="RGB", dataset="voc")
