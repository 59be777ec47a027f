"""Temporal smoothing of label maps by per-pixel hysteresis, and the flicker figure.

Per-frame segmentation flickers: pixels near class boundaries, or in
uncertain regions, change class from one frame to the next although nothing
moved. Hysteresis hides that: a pixel keeps its shown class until one *other*
class has won that pixel ``k`` consecutive frames. Noise that flips a pixel for
fewer than ``k`` frames never reaches the screen; a real change shows up
``k - 1`` frames late. ``k = 1`` shows every change at once (no smoothing).

All operations are whole-array numpy (no per-pixel Python loops); the state is
three uint8 arrays the size of the label map.
"""

from __future__ import annotations

import numpy as np

#: The counter is uint8; k beyond this makes no sense at video rates anyway.
MAX_K = 255


def flicker(prev: np.ndarray, cur: np.ndarray) -> float:
    """Share of pixels (0..1) whose class differs between two label maps of one size."""
    if prev.shape != cur.shape:
        raise ValueError(f"flicker: label maps differ in shape {prev.shape} vs {cur.shape}")
    return float(np.count_nonzero(prev != cur)) / max(cur.size, 1)


class HysteresisSmoother:
    """Per-pixel hysteresis over a stream of uint8 label maps.

    Owned by one thread (the inference thread); not thread-safe.
    """

    def __init__(self, k: int) -> None:
        if not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ValueError(f"smoothing k must be an integer in 1..{MAX_K}, got {k!r}")
        self.k = k
        self._shown: np.ndarray | None = None  # class currently shown per pixel
        self._cand: np.ndarray | None = None  # class challenging the shown one
        self._count: np.ndarray | None = None  # consecutive frames the challenger has won

    def reset(self) -> None:
        """Forget the history (new source, seek, model switch): the next map is shown as is."""
        self._shown = self._cand = self._count = None

    def update(self, labels: np.ndarray) -> np.ndarray:
        """Feed the network's labels for the next frame; return the labels to show.

        The returned array is owned by the caller (a copy, safe to publish to
        other threads while the smoother keeps updating its own state).
        """
        if labels.dtype != np.uint8 or labels.ndim != 2:
            raise ValueError(f"smoothing expects uint8 [H, W] labels, got {labels.dtype} {labels.shape}")
        if self._shown is None or self._shown.shape != labels.shape:
            self._shown = labels.copy()
            self._cand = labels.copy()
            self._count = np.zeros(labels.shape, np.uint8)
            return labels.copy()
        shown, cand, count = self._shown, self._cand, self._count
        assert cand is not None and count is not None
        differs = labels != shown
        same_challenger = differs & (labels == cand)
        # A pixel agreeing with what is shown drops any challenger; a new
        # challenger starts at 1; the same challenger again counts up.
        np.minimum(count, MAX_K - 1, out=count)
        count += 1
        count[~same_challenger] = 1
        count[~differs] = 0
        np.copyto(cand, labels, where=differs)
        switch = count >= self.k
        np.copyto(shown, labels, where=switch)
        count[switch] = 0
        return shown.copy()
