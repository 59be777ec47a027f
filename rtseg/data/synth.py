"""Small synthetic segmentation datasets written as real image/label files.

For smoke tests and for trying the tools without downloading anything: every
class is a shape of a distinct colour (plus noise) on a background class, so a
network can learn it in a few iterations. The layout is the ``folder`` layout
(``dataset.json`` + ``<split>/images`` + ``<split>/labels``), or CamVid's.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from rtseg.core.datasets_meta import generic_classes


def synth_sample(rng: np.random.Generator, size: tuple[int, int], num_classes: int,
                 ignore_index: int, palette: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """One (BGR image, label) pair: background class 0, a few shapes of other classes,
    a thin band of ignored pixels."""
    h, w = size
    lab = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        c = int(rng.integers(1, num_classes))
        y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        hh, ww = int(rng.integers(8, max(9, h // 2))), int(rng.integers(8, max(9, w // 2)))
        if rng.random() < 0.5:
            lab[y:y + hh, x:x + ww] = c
        else:
            cv2.circle(lab, (x, y), max(4, min(hh, ww) // 2), c, -1)
    band = int(rng.integers(0, h - 2))
    lab[band:band + 2, : w // 4] = ignore_index
    colours = np.array(palette + [(0, 0, 0)] * (256 - len(palette)), np.float32)[:, ::-1]  # RGB -> BGR
    img = colours[np.minimum(lab, len(palette))]
    img += rng.normal(0, 12, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), lab


def write_synthetic_dataset(root: str | Path, *, splits: dict[str, int] | None = None,
                            size: tuple[int, int] = (64, 80), num_classes: int = 4,
                            ignore_index: int = 255, layout: str = "folder", seed: int = 0,
                            image_ext: str = ".png") -> Path:
    """Write a dataset under ``root`` and return it. ``layout`` is ``folder`` (writes
    ``dataset.json``) or ``camvid`` (no description; then ``num_classes`` should be 11
    and ``ignore_index`` 11)."""
    root = Path(root)
    splits = splits or {"train": 8, "val": 4}
    names, palette = generic_classes(num_classes)
    rng = np.random.default_rng(seed)
    for split, n in splits.items():
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, lab = synth_sample(rng, size, num_classes, ignore_index, list(palette))
            cv2.imwrite(str(root / split / "images" / f"s{i:04d}{image_ext}"), img)
            cv2.imwrite(str(root / split / "labels" / f"s{i:04d}.png"), lab)
    if layout == "folder":
        desc = {"name": "synthetic", "classes": list(names), "palette": [list(c) for c in palette],
                "ignore_index": ignore_index}
        (root / "dataset.json").write_text(json.dumps(desc, indent=1))
    return root
