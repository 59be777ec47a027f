"""DeconvNet (Noh, Hong & Han, "Learning Deconvolution Network for Semantic Segmentation", ICCV 2015).

The VGG16 encoder (13 convolutions, BatchNorm after each as in the paper's trained
network) and its classifier convolutionalised (fc6: 7x7, fc7: 1x1, 4096 channels),
mirrored layer for layer by a decoder: ``deconv-fc6`` (7x7 transposed convolution
back to 512 channels), then per stage an **unpooling** with the encoder's recorded
max-pool switches (``rtseg.models.unpool``) followed by 3x3 **deconvolutions**
(transposed convolutions) with BatchNorm and ReLU that densify the sparse map and
learn class shapes, and finally a 1x1 score layer.

Whole-image inference, not the paper's. The paper segments ~2000 edge-box object
proposals per image one by one (each warped to 224x224, so pool5 is 7x7 and fc6, an
unpadded 7x7 convolution, collapses it to 1x1), and merges them by a pixel-wise
maximum; training is two-staged on object-centred crops. That costs thousands of
network passes per frame and needs a proposal generator, which a live tool cannot
afford. Here the network runs once on the whole frame: fc6 and deconv-fc6 keep
their 7x7 kernels with 3-pixel padding, so every map keeps its size
(``ceil(H / 32) x ceil(W / 32)`` at pool5) and any input whose sides are multiples of
8 works. The trained-on-proposals weights would transfer shape-for-shape, but the
accuracy of the paper is that of its instance-wise inference (and its FCN + CRF
ensemble), not of this mode.
"""

from __future__ import annotations

import torch
from torch import nn

from rtseg.models.base import SegModel
from rtseg.models.registry import register_model
from rtseg.models.unpool import max_pool_with_indices, max_unpool
from rtseg.models.vgg import VGG16_STAGES, VGG16Encoder, init_vgg_like


class DeconvBNReLU(nn.Sequential):
    """3x3 transposed convolution (stride 1) + BatchNorm + ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3) -> None:
        super().__init__(nn.ConvTranspose2d(in_ch, out_ch, kernel, 1, kernel // 2, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class DeconvNet(SegModel):
    """DeconvNet, whole-image inference. Eval: logits at input size; train: ``{"out"}``.

    ``width`` scales every channel count (64 = the paper's; fc6/fc7 get 64 x width).
    """

    def __init__(self, num_classes: int, aux: bool = False, *, width: int = 64) -> None:
        super().__init__(num_classes, aux)
        self.name = "deconvnet"
        self.encoder_net = VGG16Encoder(width, bn=True)
        ch = self.encoder_net.out_channels
        fc = 64 * width
        self.fc6 = nn.Sequential(nn.Conv2d(ch[4], fc, 7, padding=3, bias=False), nn.BatchNorm2d(fc),
                                 nn.ReLU(inplace=True))
        self.fc7 = nn.Sequential(nn.Conv2d(fc, fc, 1, bias=False), nn.BatchNorm2d(fc), nn.ReLU(inplace=True))
        self.deconv_fc6 = DeconvBNReLU(fc, ch[4], 7)
        decoders = []
        for k, (n, _) in enumerate(VGG16_STAGES):
            c_in = ch[k]
            c_out = ch[k - 1] if k > 0 else ch[0]
            layers = [DeconvBNReLU(c_in, c_in) for _ in range(n - 1)] + [DeconvBNReLU(c_in, c_out)]
            decoders.append(nn.Sequential(*layers))
        self.decoders = nn.ModuleList(decoders)
        self.score = nn.Conv2d(ch[0], num_classes, 1)
        init_vgg_like(self)
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

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
        y = self.deconv_fc6(self.fc7(self.fc6(y)))
        for k in reversed(range(len(self.decoders))):
            idx, size = switches[k]
            y = self.decoders[k](max_unpool(y, idx, size))
        out = self.score(y)
        return out if not self.training else {"out": out}


@register_model("deconvnet", family="DeconvNet",
                summary="DeconvNet: VGG16 mirrored by unpooling + deconvolution (Noh et al., ICCV 2015), "
                        "whole-image inference")
def deconvnet(num_classes: int = 19, aux: bool = False, *, width: int = 64) -> DeconvNet:
    """DeconvNet with random weights (``width`` scales the channels; no training-only heads)."""
    return DeconvNet(num_classes, aux, width=width)
