"""Dilation8: the dilated VGG16 front-end and the context module (Yu & Koltun, ICLR 2016).

**Front-end**: VGG16's conv1-conv4 with pool1-pool3 (pool4 and pool5 removed),
conv5_1..5_3 dilated by 2, fc6 as a 7x7 convolution dilated by 4 and fc7 as a 1x1
(4096 channels, dropout 0.5 after both), then a linear 1x1 to the C classes:
class scores at output stride 8.

**Context module** on those C score maps: 7 layers of 3x3 convolutions with
dilations 1, 1, 2, 4, 8, 16, 1, each followed by ReLU, then a linear 1x1 to C.

- ``basic``: C channels in every layer;
- ``large``: widths 2C, 2C, 4C, 8C, 16C, 32C, 32C, then 1x1 to C.

It starts from the paper's **identity initialisation** (random initialisation did
not train): a weight is ``C / c_out`` at the kernel centre where the input channel's
group ``floor(a C / c_in)`` equals the output channel's ``floor(b C / c_out)``, and 0
elsewhere (basic: exactly the identity). The large module adds ``N(0, sigma^2)`` noise
with ``sigma = noise * C / c_out`` (default ``noise=1e-3``) off those entries, so its
channels can tell apart. Each channel group thus carries its class score through
every layer; the ReLUs truncate negative scores, as in the paper. The reference
implementation pads the module's input by 33 pixels and uses unpadded convolutions;
here each convolution pads by its dilation (zeros), which keeps the size the same
way and leaves the identity start exact up to the borders.

The scores are upsampled to the input bilinearly. The paper trains in stages: the
front-end first (``context="none"``), then the context module on its output.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rtseg.core.errors import UserInputError
from rtseg.models.base import SegModel
from rtseg.models.layers import resize_to
from rtseg.models.registry import register_model
from rtseg.models.vgg import VGG16Encoder, init_vgg_like, max_pool_ceil

CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)
#: Width of each large-module layer in multiples of C.
LARGE_WIDTHS = (2, 2, 4, 8, 16, 32, 32)


def identity_init_(weight: torch.Tensor, num_classes: int, noise: float = 0.0,
                   generator: torch.Generator | None = None) -> None:
    """Yu & Koltun's identity initialisation of a ``[c_out, c_in, k, k]`` weight, in place."""
    c_out, c_in, kh, kw = weight.shape
    scale = num_classes / c_out
    with torch.no_grad():
        b = torch.arange(c_out)[:, None]
        a = torch.arange(c_in)[None, :]
        same_group = (a * num_classes // c_in) == (b * num_classes // c_out)
        w = torch.zeros(c_out, c_in, kh, kw)
        if noise > 0:
            w.normal_(0.0, noise * scale, generator=generator)
        centre = w[:, :, kh // 2, kw // 2]
        centre[same_group] = scale
        w[:, :, kh // 2, kw // 2] = centre
        weight.copy_(w)


class ContextModule(nn.Module):
    """The context module (``kind`` basic or large) on ``num_classes`` score maps; keeps their size."""

    def __init__(self, num_classes: int, kind: str = "basic", noise: float = 1e-3) -> None:
        super().__init__()
        if kind not in ("basic", "large"):
            raise UserInputError(f"context module must be basic or large, got {kind!r}")
        c = num_classes
        widths = [c] * 7 if kind == "basic" else [m * c for m in LARGE_WIDTHS]
        layers = []
        in_ch = c
        for w, d in zip(widths, CONTEXT_DILATIONS, strict=True):
            layers.append(nn.Conv2d(in_ch, w, 3, padding=d, dilation=d))
            in_ch = w
        self.convs = nn.ModuleList(layers)
        self.final = nn.Conv2d(in_ch, c, 1)
        self.kind = kind
        self.reset_identity(noise if kind == "large" else 0.0)

    def reset_identity(self, noise: float = 0.0, seed: int | None = None) -> None:
        """(Re)apply the identity initialisation (``noise`` relative to ``C / c_out``, large module only)."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        c = self.final.out_channels
        for conv in [*self.convs, self.final]:
            identity_init_(conv.weight, c, noise, g)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = torch.relu(conv(x))
        return self.final(x)


class Dilation8(SegModel):
    """Front-end (+ context module). Eval: logits at input size; train: ``{"out"}``.

    ``context``: "basic", "large" or "none" (the front-end alone). ``width`` scales
    VGG's channels (64 = the paper's; fc6/fc7 get 64 x width).
    """

    def __init__(self, num_classes: int, aux: bool = False, *, context: str = "basic", width: int = 64) -> None:
        super().__init__(num_classes, aux)
        self.name = "dilation8"
        self.encoder_net = VGG16Encoder(width, bn=False, dilations=(1, 1, 1, 1, 2))
        fc = 64 * width
        c5 = self.encoder_net.out_channels[4]
        self.fc6 = nn.Conv2d(c5, fc, 7, padding=12, dilation=4)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.drop6 = nn.Dropout2d(0.5)
        self.drop7 = nn.Dropout2d(0.5)
        self.final = nn.Conv2d(fc, num_classes, 1)
        init_vgg_like(self)
        nn.init.normal_(self.final.weight, std=math.sqrt(1.0 / fc))
        if context not in ("basic", "large", "none"):
            raise UserInputError(f"context must be basic, large or none, got {context!r}")
        self.context = ContextModule(num_classes, context) if context != "none" else None

    @property
    def encoder(self) -> nn.Module:
        return self.encoder_net

    def frontend(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores at stride 8 (before the context module)."""
        stages = self.encoder_net.stages()
        for stage in stages[:3]:
            x = max_pool_ceil(stage(x))
        x = stages[4](stages[3](x))
        x = self.drop6(torch.relu(self.fc6(x)))
        x = self.drop7(torch.relu(self.fc7(x)))
        return self.final(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        scores = self.frontend(x)
        if self.context is not None:
            scores = self.context(scores)
        out = resize_to(scores, x.shape[-2:])
        return out if not self.training else {"out": out}


@register_model("dilation8", family="Dilation",
                summary="Dilation8: dilated VGG16 front-end + context module (Yu & Koltun, ICLR 2016)")
def dilation8(num_classes: int = 19, aux: bool = False, *, context: str = "basic", width: int = 64) -> Dilation8:
    """Dilation8 with random weights and an identity-initialised context module."""
    return Dilation8(num_classes, aux, context=context, width=width)
