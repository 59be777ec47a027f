"""Dataset checker: what would silently spoil training or metrics.

Reports label values outside the class range (and not the ignore index),
image/label size mismatches, unreadable or multi-channel labels, images or
labels without a partner, and the pixel share of every class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from rtseg.data.datasets import SegDataset


@dataclass
class CheckReport:
    dataset: str
    root: str
    split: str | None
    class_names: tuple[str, ...]
    ignore_index: int
    pairs: int = 0
    orphan_images: list[str] = field(default_factory=list)
    orphan_labels: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "name: reason"
    size_mismatch: list[str] = field(default_factory=list)  # "name: image WxH, label WxH"
    bad_values: list[str] = field(default_factory=list)  # "name: values [..]"
    class_pixels: list[int] = field(default_factory=list)  # per class, then ignored last
    sizes: dict[str, int] = field(default_factory=dict)  # "WxH" -> image count

    @property
    def problems(self) -> int:
        return (len(self.orphan_images) + len(self.orphan_labels) + len(self.unreadable)
                + len(self.size_mismatch) + len(self.bad_values) + (self.pairs == 0))

    @property
    def ok(self) -> bool:
        return self.problems == 0

    def shares(self) -> list[float]:
        total = sum(self.class_pixels)
        return [c / total if total else 0.0 for c in self.class_pixels]

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["class_names"] = list(self.class_names)
        d["ok"] = self.ok
        d["shares"] = self.shares()
        return d

    def format_text(self, max_list: int = 10) -> str:
        lines = [f"dataset {self.dataset} at {self.root} split {self.split}: {self.pairs} image/label pairs",
                 "image sizes: " + (", ".join(f"{k} x{v}" for k, v in sorted(self.sizes.items())) or "-")]

        def section(title: str, items: list[str]) -> None:
            if items:
                lines.append(f"{title}: {len(items)}")
                lines.extend(f"  {s}" for s in items[:max_list])
                if len(items) > max_list:
                    lines.append(f"  ... and {len(items) - max_list} more")

        section("images without a label", self.orphan_images)
        section("labels without an image", self.orphan_labels)
        section("unreadable files", self.unreadable)
        section("image/label size mismatches", self.size_mismatch)
        section(f"labels with values outside 0..{len(self.class_names) - 1} and not ignore "
                f"({self.ignore_index})", self.bad_values)
        lines.append("class pixel shares:")
        shares = self.shares()
        names = list(self.class_names) + [f"(ignored: {self.ignore_index})"]
        for name, n, s in zip(names, self.class_pixels, shares, strict=True):
            lines.append(f"  {name:<24} {100 * s:6.2f}%  {n:>12d} px")
        lines.append("OK" if self.ok else f"{self.problems} problem(s) found")
        return "\n".join(lines)


def check_dataset(ds: SegDataset) -> CheckReport:
    """Read every pair of ``ds`` once and report what is wrong (never raises on bad files)."""
    info = ds.info
    rep = CheckReport(info.name, str(ds.root), ds.split, info.class_names, info.ignore_index,
                      pairs=len(ds.pairs))
    rep.orphan_images = [p.name for p in ds.orphan_images]
    rep.orphan_labels = [p.name for p in ds.orphan_labels]
    counts = np.zeros(256, dtype=np.int64)
    for img_path, lab_path in ds.pairs:
        name = img_path.stem
        img = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
        lab = cv2.imread(str(lab_path), cv2.IMREAD_UNCHANGED)
        if img is None:
            rep.unreadable.append(f"{img_path.name}: not a readable image")
            continue
        if lab is None:
            rep.unreadable.append(f"{lab_path.name}: not a readable image")
            continue
        if lab.ndim != 2 or lab.dtype != np.uint8:
            rep.unreadable.append(f"{lab_path.name}: label is {lab.dtype} {lab.shape}, "
                                  f"needs 8-bit single-channel class ids")
            continue
        key = f"{img.shape[1]}x{img.shape[0]}"
        rep.sizes[key] = rep.sizes.get(key, 0) + 1
        if img.shape[:2] != lab.shape:
            rep.size_mismatch.append(f"{name}: image {img.shape[1]}x{img.shape[0]}, "
                                     f"label {lab.shape[1]}x{lab.shape[0]}")
        raw_counts = np.bincount(lab.ravel(), minlength=256)
        bad = np.flatnonzero((raw_counts > 0) & ~ds.raw_valid)
        if bad.size:
            rep.bad_values.append(f"{name}: values {bad.tolist()}")
        # Shares in train ids (what the loss sees): map raw counts through the LUT.
        np.add.at(counts, ds.raw_lut, raw_counts)
    n = info.num_classes
    rep.class_pixels = [int(c) for c in counts[:n]] + [int(counts[n:].sum())]
    return rep


def class_frequencies(ds: SegDataset, limit: int | None = None) -> tuple[list[int], list[int]]:
    """Per class: its labelled pixels, and the labelled pixels of the images it appears in.

    What median frequency balancing needs (``rtseg.train.losses.median_frequency_weights``).
    Reads the labels of the first ``limit`` pairs (all when None), in train ids.
    """
    n = ds.info.num_classes
    class_px = np.zeros(n, dtype=np.int64)
    image_px = np.zeros(n, dtype=np.int64)
    for i in range(len(ds) if limit is None else min(limit, len(ds))):
        counts = np.bincount(ds.load_label(i).ravel(), minlength=256)[:n].astype(np.int64)
        class_px += counts
        image_px[counts > 0] += counts.sum()
    return class_px.tolist(), image_px.tolist()
