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

import torch
from torch import nn

#: Input height and width must be multiples of this.
SIZE_MULTIPLE = 8
#: Smallest input side the networks accept (the 1/32 feature map must exist).
MIN_SIZE = 64


class SegModel(nn.Module):
    """Base class of every zoo model (see the module docstring for the contract)."""

    #: Registry name, set by each subclass instance.
    name: str = ""

    def __init__(self, num_classes: int, aux: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.aux = aux

    @property
    def train_outputs(self) -> tuple[str, ...]:
        """Keys of the train-mode output dict besides ``"out"`` (empty when ``aux`` is False)."""
        return ()

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError  # abstract: each family implements it
