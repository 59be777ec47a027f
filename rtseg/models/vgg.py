"""VGG16 (Simonyan & Zisserman, 2015) as the encoder of the seed systems: FCN, SegNet,
DeconvNet and the dilated front-end all start from its 13 3x3 convolutions in five
stages (64, 64 | 128, 128 | 256 x3 | 512 x3 | 512 x3 channels), each stage closed by a
2x2 max-pool, and from its classifier "convolutionalised": fc6 as a 7x7 convolution
and fc7 as a 1x1 (4096 channels each).

``width`` scales every channel count (64 is VGG16; the tests build width 8 so the
4096-channel fc layers become 512 and a forward takes milliseconds).
"""

from __future__ import annotations

import torch
from torch import nn

#: Convolutions per stage and each stage's channels at width 64.
VGG16_STAGES = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


def stage_channels(width: int) -> tuple[int, ...]:
    """Output channels of the five stages for a given ``width`` (64 = VGG16)."""
    return tuple(c * width // 64 for _, c in VGG16_STAGES)


def check_width(width: int) -> None:
    """``width`` must be a positive multiple of 8 (so every scaled stage keeps whole channels)."""
    from rtseg.core.errors import UserInputError

    if not isinstance(width, int) or width < 8 or width % 8:
        raise UserInputError(f"width must be a multiple of 8 (64 = the paper's VGG16), got {width!r}")


class ConvReLU(nn.Sequential):
    """3x3 convolution (+ BatchNorm when ``bn``) + ReLU. Keys ``0.*`` (conv), ``1.*`` (BN)."""

    def __init__(self, in_ch: int, out_ch: int, *, bn: bool, dilation: int = 1, kernel: int = 3) -> None:
        pad = dilation * (kernel // 2)
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, padding=pad, dilation=dilation, bias=not bn)]
        if bn:
            layers.append(nn.BatchNorm2d(out_ch))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class VGGStage(nn.Sequential):
    """One VGG16 stage: ``n`` ConvReLU layers (no pooling: the caller pools)."""

    def __init__(self, in_ch: int, out_ch: int, n: int, *, bn: bool, dilation: int = 1) -> None:
        super().__init__(*[ConvReLU(in_ch if i == 0 else out_ch, out_ch, bn=bn, dilation=dilation)
                           for i in range(n)])


class VGG16Encoder(nn.Module):
    """The five VGG16 stages as ``stage1`` ... ``stage5`` (pooling left to the network).

    ``bn`` adds BatchNorm after every convolution (SegNet and DeconvNet train with it;
    FCN and the dilated front-end use the original, BatchNorm-free VGG16).
    ``dilations`` gives each stage's dilation (the dilated front-end dilates stage 5 by 2).
    """

    def __init__(self, width: int = 64, *, bn: bool = False,
                 dilations: tuple[int, int, int, int, int] = (1, 1, 1, 1, 1)) -> None:
        super().__init__()
        check_width(width)
        self.out_channels = stage_channels(width)
        in_ch = 3
        for i, ((n, _), out_ch, d) in enumerate(zip(VGG16_STAGES, self.out_channels, dilations, strict=True)):
            self.add_module(f"stage{i + 1}", VGGStage(in_ch, out_ch, n, bn=bn, dilation=d))
            in_ch = out_ch

    def stages(self) -> list[nn.Module]:
        return [self.get_submodule(f"stage{i}") for i in range(1, 6)]


def max_pool_ceil(x: torch.Tensor) -> torch.Tensor:
    """2x2 max-pool, stride 2, ceil mode: a side ``s`` becomes ``ceil(s / 2)`` (odd maps keep their edge)."""
    return nn.functional.max_pool2d(x, 2, 2, ceil_mode=True)


def init_vgg_like(module: nn.Module) -> None:
    """He-normal convolutions (fan-out), zero biases, identity BatchNorm."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
