"""The fused deploy graph every backend runs.

    frames uint8 [N, H, W, 3] BGR
      -> NCHW float, channel order the network was trained on, /255, (x - mean) / std
      -> segmentation network (eval path only)
         [tta: also on the mirrored frames ("flip") and/or at 0.75x and 1.25x ("scales"); every
          pass's logits are brought back to the frame (flipped / resized bilinearly) and averaged]
      [-> optional CRF refinement of the logits with the frame's colours (rtseg.models.crf)]
      -> argmax over classes -> uint8
    labels uint8 [N, H, W]

Pre- and post-processing live inside the graph so PyTorch, ONNX Runtime,
OpenVINO and TensorRT can never drift apart, and only H*W bytes per frame
leave the device.
"""

from __future__ import annotations

import torch
from torch import nn

from rtseg.core.errors import UserInputError
from rtseg.core.meta import ModelMeta
from rtseg.models.base import MIN_SIZE, SIZE_MULTIPLE, SegModel
from rtseg.models.crf import CRFParams, MeanFieldCRF

#: Test-time augmentation modes the deploy graph can hold, for offline use and evaluation.
#: "flip" runs the network on the frames and their horizontal mirror and averages the logits
#: (the mirror's flipped back): twice the network cost. "scales" adds passes at TTA_SCALES
#: of the input size; "flip+scales" mirrors every scale. Gains and costs: docs/training.md.
TTA_MODES = ("none", "flip", "scales", "flip+scales")
TTA_SCALES = (0.75, 1.0, 1.25)


def _scaled_side(side: int, s: float) -> int:
    # Every pass must satisfy the network's size rule (multiples of SIZE_MULTIPLE).
    return max(MIN_SIZE, int(round(side * s / SIZE_MULTIPLE)) * SIZE_MULTIPLE)


def check_tta(tta: str) -> str:
    if tta not in TTA_MODES:
        raise UserInputError(f"unknown test-time augmentation {tta!r}; choose one of: {', '.join(TTA_MODES)}")
    return tta


def check_input_size(height: int, width: int) -> None:
    """Refuse sizes the networks cannot take, with what to do instead."""
    for side, v in (("height", height), ("width", width)):
        if v < MIN_SIZE or v % SIZE_MULTIPLE:
            lo = max(MIN_SIZE, (v // SIZE_MULTIPLE) * SIZE_MULTIPLE)
            raise UserInputError(
                f"input {side} {v} is not supported: it must be a multiple of {SIZE_MULTIPLE} and at "
                f"least {MIN_SIZE} (try {lo} or {lo + SIZE_MULTIPLE})"
            )


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``HxW`` (e.g. ``360x480``) into (H, W) and check it."""
    try:
        h_s, w_s = text.lower().split("x")
        h, w = int(h_s), int(w_s)
    except ValueError:
        raise UserInputError(f"bad size {text!r}: write it as HEIGHTxWIDTH, e.g. 360x480") from None
    check_input_size(h, w)
    return h, w


class DeployGraph(nn.Module):
    """uint8 BGR frames -> uint8 labels (and optionally float logits) around any zoo model."""

    # buffers registered in __init__
    order: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, model: SegModel, meta: ModelMeta, *, with_logits: bool = False, tta: str = "none",
                 refine: CRFParams | None = None) -> None:
        super().__init__()
        self.tta = check_tta(tta)
        if meta.num_classes != model.num_classes:
            raise ValueError(f"meta has {meta.num_classes} classes, model has {model.num_classes}")
        if model.num_classes > 256:
            raise UserInputError("uint8 labels hold at most 256 classes")
        self.model = model.eval()
        self.with_logits = with_logits
        # Frames arrive BGR; index the channels into the network's order.
        order = [2, 1, 0] if meta.channel_order == "RGB" else [0, 1, 2]
        self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)
        # (x/255 - mean)/std folded into one multiply-add per channel.
        mean = torch.tensor(meta.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(meta.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", -mean / std, persistent=False)
        self.crf = MeanFieldCRF(refine) if refine is not None else None

    def normalize(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float()
        x = torch.index_select(x, 1, self.order)
        return x * self.scale + self.shift

    def _augmented(self, x: torch.Tensor) -> torch.Tensor:
        """Mean of the logits of every TTA pass, each brought back to ``x``'s size and orientation."""
        import torch.nn.functional as F

        h, w = int(x.shape[-2]), int(x.shape[-1])
        scales = TTA_SCALES if "scales" in self.tta else (1.0,)
        flips = (False, True) if "flip" in self.tta else (False,)
        total: torch.Tensor | None = None
        for s in scales:
            size = (h, w) if s == 1.0 else (_scaled_side(h, s), _scaled_side(w, s))
            xs = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            for flip in flips:
                out = self.model(torch.flip(xs, dims=[3]) if flip else xs)
                assert isinstance(out, torch.Tensor), "deploy graph needs the model in eval mode"
                if flip:
                    out = torch.flip(out, dims=[3])
                if size != (h, w):
                    out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False)
                total = out if total is None else total + out
        assert total is not None
        return total / float(len(scales) * len(flips))

    def forward(self, frames: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = self.normalize(frames)
        logits = self.model(x) if self.tta == "none" else self._augmented(x)
        assert isinstance(logits, torch.Tensor), "deploy graph needs the model in eval mode"
        if self.crf is not None:
            # Colour distances do not depend on the channel order: the BGR frame serves as is.
            logits = self.crf(logits, frames.permute(0, 3, 1, 2).float())
        labels = logits.argmax(dim=1).to(torch.uint8)
        if self.with_logits:
            return labels, logits
        return labels


#: Seed of the random initialisation used when no weights are given, so every
#: backend (and every export of the same request) gets the same untrained net.
RANDOM_WEIGHTS_SEED = 0


def load_for_deploy(model: str | None, num_classes: int | None, weights):  # -> LoadedModel
    """``rtseg.models.checkpoint.build_model`` with a fixed seed for random weights.

    Benchmarks compare backends on the same frames; with random weights they
    must also run the same network, so the initialisation is seeded.
    """
    from rtseg.models.checkpoint import build_model

    if weights is not None:
        return build_model(model, num_classes, weights)
    if not model:
        raise UserInputError("say which model: --model NAME (random weights) and/or --weights PATH")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        return build_model(model, 19 if num_classes is None else num_classes, None)
