"""BiSeNetV2 (Yu et al., "BiSeNet V2: Bilateral Network with Guided Aggregation
for Real-time Semantic Segmentation", IJCV 2021).

- *Detail branch*: wide, shallow VGG-like convs to 1/8 (128 channels).
- *Semantic branch*: narrow and deep: a stem block (1/4, 16 ch), gather-and-
  expand (GE) layers with depthwise convs (expansion 6) down to 1/32
  (128 ch), and a context embedding block (global average pooling added back).
- *Bilateral guided aggregation* (BGA): each branch gates the other with a
  sigmoid at its own resolution, then the two are summed at 1/8.
- *Booster*: the segmentation head and, for training, auxiliary heads on the
  semantic branch's 1/4, 1/8, 1/16 and 1/32 features.

Module names and key layout follow CoinCheung's public Cityscapes weights
(``model_final_v2_city.pth``) so they load strictly; ``RELEASE_FORMATS``
describes that file for ``rtseg.models.checkpoint``. All resizes target explicit
sizes, so sides that are multiples of 8 but not of 32 (CamVid's 360x480) work:
every stride-2 op here maps a side ``s`` to ``ceil(s / 2)``, which keeps the
BGA's two 1/32 maps the same size.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.core.datasets_meta import COINCHEUNG_CITYSCAPES_MEAN, COINCHEUNG_CITYSCAPES_STD
from rtseg.models.base import SegModel
from rtseg.models.layers import ConvBNReLU, resize_to
from rtseg.models.registry import register_model
from rtseg.models.release import Converted, ReleaseFormat, convert_classifier_layout

EXPANSION = 6  # GE layer expansion ratio from the paper


def _dw(ch_in: int, ch_out: int, stride: int = 1) -> nn.Conv2d:
    """3x3 depthwise (groups = input channels) conv without bias; ``ch_out`` may be a multiple of ``ch_in``."""
    return nn.Conv2d(ch_in, ch_out, 3, stride, 1, groups=ch_in, bias=False)


def _pw(ch_in: int, ch_out: int) -> nn.Conv2d:
    """1x1 conv without bias."""
    return nn.Conv2d(ch_in, ch_out, 1, bias=False)


class DetailBranch(nn.Module):
    """Three stages of 3x3 ConvBNReLU (the first of each with stride 2): 1/8, 128 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.S1 = nn.Sequential(ConvBNReLU(3, 64, 3, 2), ConvBNReLU(64, 64, 3))
        self.S2 = nn.Sequential(ConvBNReLU(64, 64, 3, 2), ConvBNReLU(64, 64, 3), ConvBNReLU(64, 64, 3))
        self.S3 = nn.Sequential(ConvBNReLU(64, 128, 3, 2), ConvBNReLU(128, 128, 3), ConvBNReLU(128, 128, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.S3(self.S2(self.S1(x)))


class StemBlock(nn.Module):
    """Stem: 3x3 s2 conv, then a conv branch and a max-pool branch (both s2), concatenated and fused: 1/4, 16 ch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ConvBNReLU(3, 16, 3, 2)
        self.left = nn.Sequential(ConvBNReLU(16, 8, 1), ConvBNReLU(8, 16, 3, 2))
        self.right = nn.MaxPool2d(3, 2, 1)
        self.fuse = ConvBNReLU(32, 16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], dim=1))


class GatherExpand(nn.Module):
    """Gather-and-expand layer, stride 1 (in = out = ``ch``): 3x3 conv, depthwise
    expansion to 6x channels, 1x1 projection back, identity residual."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        mid = ch * EXPANSION
        self.conv1 = ConvBNReLU(ch, ch, 3)
        self.dwconv = nn.Sequential(_dw(ch, mid), nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(_pw(mid, ch), nn.BatchNorm2d(ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv2(self.dwconv(self.conv1(x))) + x, inplace=True)


class GatherExpandDown(nn.Module):
    """Gather-and-expand layer, stride 2: the expansion is a stride-2 depthwise
    conv followed by a second depthwise conv; the shortcut is a depthwise s2
    conv + 1x1 projection (separable), so both paths change resolution and width."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        mid = in_ch * EXPANSION
        self.conv1 = ConvBNReLU(in_ch, in_ch, 3)
        self.dwconv1 = nn.Sequential(_dw(in_ch, mid, 2), nn.BatchNorm2d(mid))
        self.dwconv2 = nn.Sequential(_dw(mid, mid), nn.BatchNorm2d(mid), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(_pw(mid, out_ch), nn.BatchNorm2d(out_ch))
        self.shortcut = nn.Sequential(_dw(in_ch, in_ch, 2), nn.BatchNorm2d(in_ch),
                                      _pw(in_ch, out_ch), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv2(self.dwconv2(self.dwconv1(self.conv1(x))))
        return F.relu(feat + self.shortcut(x), inplace=True)


class ContextEmbedding(nn.Module):
    """CE block: BN'd global average -> 1x1 ConvBNReLU, added (broadcast) to the input, then a 3x3 ConvBNReLU."""

    def __init__(self, ch: int = 128) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(ch)
        self.conv_gap = ConvBNReLU(ch, ch, 1)
        self.conv_last = ConvBNReLU(ch, ch, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gap = self.conv_gap(self.bn(x.mean(dim=(2, 3), keepdim=True)))
        return self.conv_last(x + gap)


class SemanticBranch(nn.Module):
    """Returns (feat2: 1/4 16ch, feat3: 1/8 32ch, feat4: 1/16 64ch, feat5_4: 1/32 128ch, feat5_5: CE output)."""

    def __init__(self) -> None:
        super().__init__()
        self.S1S2 = StemBlock()
        self.S3 = nn.Sequential(GatherExpandDown(16, 32), GatherExpand(32))
        self.S4 = nn.Sequential(GatherExpandDown(32, 64), GatherExpand(64))
        self.S5_4 = nn.Sequential(GatherExpandDown(64, 128), GatherExpand(128), GatherExpand(128),
                                  GatherExpand(128))
        self.S5_5 = ContextEmbedding(128)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feat2 = self.S1S2(x)
        feat3 = self.S3(feat2)
        feat4 = self.S4(feat3)
        feat5_4 = self.S5_4(feat4)
        return feat2, feat3, feat4, feat5_4, self.S5_5(feat5_4)


class BilateralGuidedAggregation(nn.Module):
    """BGA (128 ch): the detail branch is gated by upsampled semantic features at
    1/8, the semantic branch by downsampled detail features at 1/32; the latter
    is upsampled to 1/8, the two are summed and mixed by a 3x3 ConvBNReLU."""

    def __init__(self, ch: int = 128) -> None:
        super().__init__()
        self.left1 = nn.Sequential(_dw(ch, ch), nn.BatchNorm2d(ch), _pw(ch, ch))
        # Stride-2 conv then a 3/2/1 average pool: ceil(ceil(s/2)/2), the same
        # side as the semantic branch's 1/32 map for every input size.
        self.left2 = nn.Sequential(nn.Conv2d(ch, ch, 3, 2, 1, bias=False), nn.BatchNorm2d(ch),
                                   nn.AvgPool2d(3, 2, 1, ceil_mode=False))
        self.right1 = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch))
        self.right2 = nn.Sequential(_dw(ch, ch), nn.BatchNorm2d(ch), _pw(ch, ch))
        self.conv = nn.Sequential(nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch),
                                  nn.ReLU(inplace=True))

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        size = detail.shape[-2:]
        right1 = resize_to(self.right1(semantic), size, mode="nearest")
        left = self.left1(detail) * torch.sigmoid(right1)
        right = self.left2(detail) * torch.sigmoid(self.right2(semantic))
        right = resize_to(right, size, mode="nearest")
        return self.conv(left + right)


class Upsample2x(nn.Module):
    """Nearest 2x upsampling to an explicit size (no scale factor in the graph)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resize_to(x, (x.shape[-2] * 2, x.shape[-1] * 2), mode="nearest")


class SegmentHead(nn.Module):
    """Booster head: 3x3 ConvBNReLU (``in_ch -> mid_ch``), dropout, 1x1 classifier (with bias).

    ``conv_out`` is a Sequential whose slot 0 is an Identity for the main head
    and, for the training-only aux heads (``up_ch`` given), a nearest 2x
    upsample + 3x3 ConvBNReLU (``mid_ch -> up_ch``); so both kinds share the
    release key layout (``conv_out.1`` is always the classifier). The caller
    resizes the logits to the input size.
    """

    def __init__(self, in_ch: int, mid_ch: int, num_classes: int, up_ch: int | None = None) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch, 3)
        self.drop = nn.Dropout(0.1)
        if up_ch is None:
            self.conv_out = nn.Sequential(nn.Identity(), nn.Conv2d(mid_ch, num_classes, 1, bias=True))
        else:
            self.conv_out = nn.Sequential(nn.Sequential(Upsample2x(), ConvBNReLU(mid_ch, up_ch, 3)),
                                          nn.Conv2d(up_ch, num_classes, 1, bias=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.drop(self.conv(x)))


# (name, semantic-branch output index, input channels, channels after the 2x upsample)
_AUX_SPECS = (("aux2", 0, 16, 16), ("aux3", 1, 32, 64), ("aux4", 2, 64, 256), ("aux5_4", 3, 128, 1024))


class BiSeNetV2(SegModel):
    """BiSeNetV2. Eval: logits ``[N, C, H, W]``. Train: dict with ``"out"`` and,
    when ``aux``, ``"aux2"``, ``"aux3"``, ``"aux4"``, ``"aux5_4"`` (booster heads
    on the semantic branch's stages), all at input resolution."""

    def __init__(self, num_classes: int, aux: bool = False) -> None:
        super().__init__(num_classes, aux)
        self.name = "bisenetv2"
        self.detail = DetailBranch()
        self.segment = SemanticBranch()
        self.bga = BilateralGuidedAggregation(128)
        self.head = SegmentHead(128, 1024, num_classes)
        if aux:
            for name, _, in_ch, up_ch in _AUX_SPECS:
                setattr(self, name, SegmentHead(in_ch, 128, num_classes, up_ch))
        self._init_weights()

    @property
    def train_outputs(self) -> tuple[str, ...]:
        return tuple(spec[0] for spec in _AUX_SPECS) if self.aux else ()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Residual branches of the GE layers start at zero, so each layer begins
        # as (ReLU of) its shortcut; this keeps early training stable.
        for m in self.modules():
            if isinstance(m, (GatherExpand, GatherExpandDown)):
                last_bn = m.conv2[1]
                assert isinstance(last_bn, nn.BatchNorm2d)
                nn.init.zeros_(last_bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        feats = self.segment(x)
        out = resize_to(self.head(self.bga(self.detail(x), feats[4])), size)
        if not self.training:
            return out
        outputs = {"out": out}
        if self.aux:
            for name, idx, _, _ in _AUX_SPECS:
                outputs[name] = resize_to(getattr(self, name)(feats[idx]), size)
        return outputs


@register_model("bisenetv2", family="BiSeNet",
                summary="BiSeNetV2 with guided aggregation (Yu et al., IJCV 2021)")
def bisenetv2(num_classes: int = 19, aux: bool = False) -> BiSeNetV2:
    """Build BiSeNetV2 with random weights (``aux`` adds the four booster heads)."""
    return BiSeNetV2(num_classes, aux)


# --- CoinCheung release layout ---------------------------------------------------

_LAYOUT_NAME = "CoinCheung BiSeNetV2 release layout"
_CLASSIFIER = "head.conv_out.1.weight"
_AUX_HEADS = tuple(spec[0] for spec in _AUX_SPECS)


def _detect(sd: Mapping[str, torch.Tensor]) -> bool:
    # Detail branch + semantic stem + BGA are unique to BiSeNetV2.
    return ("detail.S1.0.conv.weight" in sd and "segment.S1S2.conv.conv.weight" in sd
            and any(k.startswith("bga.") for k in sd))


def _convert(sd: Mapping[str, torch.Tensor]) -> Converted:
    """CoinCheung file (prefixes already stripped) -> state_dict for ``create_model("bisenetv2", ...)``."""
    return convert_classifier_layout(sd, layout=_LAYOUT_NAME, model="bisenetv2", classifier=_CLASSIFIER,
                                     aux_heads=_AUX_HEADS, build=BiSeNetV2, heads_word="booster heads")


#: Public weights this family loads (read by ``rtseg.models.checkpoint``).
RELEASE_FORMATS: list[ReleaseFormat] = [
    ReleaseFormat(
        name=_LAYOUT_NAME + " (model_final_v2_city.pth)",
        model="bisenetv2",
        detect=_detect,
        convert=_convert,
        mean=COINCHEUNG_CITYSCAPES_MEAN,
        std=COINCHEUNG_CITYSCAPES_STD,
        channel_order="RGB",
        dataset="cityscapes",
    ),
]
