"""Build the displayed picture from a frame and its labels (numpy + OpenCV, no Qt).

Used by the video view (at view size), the recorder and screenshots (at frame
size). The labels are colourised at model resolution through the LUT; only the
coloured mask (and the hidden-class mask) is scaled, with nearest-neighbour so
class borders stay crisp. Nothing is ever colourised at frame size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from rtseg.pipeline.overlay import blend, colorize, palette_lut, visibility_mask


@dataclass(frozen=True)
class OverlayStyle:
    """How the mask is shown."""

    opacity: float = 0.5  # 0..1
    overlay: bool = True  # False: the frame only
    mask_only: bool = False  # True: the coloured mask only, no frame
    visible: tuple[bool, ...] | None = None  # per class; None: all visible


class LutCache:
    """The palette LUT and visibility table for one (palette, visibility) pair, rebuilt only on change."""

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self.lut = np.zeros((256, 3), np.uint8)

    def get(self, palette: Sequence[Sequence[int]], visible: Sequence[bool] | None) -> np.ndarray:
        key = (tuple(map(tuple, palette)), None if visible is None else tuple(visible))
        if key != self._key:
            self.lut = palette_lut(palette, visible)
            self._key = key
        return self.lut


def compose(frame: np.ndarray, labels: np.ndarray, lut: np.ndarray, style: OverlayStyle,
            size: tuple[int, int] | None = None) -> np.ndarray:
    """BGR uint8 picture of ``size`` (w, h; default the frame's) for ``frame`` with ``labels``.

    ``labels`` stay at model resolution: colourised there with ``lut``, then
    the coloured mask is scaled to ``size``.
    """
    if size is not None and (frame.shape[1], frame.shape[0]) != size:
        # INTER_AREA only when shrinking by 2x or more (it avoids aliasing there); for milder
        # shrinking and for growing LINEAR looks the same and is ~4x cheaper on the GUI thread
        # (1280x720 -> 880x495: 1.5 ms instead of 6.6 ms)
        heavy_shrink = size[0] * 2 <= frame.shape[1]
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA if heavy_shrink else cv2.INTER_LINEAR)
    if not style.overlay:
        return np.ascontiguousarray(frame)
    h, w = frame.shape[:2]
    mask = colorize(labels, lut)  # at model resolution
    hidden = None
    if style.visible is not None and not all(style.visible):
        hidden = visibility_mask(labels, style.visible)
    if style.mask_only:
        out = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
        return out  # hidden classes are already black in the LUT
    return blend(frame, mask, style.opacity, hidden)
