"""The main window: video view with overlay, legend, stats, playback and recording controls.

Threads: everything here runs on the GUI thread. The pipeline's callbacks
arrive through ``PipelineBridge`` as queued signals; the only pipeline calls
made here are the facade's controlling-thread methods (start, stop, pause,
resume, step, seek, switch_source, switch_model), none of which block on I/O
or inference (``stop`` and the switches wait at most ``stop_timeout``).

Errors never end the app: an ``RtsegError`` from the pipeline (bad source,
busy camera, model that fails to load, engine mismatch) or from a control
shows in a non-modal banner above the video and in the status bar, with what
to do; the window stays usable (open another source or model).
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import cv2
from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QAction, QCloseEvent, QKeySequence
from PyQt6.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QSlider,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from rtseg.core.atomic import atomic_write_bytes
from rtseg.core.errors import RtsegError, UserInputError
from rtseg.core.frames import Result
from rtseg.core.meta import ModelMeta
from rtseg.gui.bridge import PipelineBridge
from rtseg.gui.compose import compose
from rtseg.gui.legend import LegendWidget
from rtseg.gui.model_picker import ModelPickerDialog, ModelRequest
from rtseg.gui.recorder import Recorder
from rtseg.gui.settings import Settings
from rtseg.gui.source_dialog import SourceDialog, pick_video_file
from rtseg.gui.stats_panel import StatsPanel
from rtseg.gui.video_view import VideoView
from rtseg.pipeline.overlay import class_shares, palette_lut
from rtseg.pipeline.stats import PipelineStats
from rtseg.pipeline.worker import Pipeline

#: How often the stats panel and the legend's shares refresh (ms).
STATS_INTERVAL_MS = 250
_ERROR_STYLE = "background: #7b241c; color: white; padding: 6px; border-radius: 3px;"
_WARN_STYLE = "background: #9a6b00; color: white; padding: 6px; border-radius: 3px;"


class Banner(QFrame):
    """A non-modal message line above the video, closed with its x button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("x")
        close.setAutoRaise(True)
        close.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        close.clicked.connect(self.dismiss)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.label, 1)
        lay.addWidget(close)
        self.kind = ""
        self.hide()

    def show_message(self, text: str, kind: str = "error") -> None:
        self.kind = kind
        self.label.setText(text)
        self.setStyleSheet(_ERROR_STYLE if kind == "error" else _WARN_STYLE)
        self.show()

    def dismiss(self) -> None:
        self.kind = ""
        self.hide()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""


class MainWindow(QMainWindow):
    """The rtseg desktop window. Create on the GUI thread, then ``start(source, request)``."""

    def __init__(self, settings: Settings, *, output_dir: str | Path | None = None, loop: bool = True,
                 mode: str = "realtime") -> None:
        """``loop``: files restart at the end. ``mode``: the pipeline mode (``realtime`` plays files at
        their fps; ``fast`` reads them as fast as the model takes them, for load tests)."""
        super().__init__()
        self.setWindowTitle("rtseg")
        self.settings = settings
        self.output_dir = Path(output_dir) if output_dir is not None else settings.output_dir()
        self.loop = loop
        self.mode = mode
        self.stats = PipelineStats()
        self.bridge = PipelineBridge(self)
        cb = self.bridge.callbacks()
        self.pipeline = Pipeline(cb["on_result"], cb["on_error"], cb["on_status"], cb["on_end"], stats=self.stats)
        self.recorder = Recorder()
        self.source_spec: str | int | None = None
        self.request: ModelRequest | None = None
        self.meta: ModelMeta | None = None
        self.last_error = ""
        self.results_received = 0
        self.stop_ok: bool | None = None  # whether the pipeline stopped in time on close (tests)
        self._frame_count: int | None = None
        self._ended = False  # the file ended (not looping): Space plays it again

        self.view = VideoView()
        self.view.stats = self.stats
        self.banner = Banner()
        self.legend = LegendWidget()
        self.stats_panel = StatsPanel()
        self._build_actions()
        self._build_layout()
        self._build_menus()
        self.error_status = QLabel("")
        self.error_status.setStyleSheet("color: #e74c3c")
        self.statusBar().addPermanentWidget(self.error_status)  # type: ignore[union-attr]

        self.bridge.connect_slots(result=self._on_result, error=self._on_error, status=self._on_status,
                                  ended=self._on_end)
        self.legend.visibility_changed.connect(lambda vis: self.view.set_style(visible=tuple(vis)))
        self._stats_timer = QTimer(self)
        self._stats_timer.timeout.connect(self._refresh_stats)
        self._stats_timer.start(STATS_INTERVAL_MS)

        self.set_opacity(settings.opacity())
        geometry = settings.geometry()
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(1400, 860)

    # ------------------------------------------------------------------ construction
    def _action(self, text: str, shortcut: str | QKeySequence.StandardKey | None, slot,  # type: ignore[no-untyped-def]
                checkable: bool = False, tip: str = "") -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        a.setCheckable(checkable)
        if tip:
            a.setToolTip(f"{tip} ({a.shortcut().toString()})" if shortcut else tip)
        (a.toggled if checkable else a.triggered).connect(slot)
        self.addAction(a)  # shortcuts work even when the menu bar is hidden (full screen)
        return a

    def _build_actions(self) -> None:
        A = self._action
        self.act_open = A("&Open video...", "Ctrl+O", self.open_file_dialog, tip="Open a video file")
        self.act_source = A("Open &source...", "Ctrl+Shift+O", self.open_source_dialog,
                            tip="Open a file, image folder, webcam or stream URL")
        self.act_model = A("Choose &model...", "Ctrl+M", self.open_model_dialog, tip="Choose the model and backend")
        self.act_quit = A("&Quit", "Ctrl+Q", self.close)
        self.act_pause = A("Pause", "Space", self.toggle_pause, tip="Pause / play")
        self.act_step = A("Step", "Right", self.step, tip="Show the next frame")
        self.act_overlay = A("Overlay", "O", lambda on: self.view.set_style(overlay=on), checkable=True,
                             tip="Show the mask overlay")
        self.act_overlay.setChecked(True)
        self.act_mask = A("Mask only", "M", lambda on: self.view.set_style(mask_only=on), checkable=True,
                          tip="Show only the colour mask")
        self.act_record = A("Record", "R", self.set_recording, checkable=True, tip="Record the overlay to MP4")
        self.act_shot = A("Screenshot", "S", lambda: self.save_screenshot(), tip="Save the overlay as PNG")
        self.act_full = A("Full screen", "F", self.set_full_screen, checkable=True, tip="Full screen")
        self.act_full.setShortcuts([QKeySequence("F"), QKeySequence("F11")])

    def _tool(self, action: QAction) -> QToolButton:
        b = QToolButton()
        b.setDefaultAction(action)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space/Right must reach the window's shortcuts
        b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        return b

    def _build_layout(self) -> None:
        self.seek_slider = QSlider(Qt.Orientation.Horizontal)
        self.seek_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.seek_slider.setEnabled(False)
        self.seek_slider.setToolTip("Seek (files and folders)")
        self.seek_slider.sliderMoved.connect(self._seek_to)
        self.seek_slider.actionTriggered.connect(
            lambda _a: QTimer.singleShot(0, lambda: self._seek_to(self.seek_slider.sliderPosition())))
        self.pos_label = QLabel("-")
        self.pos_label.setMinimumWidth(70)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setFixedWidth(100)
        self.opacity_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.opacity_slider.setToolTip("Mask opacity")
        self.opacity_slider.valueChanged.connect(lambda v: self.set_opacity(v / 100.0))
        self.opacity_label = QLabel("")
        self.overlay_box = QCheckBox("overlay")  # mirrors the O action
        self.overlay_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.overlay_box.setChecked(True)
        self.overlay_box.toggled.connect(self.act_overlay.setChecked)
        self.act_overlay.toggled.connect(self.overlay_box.setChecked)
        self.mask_box = QCheckBox("mask only")
        self.mask_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.mask_box.toggled.connect(self.act_mask.setChecked)
        self.act_mask.toggled.connect(self.mask_box.setChecked)

        # two rows so the window still fits a small screen next to the side panel
        transport = QHBoxLayout()
        for a in (self.act_pause, self.act_step):
            transport.addWidget(self._tool(a))
        transport.addWidget(self.seek_slider, 1)
        transport.addWidget(self.pos_label)
        look = QHBoxLayout()
        look.addWidget(QLabel("opacity"))
        look.addWidget(self.opacity_slider)
        look.addWidget(self.opacity_label)
        look.addWidget(self.overlay_box)
        look.addWidget(self.mask_box)
        look.addStretch(1)
        for a in (self.act_record, self.act_shot):  # full screen: F or the View menu
            look.addWidget(self._tool(a))

        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(4, 4, 4, 4)
        lv.addWidget(self.banner)
        lv.addWidget(self.view, 1)
        lv.addLayout(transport)
        lv.addLayout(look)

        self.side = QWidget()
        sv = QVBoxLayout(self.side)
        sv.setContentsMargins(4, 4, 4, 4)
        self.smoothing_spin = QSpinBox()
        self.smoothing_spin.setRange(0, 30)
        self.smoothing_spin.setSpecialValueText("off")
        self.smoothing_spin.setSuffix(" frames")
        self.smoothing_spin.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.smoothing_spin.setToolTip("Temporal smoothing: a pixel changes class only after the new class "
                                       "wins this many frames in a row (less flicker, more lag)")
        self.smoothing_spin.valueChanged.connect(self.set_smoothing)
        smooth_row = QHBoxLayout()
        smooth_row.addWidget(QLabel("smoothing"))
        smooth_row.addWidget(self.smoothing_spin, 1)
        sv.addWidget(QLabel("<b>Classes</b>"))
        sv.addWidget(self.legend, 1)  # grows up to its rows (LegendWidget caps the height)
        sv.addLayout(smooth_row)
        sv.addWidget(self.stats_panel, 1)  # the panel ends in a stretch: spare height goes below it
        self.side.setMinimumWidth(210)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.side)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 0)
        split.setSizes([1040, 340])
        self.setCentralWidget(split)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        assert mb is not None
        file_menu = mb.addMenu("&File")
        assert file_menu is not None
        file_menu.addAction(self.act_open)
        file_menu.addAction(self.act_source)
        self.recent_menu = QMenu("Recent sources", self)
        file_menu.addMenu(self.recent_menu)
        file_menu.addAction(self.act_model)
        file_menu.addSeparator()
        file_menu.addAction(self.act_record)
        file_menu.addAction(self.act_shot)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)
        play = mb.addMenu("&Playback")
        assert play is not None
        play.addAction(self.act_pause)
        play.addAction(self.act_step)
        view = mb.addMenu("&View")
        assert view is not None
        for a in (self.act_overlay, self.act_mask, self.act_full):
            view.addAction(a)
        self._rebuild_recent()

    def _rebuild_recent(self) -> None:
        self.recent_menu.clear()
        items = self.settings.recent_sources()
        for spec in items:
            a = self.recent_menu.addAction(spec)
            assert a is not None
            a.triggered.connect(lambda _c=False, s=spec: self.open_source(s))
        if items:
            self.recent_menu.addSeparator()
            clear = self.recent_menu.addAction("Clear list")
            assert clear is not None
            clear.triggered.connect(self._clear_recent)
        self.recent_menu.setEnabled(bool(items))

    def _clear_recent(self) -> None:
        self.settings.clear_recent()
        self._rebuild_recent()

    # ------------------------------------------------------------------ sources and models
    def start(self, source: str | int, request: ModelRequest, *, paused: bool = False) -> None:
        """Play ``source`` with ``request``'s model (both open on the pipeline's threads)."""
        self.request = request
        self._open(source, lambda: self.pipeline.start(source, request.factory(), mode=self.mode,
                                                       loop=self.loop, paused=paused,
                                                       smoothing=self.smoothing_spin.value()))
        self.meta = None
        self.stats_panel.clear_model(f"loading {request.choice.describe()}...")
        self.statusBar().showMessage(f"loading {request.describe()}...")  # type: ignore[union-attr]

    def open_source(self, spec: str | int) -> None:
        """Play another source with the current model (GUI thread; opening happens on the capture thread)."""
        if not self.pipeline.running:
            self.start(spec, self.request or default_request(self.settings))
            return
        self._open(spec, lambda: self.pipeline.switch_source(spec))

    def _open(self, spec: str | int, do) -> None:  # type: ignore[no-untyped-def]
        if self.recorder.active:
            self.set_recording(False)
        self.source_spec = spec
        self._frame_count = None
        self._ended = False
        self.view.clear()
        self.seek_slider.setEnabled(False)
        self.banner.dismiss()
        self.error_status.clear()
        try:
            do()
        except RtsegError as exc:
            self.show_error(str(exc))
            return
        self.settings.add_recent_source(spec)
        self._rebuild_recent()
        self.setWindowTitle(f"rtseg - {spec}")

    def load_model(self, request: ModelRequest) -> None:
        """Switch to another model/backend; the source keeps playing. A load failure shows in the banner."""
        try:
            factory = request.factory()
            if self.pipeline.running:
                self.pipeline.switch_model(factory)
            elif self.source_spec is not None:
                self.pipeline.start(self.source_spec, factory, mode=self.mode, loop=self.loop)
        except RtsegError as exc:
            self.show_error(str(exc))
            return
        self.request = request
        self.meta = None
        shown = self.view.current_result
        if self.pipeline.paused and shown is not None and shown.frame.index is not None and self._frame_count:
            self._seek_to(shown.frame.index)  # paused: show the same frame through the new model
        self.stats_panel.clear_model(f"loading {request.choice.describe()}...")
        self.banner.dismiss()
        self.error_status.clear()
        self.settings.set_last_model(request.to_dict())
        self.settings.set_backend(request.backend)
        self.settings.set_precision(request.precision)
        self.statusBar().showMessage(f"loading {request.describe()}...")  # type: ignore[union-attr]

    def open_file_dialog(self) -> None:
        path = pick_video_file(self, str(Path(str(self.source_spec)).parent) if self.source_spec else "")
        if path:
            self.open_source(path)

    def open_source_dialog(self) -> None:
        dlg = SourceDialog(self)
        if dlg.exec():
            self.open_source(dlg.spec())

    def open_model_dialog(self) -> None:
        # the model picked last time comes first (the window starts with the bundled one)
        dlg = ModelPickerDialog(self, last_request(self.settings) or self.request)
        if dlg.exec():
            self.load_model(dlg.request())

    # ------------------------------------------------------------------ pipeline signals (queued)
    def _on_result(self, r: Result) -> None:
        self.results_received += 1
        if r.meta is not self.meta:
            self._new_model(r.meta, r.model_size)
        self.view.offer(r)
        if self.recorder.active:
            self.recorder.submit(r.frame, r.labels, r.meta.palette, self.view.style_for(r))
        if r.frame.index is not None and self._frame_count and not self.seek_slider.isSliderDown():
            self.seek_slider.blockSignals(True)
            self.seek_slider.setValue(r.frame.index)
            self.seek_slider.blockSignals(False)
            self.pos_label.setText(f"{r.frame.index + 1} / {self._frame_count}")

    def _new_model(self, meta: ModelMeta, model_size: tuple[int, int]) -> None:
        self.meta = meta
        self.legend.set_meta(meta)
        self.stats_panel.set_model(meta.model, model_size, self.pipeline.backend_info, meta.weights)
        if not meta.trained:
            self.banner.show_message(f"{meta.model} has RANDOM, UNTRAINED weights: the colours mean nothing. "
                                     "Choose a trained model with Ctrl+M.", kind="warning")

    def _on_error(self, exc: RtsegError) -> None:
        self.show_error(str(exc))

    def _on_status(self, text: str) -> None:
        self.statusBar().showMessage(text)  # type: ignore[union-attr]
        if text.startswith(("playing", "reconnected")):
            self._refresh_source_info()

    def _on_end(self) -> None:
        self.act_pause.setText("Play")
        self.statusBar().showMessage("end of the clip: press Space to play it again")  # type: ignore[union-attr]
        self._ended = True

    def show_error(self, text: str) -> None:
        """Show an error in the banner and the status bar (non-modal; the app stays usable)."""
        self.last_error = text
        self.banner.show_message(text, kind="error")
        self.error_status.setText(f"error: {text}")
        self.statusBar().showMessage(f"error: {text}", 15000)  # type: ignore[union-attr]

    def _refresh_source_info(self) -> None:
        src = self.pipeline.source
        n = src.frame_count if src is not None and not src.is_live else None
        self._frame_count = n
        self.seek_slider.setEnabled(bool(n))
        self.act_step.setEnabled(src is not None and not src.is_live)
        if n:
            self.seek_slider.setRange(0, n - 1)
        else:
            self.pos_label.setText("live" if src is not None and src.is_live else "-")

    # ------------------------------------------------------------------ controls
    def toggle_pause(self) -> None:
        if self._ended:
            self._ended = False
            self._seek_to(0)
            self.pipeline.resume()
        elif self.pipeline.paused:
            self.pipeline.resume()
        else:
            self.pipeline.pause()
        self.act_pause.setText("Play" if self.pipeline.paused else "Pause")

    def step(self) -> None:
        try:
            self.pipeline.step()
        except RtsegError as exc:
            self.show_error(str(exc))
            return
        self.act_pause.setText("Play")

    def _seek_to(self, index: int) -> None:
        if not self._frame_count:
            return
        try:
            self.pipeline.seek(int(index))
        except RtsegError as exc:
            self.show_error(str(exc))

    def set_smoothing(self, k: int) -> None:
        """Hysteresis frames (0 = off); applies from the next frame."""
        if self.smoothing_spin.value() != k:
            self.smoothing_spin.setValue(k)  # re-enters through valueChanged
            return
        try:
            self.pipeline.set_smoothing(int(k))
        except RtsegError as exc:
            self.show_error(str(exc))

    def set_opacity(self, value: float) -> None:
        value = min(max(float(value), 0.0), 1.0)
        self.opacity_slider.blockSignals(True)
        self.opacity_slider.setValue(round(value * 100))
        self.opacity_slider.blockSignals(False)
        self.opacity_label.setText(f"{value:.0%}")
        self.view.set_style(opacity=value)

    def set_full_screen(self, on: bool) -> None:
        self.menuBar().setVisible(not on)  # type: ignore[union-attr]
        self.side.setVisible(not on)
        if on:
            self.showFullScreen()
        else:
            self.showNormal()

    def _stamp(self) -> str:
        return time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"

    def set_recording(self, on: bool) -> None:
        """Start or stop recording the overlay (frame size, mp4v) to the output folder."""
        if on == self.recorder.active:
            return
        if on:
            src = self.pipeline.source
            path = self.output_dir / f"rtseg_{self._stamp()}.mp4"
            try:
                self.recorder.start(path, src.fps if src is not None else 25.0)
            except RtsegError as exc:
                self.act_record.setChecked(False)
                self.show_error(str(exc))
                return
            self.statusBar().showMessage(f"recording to {path}")  # type: ignore[union-attr]
        else:
            try:
                saved = self.recorder.stop()
            except RtsegError as exc:
                self.show_error(str(exc))
                saved = None
            if saved is not None:
                self.statusBar().showMessage(f"saved {saved} ({self.recorder.frames} frames)")  # type: ignore[union-attr]
        self.act_record.blockSignals(True)
        self.act_record.setChecked(self.recorder.active)
        self.act_record.blockSignals(False)
        self.act_record.setText("Stop recording" if self.recorder.active else "Record")

    def save_screenshot(self, path: str | Path | None = None) -> Path | None:
        """Save what is shown (at the frame's own size) as PNG; returns the path, or None with no frame yet."""
        r = self.view.current_result
        if r is None:
            self.show_error("nothing to save yet: wait for the first frame")
            return None
        style = self.view.style_for(r)
        image = compose(r.frame.image, r.labels, palette_lut(r.meta.palette, style.visible), style)
        ok, data = cv2.imencode(".png", image)
        if not ok:
            raise UserInputError("PNG encoding failed")
        target = Path(path) if path is not None else self.output_dir / f"rtseg_{self._stamp()}.png"
        try:
            atomic_write_bytes(target, data.tobytes())
        except OSError as exc:
            self.show_error(f"cannot write {target} ({exc.strerror}); check the folder is writable")
            return None
        self.statusBar().showMessage(f"saved {target}")  # type: ignore[union-attr]
        return target

    def _refresh_stats(self) -> None:
        self.stats_panel.update_snapshot(self.stats.snapshot())
        r = self.view.current_result
        if r is not None and r.meta is self.meta:
            self.legend.update_shares(class_shares(r.labels, r.meta.num_classes))

    # ------------------------------------------------------------------ closing
    def closeEvent(self, event: QCloseEvent | None) -> None:  # noqa: N802 - Qt override
        self._stats_timer.stop()
        if self.recorder.active:
            self.set_recording(False)
        self.stop_ok = self.pipeline.stop(timeout=1.0)
        self.settings.set_geometry(self.saveGeometry())
        self.settings.set_opacity(self.opacity_slider.value() / 100.0)
        self.settings.sync()
        super().closeEvent(event)


def default_request(settings: Settings) -> ModelRequest:
    """The bundled model (trained if shipped, else random STDC1 360x480) on the remembered backend.

    A remembered TensorRT backend needs an engine file, which the bundled model is not: it falls
    back to the automatic CPU choice then.
    """
    from rtseg.gui.model_picker import AUTO
    from rtseg.resolve.model import resolve_model

    backend, precision = settings.backend(AUTO), settings.precision(AUTO)
    if backend not in (AUTO, "onnxruntime", "openvino", "torch", "torch-cuda"):
        backend, precision = AUTO, AUTO
    no_args = SimpleNamespace(model=None, weights=None, num_classes=None, input_size=None, onnx=None, engine=None)
    return ModelRequest(resolve_model(no_args), backend, precision)


def last_request(settings: Settings) -> ModelRequest | None:
    """The model the user last picked in the model dialog (offered first when it opens again), or None."""
    last = settings.last_model()
    if last is None:
        return None
    try:
        return ModelRequest.from_dict(last)
    except (KeyError, TypeError, ValueError):
        return None  # an old or hand-edited entry
