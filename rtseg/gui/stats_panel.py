"""Live numbers: rates, latency percentiles, frame age, drops, flicker, and what runs the model.

GUI thread only; the main window feeds it a ``StatsSnapshot`` a few times a second.
"""

from __future__ import annotations

import math

from PyQt6.QtWidgets import QFormLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from rtseg.pipeline.stats import Dist, StatsSnapshot
from rtseg.runtime.base import BackendInfo

_NUMBERS = ("capture FPS", "inference FPS", "display FPS", "latency p50/p95/p99", "frame age p50/p95",
            "infer (mean)", "dropped", "flicker")
_MODEL = ("model", "input size", "backend", "precision", "device", "weights")


def _ms(d: Dist, *which: str) -> str:
    if d.n == 0 or math.isnan(d.p50):
        return "-"
    return " / ".join(f"{getattr(d, w):.1f}" for w in which) + " ms"


class StatsPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels: dict[str, QLabel] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for title, keys in (("Pipeline", _NUMBERS), ("Model", _MODEL)):
            box = QGroupBox(title)
            form = QFormLayout(box)
            for k in keys:
                lab = QLabel("-")
                lab.setWordWrap(True)
                self.labels[k] = lab
                form.addRow(k, lab)
            lay.addWidget(box)
        lay.addStretch(1)

    def text(self, key: str) -> str:
        return self.labels[key].text()

    def update_snapshot(self, s: StatsSnapshot) -> None:
        L = self.labels
        L["capture FPS"].setText(f"{s.capture_fps:.1f}")
        L["inference FPS"].setText(f"{s.inference_fps:.1f}")
        L["display FPS"].setText(f"{s.display_fps:.1f}")
        L["latency p50/p95/p99"].setText(_ms(s.latency, "p50", "p95", "p99"))
        L["frame age p50/p95"].setText(_ms(s.frame_age, "p50", "p95"))
        infer = s.stages.get("infer")
        L["infer (mean)"].setText(_ms(infer, "mean") if infer is not None else "-")
        L["dropped"].setText(f"{s.dropped} ({s.dropped_capture} capture, {s.dropped_superseded} display)")
        if s.flicker is None:
            L["flicker"].setText("-")
        elif s.flicker_raw is not None and s.flicker_raw != s.flicker:
            L["flicker"].setText(f"{100 * s.flicker:.2f}% (raw {100 * s.flicker_raw:.2f}%)")
        else:
            L["flicker"].setText(f"{100 * s.flicker:.2f}%")

    def set_model(self, model: str, input_size: tuple[int, int] | None, info: BackendInfo | None,
                  weights: str | None) -> None:
        L = self.labels
        L["model"].setText(model)
        L["input size"].setText(f"{input_size[1]}x{input_size[0]} (WxH)" if input_size else "-")
        L["backend"].setText(info.backend if info else "-")
        L["precision"].setText(info.precision_text if info else "-")
        L["device"].setText(info.device if info else "-")
        L["weights"].setText(weights or "RANDOM (untrained)")

    def clear_model(self, why: str = "-") -> None:
        for k in _MODEL:
            self.labels[k].setText("-")
        self.labels["model"].setText(why)
