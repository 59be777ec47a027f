"""Colourise label maps and blend them over frames (numpy + OpenCV, no Qt).

Colourising happens at model resolution through a lookup table (one gather per
pixel); only the coloured mask is scaled to the frame, never the labels'
colourisation done at frame size.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def palette_lut(palette: Sequence[Sequence[int]], visible: Sequence[bool] | None = None) -> np.ndarray:
    """A 256x3 uint8 BGR lookup table from an RGB palette.

    Labels beyond the palette map to black. ``visible[i] = False`` maps class
    ``i`` to black too (hidden in the overlay).
    """
    lut = np.zeros((256, 3), np.uint8)
    for i, (r, g, b) in enumerate(palette):
        if visible is None or visible[i]:
            lut[i] = (b, g, r)
    return lut


def colorize(labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """uint8 labels ``[H, W]`` -> BGR colour mask ``[H, W, 3]``.

    ``np.take`` rather than ``lut[labels]``: the same gather, about 4x faster
    (0.7 vs 2.7 ms at 360x480 here), which matters on the display path.
    """
    return np.take(lut, labels, axis=0)


def visibility_mask(labels: np.ndarray, visible: Sequence[bool]) -> np.ndarray:
    """uint8 ``[H, W]`` of 255 where the class is visible, 0 where hidden."""
    keep = np.zeros(256, np.uint8)
    keep[: len(visible)] = np.where(np.asarray(visible, bool), 255, 0)
    return keep[labels]


def blend(frame: np.ndarray, color_mask: np.ndarray, alpha: float,
          alpha_mask: np.ndarray | None = None) -> np.ndarray:
    """Blend a colour mask (any size; scaled to the frame here) over a BGR frame.

    ``alpha`` in [0, 1] is the mask opacity. ``alpha_mask`` (uint8, same size
    as ``color_mask``, 0 = keep the frame) restricts the blend to some pixels.
    """
    h, w = frame.shape[:2]
    if color_mask.shape[:2] != (h, w):
        color_mask = cv2.resize(color_mask, (w, h), interpolation=cv2.INTER_NEAREST)
        if alpha_mask is not None:
            alpha_mask = cv2.resize(alpha_mask, (w, h), interpolation=cv2.INTER_NEAREST)
    out = cv2.addWeighted(frame, 1.0 - alpha, color_mask, alpha, 0.0)
    if alpha_mask is not None:
        keep = alpha_mask == 0
        out[keep] = frame[keep]
    return out


def class_shares(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Share of pixels per class (float64, sums to <= 1)."""
    counts = np.bincount(labels.ravel(), minlength=num_classes)[:num_classes]
    return counts / max(labels.size, 1)
