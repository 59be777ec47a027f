"""Fully convolutional networks (Long, Shelhamer & Darrell, CVPR 2015), and torchvision's FCN-ResNet.

**FCN-32s / 16s / 8s** (``fcn32s``, ``fcn16s``, ``fcn8s``): VGG16 with its classifier
convolutionalised (fc6 a 7x7 convolution, fc7 a 1x1, 4096 channels each, dropout 0.5
after both), a 1x1 *score* layer to the classes on fc7 (stride 32), and learned
transposed-convolution upsampling initialised to bilinear interpolation:

- 32s: the stride-32 scores upsampled 32x;
- 16s: stride-32 scores upsampled 2x, added to a score layer on pool4, then 16x;
- 8s: the 16s sum upsampled 2x, added to a score layer on pool3, then 8x.

The skip score layers start at zero (the paper's initialisation: a fresh skip adds
nothing until it learns). The paper pads conv1_1 by 100 pixels and crops each
upsampled map by a fixed offset because its fc6 is an unpadded 7x7 convolution; here
every convolution is padded to keep its size (fc6 by 3) and every pool rounds up, so
a stride-s map of an ``H x W`` input is ``ceil(H/s) x ceil(W/s)`` and each factor-f
transposed convolution (kernel 2f, stride f, padding f/2) maps pixel centres
``i -> (i + 0.5) f - 0.5``: the maps line up with a crop at offset 0 for any input whose
sides are multiples of 8 (360x480 included), not only of 32.

**torchvision's FCN-ResNet** (``fcn_resnet50``, ``fcn_resnet101``): a ResNet at output
stride 8 (dilated layer3/layer4) with torchvision's ``FCNHead`` (3x3 conv, BN, ReLU,
dropout, 1x1), logits upsampled bilinearly to the input; ``aux_classifier`` (an FCN
head on layer3) is a training-only output. Keys follow torchvision so
``fcn_resnet50_coco-*.pth`` / ``fcn_resnet101_coco-*.pth`` load strictly.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from rtseg.models.base import SegModel
from rtseg.models.layers import resize_to
from rtseg.models.registry import register_model
from rtseg.models.release import ReleaseFormat
from rtseg.models.resnet import ResNet, init_resnet
from rtseg.models.torchvision_layout import AUX_HEAD, FCNHead, resnet_blocks, torchvision_format
from rtseg.models.vgg import VGG16Encoder, init_vgg_like, max_pool_ceil


def bilinear_kernel(channels: int, kernel: int) -> torch.Tensor:
    """Weights ``[C, C, k, k]`` of a transposed convolution that upsamples each channel bilinearly."""
    factor = (kernel + 1) // 2
    centre = factor - 1 if kernel % 2 == 1 else factor - 0.5
    og = torch.arange(kernel, dtype=torch.float32)
    filt1d = 1 - (og - centre).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel, kernel)
    weight[range(channels), range(channels)] = filt
    return weight


def upsampler(channels: int, factor: int) -> nn.ConvTranspose2d:
    """Learned x``factor`` upsampling (kernel 2f, stride f, padding f/2, no bias), initialised bilinear."""
    up = nn.ConvTranspose2d(channels, channels, 2 * factor, factor, factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor))
    return up


def _crop(x: torch.Tensor, like: torch.Tensor | torch.Size) -> torch.Tensor:
    size = like.shape[-2:] if isinstance(like, torch.Tensor) else like
    return x[:, :, : size[0], : size[1]]


class FCNVGG16(SegModel):
    """FCN-32s/16s/8s on VGG16 (``stride`` 32, 16 or 8). Eval: logits at input size; train: ``{"out"}``.

    ``width`` scales VGG's channels (64 = the paper's; fc6/fc7 get 64 x width).
    """

    def __init__(self, name: str, stride: int, num_classes: int, aux: bool = False, *, width: int = 64) -> None:
        super().__init__(num_classes, aux)
        if stride not in (8, 16, 32):
            raise ValueError(f"FCN stride must be 8, 16 or 32, got {stride}")
        self.name = name
        self.stride = stride
        self.encoder_net = VGG16Encoder(width, bn=False)
        c3, c4, c5 = self.encoder_net.out_channels[2:]
        fc = 64 * width
        self.fc6 = nn.Conv2d(c5, fc, 7, padding=3)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.drop6 = nn.Dropout2d(0.5)
        self.drop7 = nn.Dropout2d(0.5)
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        init_vgg_like(self)
        # The class scores start small rather than at the paper's zero: a model built
        # without ImageNet weights would otherwise output constant logits.
        nn.init.normal_(self.score_fr.weight, std=0.01)
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(c4, num_classes, 1)
            self.upscore2 = upsampler(num_classes, 2)
            nn.init.zeros_(self.score_pool4.weight)
        if stride == 8:
            self.score_pool3 = nn.Conv2d(c3, num_classes, 1)
            self.upscore_pool4 = upsampler(num_classes, 2)
            nn.init.zeros_(self.score_pool3.weight)
        self.upscore = upsampler(num_classes, stride)

    @property
    def encoder(self) -> nn.Module:
        return self.encoder_net

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        feats = []
        y = x
        for stage in self.encoder_net.stages():
            y = max_pool_ceil(stage(y))
            feats.append(y)
        pool3, pool4, pool5 = feats[2], feats[3], feats[4]
        y = self.drop6(torch.relu(self.fc6(pool5)))
        y = self.drop7(torch.relu(self.fc7(y)))
        score = self.score_fr(y)
        if self.stride <= 16:
            score = _crop(self.upscore2(score), pool4) + self.score_pool4(pool4)
        if self.stride == 8:
            score = _crop(self.upscore_pool4(score), pool3) + self.score_pool3(pool3)
        out = _crop(self.upscore(score), size)
        return out if not self.training else {"out": out}


def _fcn_vgg(name: str, stride: int, num_classes: int, aux: bool, width: int) -> FCNVGG16:
    return FCNVGG16(name, stride, num_classes, aux, width=width)


@register_model("fcn32s", family="FCN", summary="FCN-32s: VGG16 convolutionalised, 32x learned upsampling "
                "(Long et al., CVPR 2015)")
def fcn32s(num_classes: int = 19, aux: bool = False, *, width: int = 64) -> FCNVGG16:
    """FCN-32s with random weights (no training-only heads: ``aux`` builds nothing more)."""
    return _fcn_vgg("fcn32s", 32, num_classes, aux, width)


@register_model("fcn16s", family="FCN", summary="FCN-16s: FCN-32s + pool4 skip (Long et al., CVPR 2015)")
def fcn16s(num_classes: int = 19, aux: bool = False, *, width: int = 64) -> FCNVGG16:
    """FCN-16s with random weights."""
    return _fcn_vgg("fcn16s", 16, num_classes, aux, width)


@register_model("fcn8s", family="FCN", summary="FCN-8s: FCN-16s + pool3 skip (Long et al., CVPR 2015)")
def fcn8s(num_classes: int = 19, aux: bool = False, *, width: int = 64) -> FCNVGG16:
    """FCN-8s with random weights."""
    return _fcn_vgg("fcn8s", 8, num_classes, aux, width)


# --- torchvision's FCN-ResNet ------------------------------------------------------------


class FCNResNet(SegModel):
    """torchvision's ``fcn_resnet50/101``. Eval: logits at input size. Train: ``"out"`` and,
    with ``aux``, ``"aux"`` (the FCN head on layer3, upsampled to the input)."""

    def __init__(self, name: str, depth: int, num_classes: int, aux: bool = False, *, width: int = 64) -> None:
        super().__init__(num_classes, aux)
        self.name = name
        self.backbone = ResNet(depth, output_stride=8, width=width)
        c3, c4 = self.backbone.out_channels
        self.classifier = FCNHead(c4, num_classes)
        if aux:
            self.aux_classifier = FCNHead(c3, num_classes)
        init_resnet(self)

    @property
    def train_outputs(self) -> tuple[str, ...]:
        return ("aux",) if self.aux else ()

    @property
    def encoder(self) -> nn.Module:
        return self.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        c3, c4 = self.backbone(x)
        out = resize_to(self.classifier(c4), size)
        if not self.training:
            return out
        outputs = {"out": out}
        if self.aux:
            outputs["aux"] = resize_to(self.aux_classifier(c3), size)
        return outputs


@register_model("fcn_resnet50", family="FCN", summary="torchvision FCN-ResNet50 (OS 8; loads fcn_resnet50_coco-*.pth)")
def fcn_resnet50(num_classes: int = 19, aux: bool = False, *, width: int = 64) -> FCNResNet:
    """torchvision's FCN-ResNet50 layout with random weights (``aux`` adds its aux classifier)."""
    return FCNResNet("fcn_resnet50", 50, num_classes, aux, width=width)


@register_model("fcn_resnet101", family="FCN",
                summary="torchvision FCN-ResNet101 (OS 8; loads fcn_resnet101_coco-*.pth)")
def fcn_resnet101(num_classes: int = 19, aux: bool = False, *, width: int = 64) -> FCNResNet:
    """torchvision's FCN-ResNet101 layout with random weights."""
    return FCNResNet("fcn_resnet101", 101, num_classes, aux, width=width)


def _detect(blocks: int):  # type: ignore[no-untyped-def]
    def detect(sd: Mapping[str, torch.Tensor]) -> bool:
        # FCN's head is a plain Sequential: classifier.0 is its 3x3 conv (DeepLab's is the ASPP).
        return ("backbone.layer1.0.conv1.weight" in sd and "classifier.0.weight" in sd
                and resnet_blocks(sd) == blocks)

    return detect


#: Public weights this family loads (read by ``rtseg.models.checkpoint``).
RELEASE_FORMATS: list[ReleaseFormat] = [
    torchvision_format(model="fcn_resnet50", label="FCN-ResNet50", file_pattern="fcn_resnet50_coco-*.pth",
                       detect=_detect(6), build=lambda n, aux: FCNResNet("fcn_resnet50", 50, n, aux),
                       classifier="classifier.4.weight"),
    torchvision_format(model="fcn_resnet101", label="FCN-ResNet101", file_pattern="fcn_resnet101_coco-*.pth",
                       detect=_detect(23), build=lambda n, aux: FCNResNet("fcn_resnet101", 101, n, aux),
                       classifier="classifier.4.weight"),
]

__all__ = ["AUX_HEAD", "FCNResNet", "FCNVGG16", "RELEASE_FORMATS", "bilinear_kernel", "upsampler"]
