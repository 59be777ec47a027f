"""Deterministic, real-looking synthetic frames (numpy only).

Used where no real video is given: verification input for exports, the
synthetic source for tests and benchmarks. A "street" scene: sky gradient,
blocky buildings, a road with lane marks, moving cars, plus sensor noise, so
networks see varied textures instead of a flat image.
"""

from __future__ import annotations

import numpy as np


def street_frame(height: int, width: int, t: int = 0, seed: int = 0) -> np.ndarray:
    """A BGR uint8 frame of a synthetic street scene at time step ``t``."""
    rng = np.random.default_rng(seed)
    img = np.empty((height, width, 3), np.float32)
    horizon = int(height * 0.45)
    # sky: vertical gradient
    ramp = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None]
    img[:horizon] = (np.array([235, 200, 160], np.float32) * (1 - ramp) + np.array([250, 235, 215]) * ramp)[:, None, :]
    # road: grey with a perspective gradient
    ramp = np.linspace(0.0, 1.0, height - horizon, dtype=np.float32)[:, None]
    img[horizon:] = (np.array([110, 105, 100], np.float32) * (1 - ramp) + np.array([70, 68, 66]) * ramp)[:, None, :]
    # buildings along the horizon (fixed by seed), scrolling with t
    x = -(t * 3) % max(width, 1)
    while x < width * 2:
        bw = int(rng.integers(width // 12, width // 5))
        bh = int(rng.integers(height // 8, horizon))
        colour = rng.integers(40, 200, 3).astype(np.float32)
        x0, x1 = x % (2 * width) - width // 2, x % (2 * width) - width // 2 + bw
        x0c, x1c = max(x0, 0), min(x1, width)
        if x1c > x0c:
            img[horizon - bh:horizon, x0c:x1c] = colour
            # windows
            img[horizon - bh + 4:horizon - 4:8, x0c:x1c:6] = colour * 0.5
        x += bw + int(rng.integers(2, width // 20 + 3))
    # lane marks
    for k in range(6):
        y = horizon + int((height - horizon) * (k + (t % 10) / 10) / 6)
        if y < height:
            half = max(1, (y - horizon) // 12)
            img[y:y + max(1, half // 2), width // 2 - half:width // 2 + half] = 230
    # cars: boxes moving across the road
    for k in range(3):
        cw, ch = width // 7, height // 10
        cx = int((k * width / 3 + t * (4 + 2 * k)) % (width + cw)) - cw
        cy = horizon + (k + 1) * (height - horizon) // 5
        colour = np.array([(60 + 70 * k) % 255, 40 + 50 * k, 200 - 60 * k], np.float32)
        x0, x1 = max(cx, 0), min(cx + cw, width)
        if x1 > x0:
            img[cy:cy + ch, x0:x1] = colour
            img[cy + ch - ch // 4:cy + ch, x0:x1] = 20
    noise = np.random.default_rng(seed * 1_000_003 + t).normal(0.0, 4.0, img.shape).astype(np.float32)
    return np.clip(img + noise, 0, 255).astype(np.uint8)
