"""Small real models, ONNX files and frames for the precision/TensorRT tests.

The tiny network has the structures the FP16/INT8 paths treat specially
(attention sigmoid over global average pooling, a ReduceMean context branch,
a final resize and ArgMax), so the tests exercise them in a second, not minutes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
#: CI has the dataset beside the clone (``../shared``); this machine has it at /work/shared.
CAMVID_CANDIDATES = (REPO.parent / "shared" / "datasets" / "camvid", Path("/work/shared/datasets/camvid"))
SAMPLE_CLIP = REPO / "assets" / "camvid_0016E5_val.mp4"


def camvid_dir() -> Path | None:
    for d in CAMVID_CANDIDATES:
        if (d / "val" / "images").is_dir():
            return d
    return None


def bundled_trained_weights() -> Path | None:
    """The bundled CamVid-trained checkpoint in assets/, once it exists."""
    for pattern in ("*camvid*.pth", "*camvid*.pt", "*.pth"):
        found = sorted((REPO / "assets").glob(pattern))
        if found:
            return found[0]
    return None


def tiny_model(num_classes: int = 11, seed: int = 0):
    import torch
    import torch.nn.functional as F
    from torch import nn

    from rtseg.models.base import SegModel

    class Tiny(SegModel):
        name = "tiny"

        def __init__(self) -> None:
            super().__init__(num_classes, False)
            self.c1 = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            self.c2 = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
            self.att = nn.Conv2d(32, 32, 1)
            self.head = nn.Conv2d(32, num_classes, 1)

        def forward(self, x):
            h, w = x.shape[-2:]
            y = self.c2(self.c1(x))
            a = torch.sigmoid(self.att(F.adaptive_avg_pool2d(y, 1)))
            y = y * a + y.mean(dim=(2, 3), keepdim=True)
            return F.interpolate(self.head(y), size=(h, w), mode="bilinear", align_corners=False)

    torch.manual_seed(seed)
    return Tiny().eval()


def camvid_meta(model: str = "tiny", num_classes: int = 11):
    from rtseg.core.datasets_meta import CAMVID_CLASSES, CAMVID_PALETTE, IMAGENET_MEAN, IMAGENET_STD
    from rtseg.core.meta import ModelMeta

    assert num_classes == 11
    return ModelMeta(model, CAMVID_CLASSES, CAMVID_PALETTE, IMAGENET_MEAN, IMAGENET_STD)


def export(model, path: Path, size: tuple[int, int], *, with_logits: bool = False, batch: int = 1) -> Path:
    from rtseg.export.onnx_export import export_onnx

    export_onnx(model, camvid_meta(getattr(model, "name", "tiny") or "tiny"), input_size=size, path=path,
                verify=False, with_logits=with_logits, batch=batch)
    return path


def street_frames(n: int, size: tuple[int, int]) -> np.ndarray:
    """Real frames when the sample clip or CamVid is here, else smooth synthetic ones."""
    from rtseg.pipeline.sampling import read_frames

    if SAMPLE_CLIP.is_file():
        return read_frames(SAMPLE_CLIP, size, n)
    d = camvid_dir()
    if d is not None:
        return read_frames(d / "val" / "images", size, n)
    rng = np.random.default_rng(0)
    h, w = size
    base = rng.integers(0, 255, (n, h // 8, w // 8, 3), dtype=np.uint8)
    import cv2

    return np.stack([cv2.resize(b, (w, h), interpolation=cv2.INTER_LINEAR) for b in base])
