"""The contract every segmentation network in the zoo follows.

- Input: float tensor ``[N, 3, H, W]``, already normalised in the model's
  channel order (the deploy graph in ``rtseg.models.deploy`` does that from
  uint8 BGR frames).
- ``eval()`` forward: one logits tensor ``[N, C, H, W]`` at input resolution.
- ``train()`` forward: a dict with ``"out"`` (same as eval) plus every
  training-only output named in ``train_outputs``; auxiliary logits are
  upsampled to input resolution, detail logits (``"detail*"``) stay at the
  resolution of their feature map.
- ``H`` and ``W`` must be multiples of 8 (see ``SIZE_MULTIPLE``): every
  downsampling step rounds up and every upsampling step targets an explicit
  size, so sizes that are not multiples of 32 (CamVid's 360x480) work.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from rtseg.core.datasets_meta import IMAGENET_MEAN, IMAGENET_STD

#: Input height and width must be multiples of this.
SIZE_MULTIPLE = 8
#: Smallest input side the networks accept (the 1/32 feature map must exist).
MIN_SIZE = 64


class Encoder(nn.Module):
    """A backbone whose ``forward`` returns its features at strides 2, 4, 8, 16, 32 and whose
    ``out_channels`` lists their channels after the input's (segmentation_models_pytorch's
    convention): the channel contract the heads are wired by."""

    out_channels: tuple[int, ...]


class SegModel(nn.Module):
    """Base class of every zoo model (see the module docstring for the contract)."""

    #: Registry name, set by each subclass instance.
    name: str = ""
    #: Input normalisation the network's pretrained encoder expects (RGB in [0, 1]);
    #: training and random-weight deploys use it unless a checkpoint says otherwise.
    input_mean: tuple[float, float, float] = IMAGENET_MEAN
    input_std: tuple[float, float, float] = IMAGENET_STD

    def __init__(self, num_classes: int, aux: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.aux = aux

    @property
    def train_outputs(self) -> tuple[str, ...]:
        """Keys of the train-mode output dict besides ``"out"`` (empty when ``aux`` is False)."""
        return ()

    @property
    def encoder(self) -> nn.Module | None:
        """The backbone that ImageNet weights initialise (its parameters may train with a
        lower learning rate); None when the network has no separable encoder."""
        return None

    def convert_encoder_weights(self, sd: Mapping[str, torch.Tensor],
                                ) -> tuple[str, dict[str, torch.Tensor], dict[str, list[str]]]:
        """Map an ImageNet backbone file's state_dict onto ``self.encoder``'s keys.

        Returns (layout name, state_dict that loads strictly into the encoder,
        dropped keys grouped by reason). Raises ``CheckpointError`` with one line
        when the file is not a layout this network's encoder accepts.
        """
        from rtseg.core.errors import CheckpointError

        # Each encoder knows the public ImageNet layout of its own weights.
        convert = getattr(self.encoder, "convert_imagenet", None)
        if convert is None:
            raise CheckpointError(f"{self.name} takes no ImageNet backbone file (it has no pretrained-encoder "
                                  f"layout); train it without --backbone-weights")
        return convert(sd)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError  # abstract: each family implements it
