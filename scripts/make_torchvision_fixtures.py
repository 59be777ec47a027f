"""Write tests/data/torchvision_reference.npz: torchvision's own outputs for the six segmentation
layouts rtseg loads, on version-proof synthetic weights, for tests/test_torchvision_layouts.py.

torchvision cannot be imported beside the project's pinned torch 2.13.0, so this runs in a
separate throwaway virtualenv (never imported by rtseg)::

    python3 -m venv /tmp/tvvenv && /tmp/tvvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 numpy
    /tmp/tvvenv/bin/python scripts/make_torchvision_fixtures.py

For each layout: torchvision builds the model (``weights=None``, 21 classes, aux
classifier where the release has one) and loads, strictly, the state_dict that
``tests/ckpt_factory.deterministic_state_dict`` makes from the release key list (a
64-bit LCG, identical on every torch/NumPy version). In eval mode it runs the LCG
input ``[1, 3, 64, 80]``; stored are the ``out`` logits (upsampled to the input by
torchvision) on every 4th row and column, the argmax labels at every pixel, and the
``aux`` logits likewise subsampled. About 150 KB compressed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from torchvision.models import segmentation as seg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import ckpt_factory as F  # noqa: E402  (tests/ helper, shared with the test)

OUT = REPO / "tests" / "data" / "torchvision_reference.npz"
INPUT_SHAPE = (1, 3, 64, 80)
STEP = 4
BUILDERS = {
    "tv_fcn_resnet50": lambda: seg.fcn_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True),
    "tv_fcn_resnet101": lambda: seg.fcn_resnet101(weights=None, weights_backbone=None, num_classes=21,
                                                  aux_loss=True),
    "tv_deeplabv3_resnet50": lambda: seg.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21,
                                                            aux_loss=True),
    "tv_deeplabv3_resnet101": lambda: seg.deeplabv3_resnet101(weights=None, weights_backbone=None, num_classes=21,
                                                              aux_loss=True),
    "tv_deeplabv3_mobilenet_v3_large": lambda: seg.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=21, aux_loss=True),
    "tv_lraspp_mobilenet_v3_large": lambda: seg.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                          num_classes=21),
}


def main() -> None:
    torch.set_num_threads(1)
    x = F.deterministic_input(INPUT_SHAPE)
    arrays: dict[str, np.ndarray] = {"input_shape": np.array(INPUT_SHAPE), "step": np.array(STEP),
                                     "torch_version": np.array(torch.__version__),
                                     "torchvision_version": np.array(torchvision.__version__)}
    for layout, build in BUILDERS.items():
        model = build().eval()
        model.load_state_dict(F.deterministic_state_dict(layout), strict=True)
        with torch.no_grad():
            res = model(x)
        out = res["out"]
        arrays[f"{layout}/out"] = out[:, :, ::STEP, ::STEP].numpy()
        arrays[f"{layout}/labels"] = out.argmax(1).to(torch.uint8).numpy()
        if "aux" in res:
            arrays[f"{layout}/aux"] = res["aux"][:, :, ::STEP, ::STEP].numpy()
        print(f"{layout}: out {tuple(out.shape)} |max| {out.abs().max():.3g}")
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} KB)")


if __name__ == "__main__":
    main()
