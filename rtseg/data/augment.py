"""Training augmentation on uint8 BGR images and uint8 label maps (numpy + OpenCV).

Random scale (0.5-2.0), random crop padded with ``ignore_index`` where the
scaled image is smaller than the crop, horizontal flip, colour jitter. Every
random draw comes from the ``numpy.random.Generator`` passed in, so a sample's
augmentation is reproducible from (seed, iteration, slot) and a resumed run
sees exactly the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from rtseg.core.datasets_meta import IMAGENET_MEAN
from rtseg.core.frames import resize_to_model


@dataclass(frozen=True)
class AugmentConfig:
    crop: tuple[int, int]  # (H, W) of the training crop
    scale: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    brightness: float = 0.4  # factor drawn from [1 - b, 1 + b]
    contrast: float = 0.4
    saturation: float = 0.4
    ignore_index: int = 255
    # Image padding colour (BGR uint8): the normalisation mean, so padded pixels
    # enter the network as zeros instead of as a strong black edge.
    pad_bgr: tuple[int, int, int] = (
        round(IMAGENET_MEAN[2] * 255), round(IMAGENET_MEAN[1] * 255), round(IMAGENET_MEAN[0] * 255)
    )


def random_scale(img: np.ndarray, lab: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    h, w = lab.shape
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    if (nh, nw) == (h, w):
        return img, lab
    # Linear for pixels; nearest for labels, which are ids, not intensities.
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    lab = cv2.resize(lab, (nw, nh), interpolation=cv2.INTER_NEAREST)
    return img, lab


def pad_to(img: np.ndarray, lab: np.ndarray, size: tuple[int, int], pad_bgr: tuple[int, int, int],
           ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right up to at least ``size``; padded label pixels are ignored by loss and metrics."""
    h, w = lab.shape
    ph, pw = max(0, size[0] - h), max(0, size[1] - w)
    if ph == 0 and pw == 0:
        return img, lab
    img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=pad_bgr)
    lab = cv2.copyMakeBorder(lab, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=ignore_index)
    return img, lab


def colour_jitter(img: np.ndarray, rng: np.random.Generator, brightness: float, contrast: float,
                  saturation: float) -> np.ndarray:
    """Brightness, contrast and saturation jitter (torchvision's definitions), uint8 in and out."""
    f = img.astype(np.float32)
    if brightness > 0:
        f *= rng.uniform(1 - brightness, 1 + brightness)
    if contrast > 0:
        c = rng.uniform(1 - contrast, 1 + contrast)
        gray_mean = float((f[..., 0] * 0.114 + f[..., 1] * 0.587 + f[..., 2] * 0.299).mean())
        f = (f - gray_mean) * c + gray_mean
    if saturation > 0:
        s = rng.uniform(1 - saturation, 1 + saturation)
        gray = (f[..., 0] * 0.114 + f[..., 1] * 0.587 + f[..., 2] * 0.299)[..., None]
        f = (f - gray) * s + gray
    return np.clip(f, 0, 255).astype(np.uint8)


class TrainAugment:
    """``(bgr, label, rng) -> (bgr crop, label crop)`` of exactly ``cfg.crop``."""

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg

    def __call__(self, img: np.ndarray, lab: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        img, lab = random_scale(img, lab, float(rng.uniform(*cfg.scale)))
        img, lab = pad_to(img, lab, cfg.crop, cfg.pad_bgr, cfg.ignore_index)
        h, w = lab.shape
        ch, cw = cfg.crop
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        img, lab = img[y:y + ch, x:x + cw], lab[y:y + ch, x:x + cw]
        if cfg.flip and rng.random() < 0.5:
            img, lab = img[:, ::-1], lab[:, ::-1]
        img = colour_jitter(img, rng, cfg.brightness, cfg.contrast, cfg.saturation)
        return np.ascontiguousarray(img), np.ascontiguousarray(lab)


def resize_for_model(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a BGR frame to the model input (H, W) the way the live pipeline does (linear)."""
    return resize_to_model(img, (int(size[0]), int(size[1])))


def normalize_bgr(img: np.ndarray, mean: tuple[float, float, float], std: tuple[float, float, float],
                  channel_order: str = "RGB") -> np.ndarray:
    """uint8 BGR ``[H, W, 3]`` -> float32 ``[3, H, W]``: channel order, /255, (x - mean) / std.

    The same arithmetic as ``rtseg.models.deploy.DeployGraph.normalize``, so the
    network sees identical inputs in training and in every deployed backend.
    """
    x = img[..., ::-1] if channel_order == "RGB" else img
    x = x.astype(np.float32).transpose(2, 0, 1)
    scale = (1.0 / (255.0 * np.asarray(std, np.float32))).reshape(3, 1, 1)
    shift = (-np.asarray(mean, np.float32) / np.asarray(std, np.float32)).reshape(3, 1, 1)
    return np.ascontiguousarray(x * scale + shift)
