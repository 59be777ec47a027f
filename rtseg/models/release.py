"""Description of a public release checkpoint layout.

Each model family file defines the ``ReleaseFormat`` objects for the public
weights of its family; ``rtseg.models.checkpoint`` detects which one a file
has and converts it into a state_dict the family's model loads strictly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Converted:
    """Result of converting a release state_dict.

    ``state_dict`` loads strictly into ``create_model(model, num_classes, aux=aux)``.
    ``dropped`` maps a human reason ("ImageNet classifier", "alias of
    cp.backbone.features") to the keys removed for it.
    """

    model: str
    num_classes: int
    aux: bool
    state_dict: StateDict
    dropped: dict[str, list[str]]


@dataclass(frozen=True)
class ReleaseFormat:
    """One public checkpoint layout (e.g. the official STDC1-Seg release files)."""

    name: str  # shown to users, e.g. "official STDC-Seg release (STDC1)"
    model: str  # registry name the file loads into
    detect: Callable[[Mapping[str, torch.Tensor]], bool]  # cheap check on key names
    convert: Callable[[Mapping[str, torch.Tensor]], Converted]  # raises CheckpointError
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "RGB"
    dataset: str = "cityscapes"
