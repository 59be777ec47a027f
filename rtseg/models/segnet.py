"""SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017).

An encoder-decoder whose decoder upsamples with the encoder's max-pooling indices:
each 2x2 max-pool records where its maximum came from, and the matching decoder
stage puts the value back there (zeros elsewhere) and densifies the sparse map with
trainable convolutions. Nothing in the upsampling is learned, and no encoder
feature map is stored, only the indices.

- ``segnet``: the VGG16 encoder (13 convolutions, BatchNorm after each, no fc
  layers) mirrored by a 13-convolution decoder (512 x3 | 512, 512, 256 | 256, 256,
  128 | 128, 64 | 64, then a 3x3 convolution to the classes).
- ``segnet_basic``: the paper's small CamVid variant: four encoders (7x7
  convolution, 64 channels, BatchNorm, ReLU, max-pool) and four decoders (unpool,
  7x7 convolution, 64 channels, BatchNorm; no ReLU in the decoder, as the paper
  describes), then a 1x1 classifier.

Unpooling is ``rtseg.models.unpool.max_unpool`` (exportable: see that module);
pooling uses ceil mode, so sides that are multiples of 8 but not of 32 work.
"""

from __future__ import annotations

import torch
from torch import nn

from rtseg.models.base import SegModel
from rtseg.models.registry import register_model
from rtseg.models.unpool import max_pool_with_indices, max_unpool
from rtseg.models.vgg import VGG16_STAGES, ConvReLU, VGG16Encoder, check_width, init_vgg_like


class SegNet(SegModel):
    """SegNet with a VGG16 encoder. Eval: logits at input size; train: ``{"out"}``.

    ``width`` scales every channel count (64 = the paper's).
    """

    def __init__(self, num_classes: int, aux: bool = False, *, width: int = 64) -> None:
        super().__init__(num_classes, aux)
        check_width(width)
        self.name = "segnet"
        self.encoder_net = VGG16Encoder(width, bn=True)
        ch = self.encoder_net.out_channels
        # Decoder stage k mirrors encoder stage k: same number of convolutions, ending at
        # the channels of the stage before it (stage 1's decoder ends at the classes).
        decoders = []
        for k, (n, _) in enumerate(VGG16_STAGES):
            c_in = ch[k]
            c_out = ch[k - 1] if k > 0 else ch[0]
            layers: list[nn.Module] = [ConvReLU(c_in, c_in, bn=True) for _ in range(n - 1)]
            if k > 0:
                layers.append(ConvReLU(c_in, c_out, bn=True))
            else:
                layers.append(nn.Conv2d(c_in, num_classes, 3, padding=1))
            decoders.append(nn.Sequential(*layers))
        self.decoders = nn.ModuleList(decoders)
        init_vgg_like(self)

    @property
    def encoder(self) -> nn.Module:
        return self.encoder_net

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        switches = []
        y = x
        for stage in self.encoder_net.stages():
            y = stage(y)
            size = y.shape[-2:]
            y, idx = max_pool_with_indices(y)
            switches.append((idx, size))
        for k in reversed(range(len(self.decoders))):
            idx, size = switches[k]
            y = self.decoders[k](max_unpool(y, idx, size))
        return y if not self.training else {"out": y}


class SegNetBasic(SegModel):
    """SegNet-Basic: 4 x (7x7 conv 64 + BN + ReLU + pool) and 4 x (unpool + 7x7 conv 64 + BN), 1x1 classifier."""

    def __init__(self, num_classes: int, aux: bool = False, *, channels: int = 64, depth: int = 4) -> None:
        super().__init__(num_classes, aux)
        self.name = "segnet_basic"
        self.enc = nn.ModuleList([ConvReLU(3 if i == 0 else channels, channels, bn=True, kernel=7)
                                  for i in range(depth)])
        self.dec = nn.ModuleList([nn.Sequential(nn.Conv2d(channels, channels, 7, padding=3, bias=False),
                                                nn.BatchNorm2d(channels)) for _ in range(depth)])
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        init_vgg_like(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        switches = []
        y = x
        for conv in self.enc:
            y = conv(y)
            size = y.shape[-2:]
            y, idx = max_pool_with_indices(y)
            switches.append((idx, size))
        for k in reversed(range(len(self.dec))):
            idx, size = switches[k]
            y = self.dec[k](max_unpool(y, idx, size))
        out = self.classifier(y)
        return out if not self.training else {"out": out}


@register_model("segnet", family="SegNet",
                summary="SegNet: VGG16 encoder, decoder upsampling with the pooling indices (Badrinarayanan "
                        "et al., TPAMI 2017)")
def segnet(num_classes: int = 19, aux: bool = False, *, width: int = 64) -> SegNet:
    """SegNet with random weights (``width`` scales the channels; no training-only heads)."""
    return SegNet(num_classes, aux, width=width)


@register_model("segnet_basic", family="SegNet",
                summary="SegNet-Basic: 4 encoders/decoders, 64 channels, 7x7 kernels (the paper's CamVid variant)")
def segnet_basic(num_classes: int = 19, aux: bool = False, *, channels: int = 64) -> SegNetBasic:
    """SegNet-Basic with random weights (``channels`` is 64 in the paper)."""
    return SegNetBasic(num_classes, aux, channels=channels)
