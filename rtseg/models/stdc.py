"""STDC1-Seg and STDC2-Seg (Fan et al., "Rethinking BiSeNet For Real-time Semantic
Segmentation", CVPR 2021).

STDC-Seg keeps BiSeNet's context path and feature fusion but drops the spatial
path: the 1/8 features of a light backbone, STDCNet, play its role, and during
training a *detail head* on those features learns edge maps (the "detail
guidance"), so inference pays nothing for it.

STDCNet is two stride-2 ConvX layers (3->32->64 channels, 1/4 resolution) and
three stages of *short-term dense concatenate* blocks (STDC1: 2+2+2 blocks,
STDC2: 4+5+3), 256/512/1024 channels at 1/8, 1/16, 1/32. A block with ``C``
output channels chains a 1x1 ConvX to C/2 and three 3x3 ConvX to C/4, C/8,
C/8, and concatenates all four outputs (C channels in total): the receptive
field grows along the chain while the channel count shrinks, which is where
the block's speed comes from. The first block of each stage downsamples with a
depthwise stride-2 conv+BN after the 1x1 conv (``avd_layer``) and brings the
1x1 output to the same size by 3x3 average pooling (``skip``).

Module names follow the official release checkpoints (``model_maxmIOU50.pth``
/ ``model_maxmIOU75.pth``); ``RELEASE_FORMATS`` describes those files for
``rtseg.models.checkpoint``. Their quirks (backbone tensors stored twice under
alias names, the unused ImageNet classifier, BatchNorms without
``num_batches_tracked``) are handled by the converter here, which reports what
it drops and fills.

Resizing: the context path upsamples with nearest, the heads with bilinear and
align_corners=True (as the release was trained). Every resize targets the
explicit size of the map it is merged with, and every stride-2 op maps a side
``s`` to ``ceil(s / 2)``, so inputs whose sides are multiples of 8 but not of 32
(CamVid's 360x480: 1/32 map 12x15, 1/16 map 23x30) work.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from rtseg.core.datasets_meta import IMAGENET_MEAN, IMAGENET_STD
from rtseg.core.errors import CheckpointError
from rtseg.models.base import Encoder, SegModel
from rtseg.models.layers import AttentionRefinement, ConvBNReLU, resize_to
from rtseg.models.registry import register_model
from rtseg.models.release import Converted, ReleaseFormat, conform_state_dict, model_layout

#: Blocks per stage of the two published backbones.
STDC_LAYERS = {"stdc1": (2, 2, 2), "stdc2": (4, 5, 3)}
#: The published ImageNet backbone of each variant.
_IMAGENET_NAMES = {"stdc1": "STDCNet813", "stdc2": "STDCNet1446"}
#: ``x8.0.3.conv_list...`` is ``features.3.conv_list...`` in the ImageNet files (see _ALIAS below).
_IMAGENET_ALIAS = re.compile(r"^x(?:2|4|8|16|32)\.0\.(\d+)\.(.+)$")


class STDCBlock(nn.Module):
    """Short-term dense concatenate block ("CatBottleneck", 4 convs).

    ``stride=2`` adds the depthwise downsampling ``avd_layer`` after the first
    (1x1) conv and average-pools that conv's output for the concatenation.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        if out_ch % 8:
            raise ValueError(f"STDCBlock: out_ch must be a multiple of 8, got {out_ch}")
        half, quarter, eighth = out_ch // 2, out_ch // 4, out_ch // 8
        self.stride = stride
        self.conv_list = nn.ModuleList([
            ConvBNReLU(in_ch, half, 1),
            ConvBNReLU(half, quarter, 3),
            ConvBNReLU(quarter, eighth, 3),
            ConvBNReLU(eighth, eighth, 3),
        ])
        if stride == 2:
            # No ReLU after the depthwise conv: the release has conv+BN only here.
            self.avd_layer = nn.Sequential(
                nn.Conv2d(half, half, 3, 2, 1, groups=half, bias=False),
                nn.BatchNorm2d(half),
            )
            self.skip = nn.AvgPool2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv_list[0](x)
        y = self.avd_layer(out1) if self.stride == 2 else out1
        out2 = self.conv_list[1](y)
        out3 = self.conv_list[2](out2)
        out4 = self.conv_list[3](out3)
        first = self.skip(out1) if self.stride == 2 else out1
        return torch.cat([first, out2, out3, out4], dim=1)


class STDCNet(Encoder):
    """STDCNet backbone without its ImageNet classifier.

    ``forward`` returns the features at 1/2, 1/4, 1/8, 1/16 and 1/32 of the
    input. ``out_channels`` follows segmentation_models_pytorch's encoder
    convention: channels at strides 1 (the input), 2, 4, 8, 16, 32.
    """

    def __init__(self, layers: tuple[int, int, int], base: int = 64) -> None:
        super().__init__()
        self._variant = next((v for v, ls in STDC_LAYERS.items() if ls == tuple(layers)), "custom")
        blocks: list[nn.Module] = [
            ConvBNReLU(3, base // 2, 3, 2),
            ConvBNReLU(base // 2, base, 3, 2),
        ]
        in_ch = base
        # Index in ``features`` one past the last block of each stage (1/8, 1/16, 1/32).
        self._stage_ends: list[int] = []
        for stage, n_blocks in enumerate(layers):
            out_ch = base * 4 * 2**stage
            for i in range(n_blocks):
                blocks.append(STDCBlock(in_ch, out_ch, stride=2 if i == 0 else 1))
                in_ch = out_ch
            self._stage_ends.append(len(blocks))
        self.features = nn.Sequential(*blocks)
        self.out_channels = (3, base // 2, base, base * 4, base * 8, base * 16)

    def convert_imagenet(self, sd: Mapping[str, torch.Tensor],
                         ) -> tuple[str, dict[str, torch.Tensor], dict[str, list[str]]]:
        """Map the official STDCNet ImageNet file (``STDCNet813M_73.91.tar`` /
        ``STDCNet1446_76.47.tar``, its ``state_dict``) onto this backbone's keys.

        The ``x2 ... x32`` aliases (the same tensors stored twice) and the ImageNet
        classifier are dropped and reported; every ``features`` key must match.
        """
        name = _IMAGENET_NAMES.get(self._variant, "STDCNet")
        layout = f"official {name} ImageNet file"
        if "features.0.conv.weight" not in sd:
            raise CheckpointError(f"not an STDCNet ImageNet file (no features.0.conv.weight; first keys: "
                                  f"{', '.join(list(sd)[:2])}); {self._variant} takes {name}'s ImageNet file")
        last = max((int(k.split(".")[1]) for k in sd if k.startswith("features.") and k.split(".")[1].isdigit()),
                   default=-1)
        if last != len(self.features) - 1:
            other = next((n for v, n in _IMAGENET_NAMES.items()
                          if 1 + sum(STDC_LAYERS[v]) == last), f"a backbone with {last + 1} layers")
            raise CheckpointError(f"this ImageNet file is {other}, not {name}; pass the file of {name} "
                                  f"(or train the model that matches the file)")
        kept: dict[str, torch.Tensor] = {}
        aliases: list[str] = []
        classifier: list[str] = []
        for k, v in sd.items():
            m = _IMAGENET_ALIAS.match(k)
            if m:
                canonical = f"features.{m.group(1)}.{m.group(2)}"
                twin = sd.get(canonical)
                if twin is not None and (twin.shape != v.shape or not torch.equal(v, twin)):
                    raise CheckpointError(f"{layout}: {k} differs from {canonical}, which it should duplicate; "
                                          f"the file is damaged or was edited")
                if twin is None:
                    kept.setdefault(canonical, v)
                aliases.append(k)
            elif k.startswith(("conv_last.", "fc.", "bn.", "linear.")):
                classifier.append(k)
            else:
                kept[k] = v
        state_dict, dropped = conform_state_dict(kept, model_layout(self), layout=layout)
        if aliases:
            dropped[REASON_ALIAS] = aliases
        if classifier:
            dropped[REASON_IMAGENET] = classifier
        return layout, state_dict, dropped

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = []
        x = self.features[0](x)
        feats.append(x)
        x = self.features[1](x)
        feats.append(x)
        start = 2
        for end in self._stage_ends:
            for i in range(start, end):
                x = self.features[i](x)
            feats.append(x)
            start = end
        return tuple(feats)


class ContextPath(nn.Module):
    """Encoder (STDCNet or a pretrained one) + attention refinement + global context, as in BiSeNet.

    Returns (feat2, feat4, feat8, feat16, cp8, cp16): the backbone's 1/2 ... 1/16
    maps, the context features refined to 1/8 (``cp8``, 128 ch) and to 1/16
    (``cp16``, 128 ch).
    """

    def __init__(self, backbone: Encoder) -> None:
        super().__init__()
        # Any encoder whose forward returns the 1/2 ... 1/32 features and whose
        # ``out_channels`` lists their channels after the input's (STDCNet, EfficientNet-Lite).
        self.backbone: Encoder = backbone
        c16, c32 = self.backbone.out_channels[4], self.backbone.out_channels[5]
        self.arm16 = AttentionRefinement(c16, 128)
        self.arm32 = AttentionRefinement(c32, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3)
        self.conv_head16 = ConvBNReLU(128, 128, 3)
        self.conv_avg = ConvBNReLU(c32, 128, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feat2, feat4, feat8, feat16, feat32 = self.backbone(x)
        # A 1x1 context vector broadcast over the 1/32 map equals nearest-upsampling
        # it, without a resize op in the exported graph.
        avg = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + avg
        feat32_up = self.conv_head32(resize_to(feat32_sum, feat16.shape[-2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(resize_to(feat16_sum, feat8.shape[-2:], mode="nearest"))
        return feat2, feat4, feat8, feat16, feat16_up, feat32_up


class FeatureFusion(nn.Module):
    """FFM: 1x1 ConvBNReLU on concat(backbone 1/8, context 1/8), then channel
    attention (global pool -> 1x1 -> ReLU -> 1x1 -> sigmoid, no BN) applied as
    ``feat * a + feat``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_ch, out_ch, 1)
        self.conv1 = nn.Conv2d(out_ch, out_ch // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_ch // 4, out_ch, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, fsp: torch.Tensor, fcp: torch.Tensor) -> torch.Tensor:
        # Backbone features first: that order fixes the meaning of convblk's input channels.
        feat = self.convblk(torch.cat([fsp, fcp], dim=1))
        atten = torch.sigmoid(self.conv2(self.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * atten + feat


class SegHead(nn.Module):
    """"BiSeNetOutput": 3x3 ConvBNReLU then a 1x1 classifier without bias; the caller upsamples."""

    def __init__(self, in_ch: int, mid_ch: int, n_out: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_ch, mid_ch, 3)
        self.conv_out = nn.Conv2d(mid_ch, n_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class STDCSeg(SegModel):
    """STDC-Seg. Eval: logits ``[N, C, H, W]``. Train: dict with ``"out"`` and,
    when ``aux``, ``"aux16"``/``"aux32"`` (heads on the context path's 1/8 and
    1/16 outputs, upsampled to the input) and ``"detail8"`` (1-channel detail
    logits at 1/8, for the detail loss).

    ``aux=True`` also builds ``conv_out_sp2``/``sp4``/``sp16``: the official
    training code built them but never used them, so the release files hold
    untrained weights for them; building them lets those files load strictly.
    No forward ever runs them.
    """

    def __init__(self, name: str, backbone: Encoder, num_classes: int, aux: bool = False, *,
                 release_heads: bool = True) -> None:
        super().__init__(num_classes, aux)
        self.name = name
        self.cp = ContextPath(backbone)
        ch = backbone.out_channels
        self.ffm = FeatureFusion(ch[3] + 128, 256)
        self.conv_out = SegHead(256, 256, num_classes)
        if aux:
            self.conv_out16 = SegHead(128, 64, num_classes)
            self.conv_out32 = SegHead(128, 64, num_classes)
            self.conv_out_sp8 = SegHead(ch[3], 64, 1)
            if release_heads:  # only so the official release files load strictly (see above)
                self.conv_out_sp16 = SegHead(ch[4], 64, 1)
                self.conv_out_sp4 = SegHead(ch[2], 64, 1)
                self.conv_out_sp2 = SegHead(ch[1], 64, 1)
        self._init_weights()

    @property
    def train_outputs(self) -> tuple[str, ...]:
        return ("aux16", "aux32", "detail8") if self.aux else ()

    @property
    def encoder(self) -> nn.Module:
        return self.cp.backbone

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        _, _, feat8, _, cp8, cp16 = self.cp(x)
        fused = self.ffm(feat8, cp8)
        out = resize_to(self.conv_out(fused), size, align_corners=True)
        if not self.training:
            return out
        outputs = {"out": out}
        if self.aux:
            outputs["aux16"] = resize_to(self.conv_out16(cp8), size, align_corners=True)
            outputs["aux32"] = resize_to(self.conv_out32(cp16), size, align_corners=True)
            outputs["detail8"] = self.conv_out_sp8(feat8)
        return outputs


@register_model("stdc1", family="STDC",
                summary="STDC1-Seg: STDCNet813 backbone, detail-guided BiSeNet (Fan et al., CVPR 2021)")
def stdc1(num_classes: int = 19, aux: bool = False) -> STDCSeg:
    """Build STDC1-Seg with random weights (``aux`` adds the training-only heads)."""
    return STDCSeg("stdc1", STDCNet(STDC_LAYERS["stdc1"]), num_classes, aux)


@register_model("stdc2", family="STDC",
                summary="STDC2-Seg: STDCNet1446 backbone, detail-guided BiSeNet (Fan et al., CVPR 2021)")
def stdc2(num_classes: int = 19, aux: bool = False) -> STDCSeg:
    """Build STDC2-Seg with random weights (``aux`` adds the training-only heads)."""
    return STDCSeg("stdc2", STDCNet(STDC_LAYERS["stdc2"]), num_classes, aux)


def _stdc_efflite(name: str, variant: str, num_classes: int, aux: bool) -> STDCSeg:
    from rtseg.models.efficientnet_lite import LITE_MEAN, LITE_STD, EfficientNetLite

    model = STDCSeg(name, EfficientNetLite(variant), num_classes, aux, release_heads=False)
    # The TF-trained Lite weights expect (x - 127) / 128; the encoder keeps its ImageNet
    # initialisation, which _init_weights above would have overwritten.
    model.input_mean, model.input_std = LITE_MEAN, LITE_STD
    model.cp.backbone.apply(_reset_encoder_init)
    return model


def _reset_encoder_init(m: nn.Module) -> None:
    # PyTorch's default initialisation for the encoder: it is meant to be replaced by
    # ImageNet weights, and BatchNorm keeps the TF epsilon/momentum set by the encoder.
    if isinstance(m, nn.Conv2d | nn.BatchNorm2d):
        m.reset_parameters()


_EFFLITE_SUMMARY = ("STDC-Seg head (context path with ARM + global context, FFM, detail guidance) on an "
                    "ImageNet EfficientNet-{} encoder")


@register_model("stdc_efflite0", family="STDC", summary=_EFFLITE_SUMMARY.format("Lite0"))
def stdc_efflite0(num_classes: int = 19, aux: bool = False) -> STDCSeg:
    """STDC-Seg's head on EfficientNet-Lite0 (random weights; train with --backbone-weights imagenet)."""
    return _stdc_efflite("stdc_efflite0", "lite0", num_classes, aux)


@register_model("stdc_efflite1", family="STDC", summary=_EFFLITE_SUMMARY.format("Lite1"))
def stdc_efflite1(num_classes: int = 19, aux: bool = False) -> STDCSeg:
    """STDC-Seg's head on EfficientNet-Lite1 (random weights; train with --backbone-weights imagenet)."""
    return _stdc_efflite("stdc_efflite1", "lite1", num_classes, aux)


@register_model("stdc_efflite2", family="STDC", summary=_EFFLITE_SUMMARY.format("Lite2"))
def stdc_efflite2(num_classes: int = 19, aux: bool = False) -> STDCSeg:
    """STDC-Seg's head on EfficientNet-Lite2 (random weights; train with --backbone-weights imagenet)."""
    return _stdc_efflite("stdc_efflite2", "lite2", num_classes, aux)


# --- official release layout ------------------------------------------------------

_CLASSIFIER = "conv_out.conv_out.weight"
_AUX_HEADS = ("conv_out16", "conv_out32", "conv_out_sp16", "conv_out_sp8", "conv_out_sp4", "conv_out_sp2")
#: The backbone's ImageNet classifier, kept in the release files, unused for segmentation.
_IMAGENET_PREFIXES = ("cp.backbone.conv_last.", "cp.backbone.fc.", "cp.backbone.bn.", "cp.backbone.linear.")
#: ``cp.backbone.x8.0.3.conv_list...`` is ``cp.backbone.features.3.conv_list...``: the
#: original backbone also registered its stage Sequentials (slices of ``features``)
#: under x2..x32, so state_dict() saved every backbone tensor twice.
_ALIAS = re.compile(r"^cp\.backbone\.x(?:2|4|8|16|32)\.0\.(\d+)\.(.+)$")
REASON_ALIAS = "alias of cp.backbone.features (same tensors stored twice)"
REASON_IMAGENET = "ImageNet classifier of the backbone (unused for segmentation)"


def _last_block(sd: Mapping[str, torch.Tensor]) -> int:
    """Highest ``cp.backbone.features.N`` index in the file (-1 when there is none)."""
    last = -1
    for k in sd:
        if k.startswith("cp.backbone.features."):
            idx = k.split(".", 4)[3]
            if idx.isdigit():
                last = max(last, int(idx))
    return last


def _make_format(model: str, label: str) -> ReleaseFormat:
    layers = STDC_LAYERS[model]
    # features = 2 stem convs + the blocks, so the last index tells the variant apart.
    last_index = 1 + sum(layers)
    layout = f"official STDC-Seg release layout ({label})"

    def detect(sd: Mapping[str, torch.Tensor]) -> bool:
        return ("cp.backbone.features.0.conv.weight" in sd and "ffm.convblk.conv.weight" in sd
                and _last_block(sd) == last_index)

    def convert(sd: Mapping[str, torch.Tensor]) -> Converted:
        if _CLASSIFIER not in sd or sd[_CLASSIFIER].dim() != 4:
            raise CheckpointError(f"checkpoint looks like the {layout} but has no classifier "
                                  f"{_CLASSIFIER!r}; the file is incomplete")
        num_classes = int(sd[_CLASSIFIER].shape[0])
        kept: dict[str, torch.Tensor] = {}
        aliases: list[str] = []
        imagenet: list[str] = []
        for k, v in sd.items():
            m = _ALIAS.match(k)
            if m:
                canonical = f"cp.backbone.features.{m.group(1)}.{m.group(2)}"
                other = sd.get(canonical)
                if other is None:
                    kept.setdefault(canonical, v)  # only the alias was saved: it is the tensor
                elif other.shape != v.shape or not (v.data_ptr() == other.data_ptr() or torch.equal(v, other)):
                    raise CheckpointError(
                        f"checkpoint looks like the {layout} but {k} differs from {canonical}, which it "
                        f"should duplicate; the file is damaged or was edited")
                aliases.append(k)
            elif k.startswith(_IMAGENET_PREFIXES):
                imagenet.append(k)
            else:
                kept[k] = v
        present = [h for h in _AUX_HEADS if any(k.startswith(h + ".") for k in kept)]
        if present and len(present) != len(_AUX_HEADS):
            missing = [h for h in _AUX_HEADS if h not in present]
            raise CheckpointError(
                f"checkpoint looks like the {layout} but has only some training heads "
                f"({', '.join(present)}; missing {', '.join(missing)}); keep all or none")
        aux = bool(present)
        with torch.device("meta"):  # key/shape layout only: nothing is allocated
            expected = model_layout(STDCSeg(model, STDCNet(layers), num_classes, aux))
        state_dict, dropped = conform_state_dict(kept, expected, layout=layout)
        if aliases:
            dropped[REASON_ALIAS] = aliases
        if imagenet:
            dropped[REASON_IMAGENET] = imagenet
        return Converted(model, num_classes, aux, state_dict, dropped)

    return ReleaseFormat(name=layout, model=model, detect=detect, convert=convert,
                         mean=IMAGENET_MEAN, std=IMAGENET_STD, channel_order="RGB", dataset="cityscapes")


#: Public weights this family loads (read by ``rtseg.models.checkpoint``).
RELEASE_FORMATS: list[ReleaseFormat] = [
    _make_format("stdc1", "STDC1, model_maxmIOU50/75.pth"),
    _make_format("stdc2", "STDC2, model_maxmIOU50/75.pth"),
]
