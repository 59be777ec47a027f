"""What a training run tells its user: the progress line, the CSV logs and the curves plot.

Everything here runs on the training loop's thread (the main thread).
"""

from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from rtseg.core.atomic import atomic_path


class Progress:
    """Progress line on stderr: a live bar on a terminal, a plain line every
    ``every`` iterations otherwise (nohup logs)."""

    def __init__(self, total: int, start: int, every: int, stream=None) -> None:
        self.total, self.start, self.every = total, start, every
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, it: int, loss: float, lr: float) -> float:
        """Report finished iteration ``it`` (1-based count); returns iterations per second."""
        done = it - self.start
        elapsed = time.perf_counter() - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        if self.tty or it % self.every == 0 or it == self.total:
            eta = (self.total - it) / rate if rate > 0 else float("inf")
            frac = it / self.total
            bar = "#" * int(frac * 24)
            line = (f"[{bar:<24}] {it}/{self.total} loss {loss:.4f} lr {lr:.2e} "
                    f"{rate:.2f} it/s eta {_fmt_time(eta)}")
            if self.tty:
                self.stream.write("\r" + line)
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        return rate

    def message(self, text: str) -> None:
        if self.tty:
            self.stream.write("\n")
        self.stream.write(text + "\n")
        self.stream.flush()


def _fmt_time(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class CsvLog:
    """Append-only CSV log keyed by ``iteration`` (the count of finished iterations).
    Opening it for a run resumed at ``start`` drops rows beyond ``start`` (written
    after the last checkpoint by an interrupted run), so the log never holds an
    iteration twice."""

    def __init__(self, path: Path, fields: list[str], start: int) -> None:
        self.path, self.fields = path, fields
        rows: list[dict[str, str]] = []
        if path.is_file() and start > 0:
            with path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(float(r.get("iteration") or 0)) <= start]
        with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(row)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def plot_curves(train_csv: Path, val_csv: Path, out_png: Path, size: tuple[int, int] = (900, 420)) -> Path:
    """Draw loss (left) and val mIoU (right) against iterations into a PNG with OpenCV.

    OpenCV is already a dependency, so the plot needs no plotting library.
    """
    import cv2

    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    panels = [("train loss", _read_csv(train_csv), "loss", (40, 40, 200)),
              ("val mIoU %", _read_csv(val_csv), "miou", (40, 140, 40))]
    pw = w // 2
    for k, (title, rows, key, colour) in enumerate(panels):
        x0, y0, x1, y1 = k * pw + 60, 30, (k + 1) * pw - 20, h - 40
        cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
        cv2.putText(img, title, (x0, y0 - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        pts = [(float(r["iteration"]), float(r[key]) * (100 if key == "miou" else 1))
               for r in rows if r.get(key) not in (None, "")]
        if not pts:
            cv2.putText(img, "no data yet", (x0 + 10, (y0 + y1) // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (120, 120, 120), 1, cv2.LINE_AA)
            continue
        xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        xmin, xmax = float(xs.min()), float(max(xs.max(), xs.min() + 1))
        ymin, ymax = float(ys.min()), float(ys.max())
        if ymax - ymin < 1e-9:
            ymin, ymax = ymin - 1, ymax + 1
        px = (x0 + (xs - xmin) / (xmax - xmin) * (x1 - x0)).astype(np.int32)
        py = (y1 - (ys - ymin) / (ymax - ymin) * (y1 - y0)).astype(np.int32)
        cv2.polylines(img, [np.stack([px, py], 1).reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA)
        if len(pts) == 1:
            cv2.circle(img, (int(px[0]), int(py[0])), 3, colour, -1)
        for val, yy in ((ymax, y0 + 5), (ymin, y1)):
            cv2.putText(img, f"{val:.3g}", (x0 - 55, yy), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for val, xx in ((xmin, x0), (xmax, x1 - 40)):
            cv2.putText(img, f"{val:.0f}", (xx, y1 + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    with atomic_path(out_png) as tmp:
        if not cv2.imwrite(str(tmp), img):
            raise OSError(f"OpenCV could not write {out_png}")
    return out_png
