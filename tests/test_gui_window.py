"""The real main window, offscreen, on real clips and a real ONNX Runtime model (no mocks).

Every wait is ``qtbot.waitUntil``/``waitSignal`` on the event loop, never a sleep.
Settings live in a temporary INI file, never the user's.
"""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("PyQt6.QtWidgets")

from PyQt6.QtCore import Qt, QThread  # noqa: E402
from PyQt6.QtGui import QImage  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from rtseg.gui.main_window import MainWindow  # noqa: E402
from rtseg.gui.model_picker import ModelRequest  # noqa: E402
from rtseg.gui.settings import Settings  # noqa: E402
from rtseg.resolve.model import ModelChoice  # noqa: E402

WAIT_MS = 20000  # model load + first frame on 2 busy cores


def onnx_request(path: Path) -> ModelRequest:
    return ModelRequest(ModelChoice(None, None, None, None, Path(path)), "onnxruntime", "f32", 1)


def to_array(img: QImage) -> np.ndarray:
    """A QImage as an RGB uint8 array (copied)."""
    img = img.convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    ptr = img.constBits()
    ptr.setsize(img.sizeInBytes())
    return np.frombuffer(ptr, np.uint8).reshape(h, img.bytesPerLine())[:, : w * 3].reshape(h, w, 3).copy()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(tmp_path / "settings" / "rtseg.ini")


@pytest.fixture
def window(qtbot, settings: Settings, tmp_path: Path):
    win = MainWindow(settings, output_dir=tmp_path / "out")
    qtbot.addWidget(win)
    win.resize(900, 600)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()


def start_paused(qtbot, win: MainWindow, video: Path, onnx: Path) -> None:
    """Start on the clip's first frame, paused, and wait until it is painted."""
    win.start(str(video), onnx_request(onnx), paused=True)
    qtbot.waitUntil(lambda: win.view.paints > 0 and win.view.current_result is not None, timeout=WAIT_MS)


def test_frames_arrive_and_panels_fill(qtbot, window: MainWindow, small_video: Path, small_onnx: Path) -> None:
    window.start(str(small_video), onnx_request(small_onnx))
    qtbot.waitUntil(lambda: window.results_received >= 5 and window.view.paints >= 2, timeout=WAIT_MS)
    r = window.view.current_result
    assert r is not None and r.model_size == (72, 96)
    assert window.legend.tree.topLevelItemCount() == r.meta.num_classes
    assert [window.legend.tree.topLevelItem(i).text(0) for i in range(r.meta.num_classes)] == \
        list(r.meta.class_names)  # the legend comes from the artifact's metadata
    qtbot.waitUntil(lambda: window.stats_panel.text("inference FPS") not in ("-", "0.0"), timeout=WAIT_MS)
    assert window.stats_panel.text("model") == "stdc1"
    assert window.stats_panel.text("backend") == "onnxruntime"
    assert window.stats_panel.text("input size").startswith("96x72")
    assert window.stats.snapshot().displayed >= 2
    # random weights are announced, not hidden
    assert "UNTRAINED" in window.banner.text()
    # shares are live: they add up to the whole frame
    qtbot.waitUntil(lambda: window.legend.tree.topLevelItem(0).text(1).endswith("%"), timeout=WAIT_MS)
    total = sum(float(window.legend.tree.topLevelItem(i).text(1)[:-1]) for i in range(r.meta.num_classes))
    assert total == pytest.approx(100.0, abs=1.0)


def test_opacity_changes_the_rendered_overlay(qtbot, window: MainWindow, small_video: Path,
                                              small_onnx: Path) -> None:
    start_paused(qtbot, window, small_video, small_onnx)
    window.set_opacity(0.2)
    low = to_array(window.view.rendered_image())
    window.set_opacity(0.9)
    high = to_array(window.view.rendered_image())
    assert window.opacity_slider.value() == 90
    assert np.abs(low.astype(int) - high.astype(int)).mean() > 5
    window.set_opacity(0.0)
    zero = to_array(window.view.rendered_image())
    window.act_overlay.setChecked(False)
    off = to_array(window.view.rendered_image())
    assert not window.overlay_box.isChecked()
    assert np.abs(zero.astype(int) - off.astype(int)).max() <= 1  # opacity 0 == overlay off


def _colour_pixels(rgb_img: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int(np.all(rgb_img == np.array(rgb, np.uint8), axis=2).sum())


def test_legend_toggle_hides_a_class(qtbot, window: MainWindow, small_video: Path, small_onnx: Path) -> None:
    start_paused(qtbot, window, small_video, small_onnx)
    r = window.view.current_result
    counts = np.bincount(r.labels.ravel(), minlength=r.meta.num_classes)
    cls = int(np.argmax(counts))
    colour = r.meta.palette[cls]
    window.act_mask.setChecked(True)  # pure mask colours: exact pixel values
    before = _colour_pixels(to_array(window.view.rendered_image()), colour)
    assert before > 100
    with qtbot.waitSignal(window.legend.visibility_changed, timeout=2000):
        window.legend.set_visible(cls, False)
    assert window.view.style_.visible[cls] is False
    assert _colour_pixels(to_array(window.view.rendered_image()), colour) == 0
    # in the blended overlay the hidden class shows the plain frame
    window.act_mask.setChecked(False)
    window.set_opacity(1.0)
    assert _colour_pixels(to_array(window.view.rendered_image()), colour) == 0
    window.legend.set_all(True)
    assert _colour_pixels(to_array(window.view.rendered_image()), colour) > 100


def test_record_writes_a_playable_mp4(qtbot, window: MainWindow, small_video: Path, small_onnx: Path,
                                     tmp_path: Path) -> None:
    window.start(str(small_video), onnx_request(small_onnx))
    qtbot.waitUntil(lambda: window.results_received >= 1, timeout=WAIT_MS)
    window.act_record.trigger()  # the R action
    assert window.recorder.active
    qtbot.waitUntil(lambda: window.recorder.frames >= 5, timeout=WAIT_MS)
    window.act_record.trigger()
    assert not window.recorder.active
    out = tmp_path / "out"
    videos = list(out.glob("*.mp4"))
    assert len(videos) == 1 and not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp left
    cap = cv2.VideoCapture(str(videos[0]))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape == (120, 160, 3)  # recorded at the frame's size
        n += 1
    cap.release()
    assert n >= 5


def test_screenshot_writes_a_png_at_frame_size(qtbot, window: MainWindow, small_video: Path,
                                              small_onnx: Path, tmp_path: Path) -> None:
    start_paused(qtbot, window, small_video, small_onnx)
    window.act_shot.trigger()
    pngs = list((tmp_path / "out").glob("*.png"))
    assert len(pngs) == 1
    img = cv2.imread(str(pngs[0]))
    assert img is not None and img.shape == (120, 160, 3)
    r = window.view.current_result
    assert np.abs(img.astype(int) - r.frame.image.astype(int)).mean() > 3  # the overlay is in it


def test_step_and_seek_on_a_file(qtbot, window: MainWindow, small_video: Path, small_onnx: Path) -> None:
    start_paused(qtbot, window, small_video, small_onnx)
    qtbot.waitUntil(lambda: window.seek_slider.isEnabled(), timeout=WAIT_MS)
    assert window.seek_slider.maximum() == 39
    first = window.view.current_result.frame.index
    window.act_step.trigger()
    qtbot.waitUntil(lambda: window.view.current_result.frame.index == first + 1, timeout=WAIT_MS)
    window._seek_to(30)
    qtbot.waitUntil(lambda: window.view.current_result.frame.index == 30, timeout=WAIT_MS)
    assert window.seek_slider.value() == 30
    assert window.pos_label.text() == "31 / 40"


def test_keyboard_shortcuts(qtbot, window: MainWindow, small_video: Path, small_onnx: Path) -> None:
    window.start(str(small_video), onnx_request(small_onnx))
    qtbot.waitUntil(lambda: window.results_received >= 1, timeout=WAIT_MS)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.pipeline.paused
    qtbot.keyClick(window, Qt.Key.Key_O)
    assert window.view.style_.overlay is False
    qtbot.keyClick(window, Qt.Key.Key_O)
    qtbot.keyClick(window, Qt.Key.Key_M)
    assert window.view.style_.mask_only is True
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert not window.pipeline.paused


def test_close_during_inference_stops_within_a_second(qtbot, settings: Settings, tmp_path: Path,
                                                      small_video: Path, small_onnx: Path) -> None:
    win = MainWindow(settings, output_dir=tmp_path / "out")
    win.show()
    win.start(str(small_video), onnx_request(small_onnx))
    qtbot.waitUntil(lambda: win.results_received >= 2, timeout=WAIT_MS)
    assert any(t.name == "rtseg-inference" for t in threading.enumerate())
    import time

    t0 = time.perf_counter()
    win.close()
    assert time.perf_counter() - t0 < 1.5
    assert win.stop_ok is True
    assert not [t for t in threading.enumerate() if t.name in ("rtseg-capture", "rtseg-inference")]
    win.deleteLater()


def test_errors_show_in_the_window_and_the_app_recovers(qtbot, window: MainWindow, small_video: Path,
                                                        small_onnx: Path, tmp_path: Path) -> None:
    window.start(str(small_video), onnx_request(small_onnx))
    qtbot.waitUntil(lambda: window.results_received >= 1, timeout=WAIT_MS)
    # a source that does not exist
    missing = tmp_path / "missing.mp4"
    window.open_source(str(missing))
    qtbot.waitUntil(lambda: "missing.mp4" in window.last_error, timeout=WAIT_MS)
    assert "missing.mp4" in window.banner.text()
    assert "missing.mp4" in window.error_status.text()
    # another source plays again
    n = window.results_received
    window.open_source(str(small_video))
    qtbot.waitUntil(lambda: window.results_received > n + 2, timeout=WAIT_MS)
    assert window.banner.kind != "error"
    # a model file that is not a model
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an ONNX file")
    window.load_model(onnx_request(bad))
    qtbot.waitUntil(lambda: "bad.onnx" in window.last_error, timeout=WAIT_MS)
    assert "bad.onnx" in window.error_status.text()
    assert "\n" not in window.last_error
    # a camera that cannot be opened (none here: index 7)
    window.open_source(7)
    qtbot.waitUntil(lambda: "camera 7" in window.last_error, timeout=WAIT_MS)
    window.open_source(str(small_video))
    # picking a working model again restores inference
    n = window.results_received
    window.load_model(onnx_request(small_onnx))
    qtbot.waitUntil(lambda: window.results_received > n + 2, timeout=WAIT_MS)


def test_settings_are_remembered(qtbot, settings: Settings, tmp_path: Path, small_video: Path,
                                 small_onnx: Path) -> None:
    win = MainWindow(settings, output_dir=tmp_path / "out")
    qtbot.addWidget(win)
    win.show()
    win.start(str(small_video), onnx_request(small_onnx), paused=True)
    win.load_model(onnx_request(small_onnx))
    win.set_opacity(0.3)
    win.resize(760, 540)
    closed_size = win.size()
    win.close()
    again = Settings(settings.location)
    assert again.recent_sources()[0] == str(small_video)
    assert again.opacity() == pytest.approx(0.3)
    assert again.last_model()["onnx"] == str(small_onnx)
    assert again.backend() == "onnxruntime"
    win2 = MainWindow(again, output_dir=tmp_path / "out")
    qtbot.addWidget(win2)
    assert win2.opacity_slider.value() == 30
    assert win2.size() == closed_size  # the window comes back as it was
    actions = [a.text() for a in win2.recent_menu.actions()]
    assert str(small_video) in actions


def test_bridge_delivers_on_the_gui_thread(qtbot) -> None:
    from rtseg.gui.bridge import PipelineBridge

    bridge = PipelineBridge()
    seen: list[tuple[str, bool]] = []
    bridge.connect_slots(status=lambda text: seen.append((text, QThread.currentThread() is
                                                          QApplication.instance().thread())))
    t = threading.Thread(target=lambda: bridge.callbacks()["on_status"]("from a pipeline thread"))
    t.start()
    t.join()
    assert seen == []  # queued: nothing ran on the pipeline thread
    qtbot.waitUntil(lambda: len(seen) == 1, timeout=2000)
    assert seen == [("from a pipeline thread", True)]


def test_full_screen_and_model_switch_while_paused(qtbot, window: MainWindow, small_video: Path,
                                                   small_onnx: Path) -> None:
    start_paused(qtbot, window, small_video, small_onnx)
    qtbot.waitUntil(lambda: window.seek_slider.isEnabled(), timeout=WAIT_MS)
    shown = window.view.current_result
    window.load_model(onnx_request(small_onnx))
    # paused: the same frame comes back through the newly loaded model
    qtbot.waitUntil(lambda: window.view.current_result is not shown and
                    window.view.current_result.meta is not shown.meta, timeout=WAIT_MS)
    assert window.view.current_result.frame.index == shown.frame.index
    window.act_full.trigger()
    qtbot.waitUntil(lambda: window.isFullScreen(), timeout=5000)
    assert not window.side.isVisible() and not window.menuBar().isVisible()
    window.act_full.trigger()
    qtbot.waitUntil(lambda: not window.isFullScreen(), timeout=5000)
    assert window.side.isVisible()


def test_smoothing_reaches_the_pipeline_and_the_stats(qtbot, window: MainWindow, small_video: Path,
                                                      small_onnx: Path) -> None:
    window.set_smoothing(3)
    window.start(str(small_video), onnx_request(small_onnx))
    qtbot.waitUntil(lambda: window.view.current_result is not None and
                    window.view.current_result.smoothing_k == 3, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.stats_panel.text("flicker").endswith(("%", "%)")), timeout=WAIT_MS)
    snap = window.stats.snapshot()
    assert snap.flicker is not None and snap.flicker_raw is not None  # both figures reach the panel
    window.set_smoothing(0)
    qtbot.waitUntil(lambda: window.view.current_result.smoothing_k == 0, timeout=WAIT_MS)
    assert window.pipeline.smoothing == 0
