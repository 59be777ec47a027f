"""The video widget: paints the newest result with its mask overlay.

GUI thread only. ``offer(result)`` (connected to the bridge's queued
``result`` signal) just keeps a reference to the newest result; a stale one
that was never painted is replaced (the pipeline stats count it as a
superseded drop from the serial numbers). Painting is coalesced to at most
one paint per screen refresh: ``offer`` schedules an ``update()`` no sooner
than one refresh interval after the previous paint, and Qt merges repeated
``update()`` calls into one ``paintEvent``. Nothing here sleeps or polls.

Each new result is composed once at the size it is shown (frame scaled to the
view, mask colourised at model resolution and scaled, blended) and reported
to ``PipelineStats.note_displayed`` when painted.
"""

from __future__ import annotations

import time

import numpy as np
from PyQt6.QtCore import QRect, QSize, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QColor, QImage, QPainter, QPaintEvent, QResizeEvent
from PyQt6.QtWidgets import QSizePolicy, QWidget

from rtseg.core.frames import Result
from rtseg.gui.compose import LutCache, OverlayStyle, compose
from rtseg.pipeline.stats import PipelineStats

#: Used when the screen does not report its refresh rate (offscreen, some VNC servers).
DEFAULT_REFRESH_HZ = 60.0


def bgr_to_qimage(image: np.ndarray) -> QImage:
    """Wrap a contiguous BGR uint8 array as a QImage (no copy: keep ``image`` alive while it is used)."""
    h, w = image.shape[:2]
    return QImage(image.data, w, h, int(image.strides[0]), QImage.Format.Format_BGR888)  # type: ignore[call-overload]


def fit_rect(src_w: int, src_h: int, area: QRect) -> QRect:
    """The largest rectangle of the source's aspect ratio centred in ``area``."""
    if src_w <= 0 or src_h <= 0 or area.width() <= 0 or area.height() <= 0:
        return QRect()
    scale = min(area.width() / src_w, area.height() / src_h)
    w, h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
    return QRect(area.x() + (area.width() - w) // 2, area.y() + (area.height() - h) // 2, w, h)


class VideoView(QWidget):
    """Shows the newest ``Result`` with the overlay style set on it."""

    #: A new result was painted for the first time (GUI thread).
    displayed = pyqtSignal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 120)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)  # we fill every pixel ourselves
        self.stats: PipelineStats | None = None
        self.style_ = OverlayStyle()
        self._luts = LutCache()
        self._pending: Result | None = None  # newest result not painted yet
        self._shown: Result | None = None  # the result on screen
        self._picture: np.ndarray | None = None  # composed BGR for _shown at _picture_rect size
        self._picture_rect = QRect()
        self._last_paint = 0.0
        self.paints = 0  # paint events that drew a picture (tests, latency script)
        self._refresh = QTimer(self)
        self._refresh.setSingleShot(True)
        self._refresh.setTimerType(Qt.TimerType.PreciseTimer)
        self._refresh.timeout.connect(self.update)

    # -- input (GUI thread) --------------------------------------------------------------
    def offer(self, r: Result) -> None:
        """The bridge delivered a result: keep it as the newest and schedule a paint."""
        self._pending = r
        if self._refresh.isActive():
            return  # a paint is already due; it will show this newest result
        wait = self._last_paint + self.refresh_interval() - time.perf_counter()
        self._refresh.start(max(0, int(wait * 1000)))

    def clear(self) -> None:
        """Forget the picture (new source)."""
        self._pending = self._shown = None
        self._picture = None
        self.update()

    def refresh_interval(self) -> float:
        screen = self.screen()
        hz = screen.refreshRate() if screen is not None else 0.0
        return 1.0 / (hz if hz and hz > 1.0 else DEFAULT_REFRESH_HZ)

    @property
    def current_result(self) -> Result | None:
        """The newest result the view has (painted or about to be)."""
        return self._pending or self._shown

    # -- style -------------------------------------------------------------------------------
    def set_style(self, **changes: object) -> None:
        """Change ``OverlayStyle`` fields (opacity, overlay, mask_only, visible) and repaint."""
        from dataclasses import replace

        self.style_ = replace(self.style_, **changes)  # type: ignore[arg-type]
        self._picture = None
        self.update()

    def style_for(self, r: Result) -> OverlayStyle:
        """The style, with the visibility list dropped when it belongs to another model's classes."""
        vis = self.style_.visible
        if vis is not None and len(vis) != r.meta.num_classes:
            from dataclasses import replace

            return replace(self.style_, visible=None)
        return self.style_

    # -- painting ------------------------------------------------------------------------------
    def resizeEvent(self, event: QResizeEvent | None) -> None:  # noqa: N802 - Qt override
        self._picture = None
        super().resizeEvent(event)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(960, 720)

    def paintEvent(self, event: QPaintEvent | None) -> None:  # noqa: N802 - Qt override
        new = self._pending is not None
        if new:
            self._shown, self._pending = self._pending, None
            self._picture = None
        painter = QPainter(self)
        try:
            painter.fillRect(self.rect(), QColor(16, 16, 16))
            r = self._shown
            if r is None:
                painter.setPen(QColor(170, 170, 170))
                painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no video yet: Ctrl+O opens a file")
                return
            target = fit_rect(r.frame.width, r.frame.height, self.rect())
            if target.isEmpty():
                return
            if self._picture is None or self._picture_rect.size() != target.size():
                style = self.style_for(r)
                lut = self._luts.get(r.meta.palette, style.visible)
                self._picture = compose(r.frame.image, r.labels, lut, style, (target.width(), target.height()))
            self._picture_rect = target
            painter.drawImage(target, bgr_to_qimage(self._picture))
        finally:
            painter.end()
        self.paints += 1
        self._last_paint = time.perf_counter()
        if new and self._shown is not None:
            if self.stats is not None:
                self.stats.note_displayed(self._shown, self._last_paint)
            self.displayed.emit(self._shown)

    def rendered_image(self) -> QImage:
        """What the widget shows now (renders it), for tests and checks."""
        return self.grab().toImage()
