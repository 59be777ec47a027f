"""BiSeNetV1 (Yu et al., "BiSeNet: Bilateral Segmentation Network for Real-time
Semantic Segmentation", ECCV 2018) with a ResNet-18 context path.

Two branches run on the input:

- the *spatial path* (three stride-2 convs, 1/8 resolution, 128 channels)
  keeps fine spatial detail;
- the *context path* (ResNet-18) gives a large receptive field: attention
  refinement modules (ARM) on the 1/16 and 1/32 features, a global-average
  context vector added to the 1/32 branch, and nearest-neighbour upsampling
  back to 1/8.

A feature fusion module (FFM) concatenates both 1/8 features, mixes them with a
1x1 conv and reweights channels with a global attention vector. The heads
upsample bilinearly (align_corners=False) to input resolution.

Module names and key layout follow CoinCheung's public "v1 new" Cityscapes
weights (``model_final_v1_city_new.pth``) so they load strictly; ``RELEASE_FORMATS``
describes that file for ``rtseg.models.checkpoint``. All resizes target explicit
sizes, so sides that are multiples of 8 but not of 32 (CamVid's 360x480) work.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.core.datasets_meta import COINCHEUNG_CITYSCAPES_MEAN, COINCHEUNG_CITYSCAPES_STD
from rtseg.core.errors import CheckpointError
from rtseg.models.base import SegModel
from rtseg.models.layers import AttentionRefinement, ConvBNReLU, resize_to
from rtseg.models.registry import register_model
from rtseg.models.release import (
    Converted,
    ReleaseFormat,
    conform_state_dict,
    convert_classifier_layout,
    model_layout,
)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs and an identity or 1x1 projection shortcut)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut, inplace=True)


class ResNet18(nn.Module):
    """ResNet-18 trunk without the classifier; returns the 1/8, 1/16 and 1/32 features.

    Every stride-2 op (7x7/3x3 convs with padding k//2, 1x1 projection, 3x3
    max-pool with padding 1) maps a side ``s`` to ``ceil(s / 2)``, so the
    1/8, 1/16 and 1/32 maps have sides ``ceil(H / 8)`` etc. for any input.
    """

    out_channels = (128, 256, 512)

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._stage(64, 64, 1)
        self.layer2 = self._stage(64, 128, 2)
        self.layer3 = self._stage(128, 256, 2)
        self.layer4 = self._stage(256, 512, 2)

    @staticmethod
    def _stage(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
        return nn.Sequential(BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1))

    def convert_imagenet(self, sd: Mapping[str, torch.Tensor],
                         ) -> tuple[str, dict[str, torch.Tensor], dict[str, list[str]]]:
        """Map torchvision's ResNet-18 ImageNet file (``resnet18-*.pth``) onto this trunk:
        the key names are torchvision's, so only the classifier ``fc.*`` is dropped."""
        layout = "torchvision ResNet-18 ImageNet file"
        if "conv1.weight" not in sd or "layer1.0.conv1.weight" not in sd:
            raise CheckpointError(f"not a torchvision ResNet ImageNet file (first keys: {', '.join(list(sd)[:2])}); "
                                  f"bisenetv1 takes torchvision's resnet18-*.pth")
        if "layer1.0.conv3.weight" in sd or "layer1.2.conv1.weight" in sd:
            raise CheckpointError("this ImageNet file is a deeper ResNet (ResNet-34/50/...), not ResNet-18; "
                                  "pass torchvision's resnet18-*.pth")
        fc = [k for k in sd if k.startswith("fc.")]
        kept = {k: v for k, v in sd.items() if not k.startswith("fc.")}
        state_dict, dropped = conform_state_dict(kept, model_layout(self), layout=layout)
        if fc:
            dropped["ImageNet classifier of ResNet-18 (unused for segmentation)"] = fc
        return layout, state_dict, dropped

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x)), inplace=True))
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        return feat8, feat16, feat32


class ContextPath(nn.Module):
    """ResNet-18 + ARMs + global context; returns (cp8: 1/8 128ch, cp16: 1/16 128ch)."""

    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3)
        self.conv_head16 = ConvBNReLU(128, 128, 3)
        self.conv_avg = ConvBNReLU(512, 128, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        # The 1x1 global context vector broadcasts over the 1/32 map, which is
        # what nearest-upsampling it would do, without a resize op in the graph.
        avg = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + avg
        feat32_up = self.conv_head32(resize_to(feat32_sum, feat16.shape[-2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(resize_to(feat16_sum, feat8.shape[-2:], mode="nearest"))
        return feat16_up, feat32_up


class SpatialPath(nn.Module):
    """Three stride-2 convs to 1/8, then a 1x1 conv to 128 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU(3, 64, 7, 2)
        self.conv2 = ConvBNReLU(64, 64, 3, 2)
        self.conv3 = ConvBNReLU(64, 64, 3, 2)
        self.conv_out = ConvBNReLU(64, 128, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv3(self.conv2(self.conv1(x))))


class FeatureFusion(nn.Module):
    """FFM: 1x1 ConvBNReLU on concat(spatial, context), then channel attention
    (global pool -> 1x1 conv -> BN -> sigmoid) applied as ``feat * a + feat``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_ch, out_ch, 1)
        self.conv = nn.Conv2d(out_ch, out_ch, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        # Concatenation order (spatial first) fixes the meaning of convblk's input channels.
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.bn(self.conv(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * atten + feat


class SegHead(nn.Module):
    """3x3 ConvBNReLU then a 1x1 classifier (with bias); upsampled by the caller."""

    def __init__(self, in_ch: int, mid_ch: int, num_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch, 3)
        self.conv_out = nn.Conv2d(mid_ch, num_classes, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNetV1(SegModel):
    """BiSeNetV1 / ResNet-18. Eval: logits ``[N, C, H, W]``. Train: dict with
    ``"out"`` and, when ``aux``, ``"aux16"``/``"aux32"`` (heads on the context
    path's 1/8 and 1/16 outputs), all at input resolution."""

    def __init__(self, num_classes: int, aux: bool = False) -> None:
        super().__init__(num_classes, aux)
        self.name = "bisenetv1"
        self.cp = ContextPath()
        self.sp = SpatialPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = SegHead(256, 256, num_classes)
        if aux:
            self.conv_out16 = SegHead(128, 64, num_classes)
            self.conv_out32 = SegHead(128, 64, num_classes)
        self._init_weights()

    @property
    def train_outputs(self) -> tuple[str, ...]:
        return ("aux16", "aux32") if self.aux else ()

    @property
    def encoder(self) -> nn.Module:
        return self.cp.resnet

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        cp8, cp16 = self.cp(x)
        fused = self.ffm(self.sp(x), cp8)
        out = resize_to(self.conv_out(fused), size)
        if not self.training:
            return out
        outputs = {"out": out}
        if self.aux:
            outputs["aux16"] = resize_to(self.conv_out16(cp8), size)
            outputs["aux32"] = resize_to(self.conv_out32(cp16), size)
        return outputs


@register_model("bisenetv1", family="BiSeNet",
                summary="BiSeNetV1 with ResNet-18 context path (Yu et al., ECCV 2018)")
def bisenetv1(num_classes: int = 19, aux: bool = False) -> BiSeNetV1:
    """Build BiSeNetV1 with random weights (``aux`` adds the two training-only heads)."""
    return BiSeNetV1(num_classes, aux)


# --- CoinCheung release layout ---------------------------------------------------

_LAYOUT_NAME = "CoinCheung BiSeNetV1 release layout"
_CLASSIFIER = "conv_out.conv_out.weight"
_AUX_HEADS = ("conv_out16", "conv_out32")


def _detect(sd: Mapping[str, torch.Tensor]) -> bool:
    # ResNet trunk under cp.resnet plus a spatial path: no other zoo layout has both.
    return "cp.resnet.conv1.weight" in sd and "sp.conv1.conv.weight" in sd


def _convert(sd: Mapping[str, torch.Tensor]) -> Converted:
    """CoinCheung file (prefixes already stripped) -> state_dict for ``create_model("bisenetv1", ...)``."""
    return convert_classifier_layout(sd, layout=_LAYOUT_NAME, model="bisenetv1", classifier=_CLASSIFIER,
                                     aux_heads=_AUX_HEADS, build=BiSeNetV1, heads_word="auxiliary heads")


#: Public weights this family loads (read by ``rtseg.models.checkpoint``).
RELEASE_FORMATS: list[ReleaseFormat] = [
    ReleaseFormat(
        name=_LAYOUT_NAME + " (model_final_v1_city_new.pth)",
        model="bisenetv1",
        detect=_detect,
        convert=_convert,
        mean=COINCHEUNG_CITYSCAPES_MEAN,
        std=COINCHEUNG_CITYSCAPES_STD,
        channel_order="RGB",
        dataset="cityscapes",
    ),
]
