"""GUI pieces on their own: the view's newest-wins painting, composition, recorder, settings, pickers."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("PyQt6.QtWidgets")

from rtseg.core.errors import RtsegError, UserInputError  # noqa: E402
from rtseg.core.frames import Frame, Result  # noqa: E402
from rtseg.gui.compose import LutCache, OverlayStyle, compose  # noqa: E402
from rtseg.gui.model_picker import ModelPickerDialog, ModelRequest, describe_onnx  # noqa: E402
from rtseg.gui.recorder import Recorder  # noqa: E402
from rtseg.gui.settings import MAX_RECENT, Settings  # noqa: E402
from rtseg.gui.source_dialog import SourceDialog  # noqa: E402
from rtseg.gui.video_view import VideoView, fit_rect  # noqa: E402
from rtseg.pipeline.stats import PipelineStats  # noqa: E402
from rtseg.resolve.model import ModelChoice  # noqa: E402
from rtseg.runtime.onnx_file import OnnxArtifact  # noqa: E402


@pytest.fixture(scope="module")
def meta(small_onnx: Path):
    return OnnxArtifact.open(small_onnx).meta


def make_result(meta, serial: int, value: int, size=(120, 160)) -> Result:
    """A result whose labels are all class ``value`` (model size 72x96) on a grey frame."""
    h, w = size
    frame = Frame(seq=serial, t_capture=time.perf_counter(), image=np.full((h, w, 3), 90, np.uint8), index=serial)
    labels = np.full((72, 96), value, np.uint8)
    now = time.perf_counter()
    return Result(frame=frame, labels=labels, model_size=(72, 96), meta=meta, serial=serial, t_start=now,
                  preprocess_s=0.0, infer_s=0.0, smoothing_s=0.0, t_result=now)


def test_view_paints_only_the_newest_result_and_counts_the_superseded(qtbot, meta) -> None:
    view = VideoView()
    qtbot.addWidget(view)
    view.stats = PipelineStats()
    view.resize(320, 240)
    view.show()
    qtbot.waitExposed(view)
    first = make_result(meta, 0, 1)
    with qtbot.waitSignal(view.displayed, timeout=2000) as sig:
        view.offer(first)
    assert sig.args[0] is first
    # three results arrive before the next refresh: only the last is painted
    stale = [make_result(meta, i, 2) for i in (1, 2)]
    newest = make_result(meta, 3, 3)
    for r in stale:
        view.offer(r)
    with qtbot.waitSignal(view.displayed, timeout=2000) as sig:
        view.offer(newest)
    assert sig.args[0] is newest
    snap = view.stats.snapshot()
    assert snap.displayed == 2
    assert snap.dropped_superseded == 2
    # painting waits for the refresh interval after the previous paint (no paint storm)
    assert view.refresh_interval() == pytest.approx(1 / 60, rel=0.5)
    img = view.rendered_image().convertToFormat(view.rendered_image().Format.Format_RGB888)
    centre = img.pixelColor(160, 120)
    expected = np.array(meta.palette[3]) * 0.5 + 90 * 0.5
    assert abs(centre.red() - expected[0]) <= 2 and abs(centre.blue() - expected[2]) <= 2


def test_fit_rect_keeps_the_aspect_ratio() -> None:
    from PyQt6.QtCore import QRect

    r = fit_rect(160, 120, QRect(0, 0, 400, 200))
    assert (r.width(), r.height(), r.x(), r.y()) == (267, 200, 66, 0)
    assert fit_rect(160, 120, QRect(0, 0, 0, 10)).isEmpty()


def test_compose_colourises_at_model_size_and_scales_the_mask(meta) -> None:
    frame = np.full((120, 160, 3), 50, np.uint8)
    labels = np.zeros((72, 96), np.uint8)
    labels[:, 48:] = 4
    lut = LutCache().get(meta.palette, None)
    mask = compose(frame, labels, lut, OverlayStyle(mask_only=True), (320, 240))
    assert mask.shape == (240, 320, 3)
    r, g, b = meta.palette[4]
    assert tuple(mask[10, 300]) == (b, g, r) and tuple(mask[10, 10]) == tuple(lut[0])
    hidden = compose(frame, labels, LutCache().get(meta.palette, (True,) * 4 + (False,) + (True,) * 6),
                     OverlayStyle(opacity=1.0, visible=(True,) * 4 + (False,) + (True,) * 6))
    assert (hidden[:, 100:] == 50).all()  # the hidden class shows the frame
    off = compose(frame, labels, lut, OverlayStyle(overlay=False), (80, 60))
    assert off.shape == (60, 80, 3) and (off == 50).all()


def test_recorder_publishes_atomically_and_refuses_bad_names(tmp_path: Path, meta) -> None:
    rec = Recorder()
    with pytest.raises(UserInputError, match="MP4"):
        rec.start(tmp_path / "x.avi", 25)
    target = tmp_path / "rec" / "clip.mp4"
    rec.start(target, 25)
    with pytest.raises(UserInputError, match="already recording"):
        rec.start(tmp_path / "other.mp4", 25)
    # file frames 0..3, then 6 (4 and 5 got no result: filled), then a seek back to 2 (not filled)
    for i in (0, 1, 2, 3, 6, 2):
        r = make_result(meta, i, 2)
        rec.submit(r.frame, r.labels, meta.palette, OverlayStyle())
    assert not target.exists()  # only the temporary file exists while recording
    assert rec.stop() == target
    cap = cv2.VideoCapture(str(target))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 + 3 + 1
    cap.release()
    assert [p.name for p in target.parent.iterdir()] == ["clip.mp4"]
    # a recording with no frames leaves nothing behind
    rec.start(tmp_path / "empty.mp4", 25)
    assert rec.stop() is None
    assert not list(tmp_path.glob("*empty.mp4*"))


def test_settings_round_trip_and_survive_broken_entries(tmp_path: Path) -> None:
    s = Settings(tmp_path / "s.ini")
    for i in range(MAX_RECENT + 3):
        s.add_recent_source(f"clip{i}.mp4")
    s.add_recent_source("clip5.mp4")
    items = s.recent_sources()
    assert items[0] == "clip5.mp4" and len(items) == MAX_RECENT and items.count("clip5.mp4") == 1
    s.set_opacity(0.25)
    s.qs.setValue("model/last", "{not json")
    s.sync()
    again = Settings(tmp_path / "s.ini")
    assert again.opacity() == 0.25
    assert again.last_model() is None
    again.qs.setValue("view/opacity", "lots")
    assert again.opacity() == 0.5


def test_model_request_round_trips_and_reads_metadata(qtbot, small_onnx: Path, tmp_path: Path) -> None:
    req = ModelRequest(ModelChoice(None, None, None, None, small_onnx), "onnxruntime", "f32", 2)
    assert ModelRequest.from_dict(req.to_dict()) == req
    text = describe_onnx(small_onnx)
    assert "stdc1" in text and "11 classes" in text and "96x72" in text and "untrained" in text
    dlg = ModelPickerDialog(None, req)
    qtbot.addWidget(dlg)
    assert dlg.tabs.currentIndex() == 1 and "stdc1" in dlg.onnx_info.text()
    assert dlg.request() == req
    bad = tmp_path / "bad.onnx"
    bad.write_text("nope")
    dlg.onnx_edit.setText(str(bad))
    with pytest.raises(RtsegError, match="bad.onnx"):
        dlg.request()
    dlg._accept()
    assert "bad.onnx" in dlg.error_label.text() and dlg.result() == 0
    # the zoo tab: names come from the registry (listed off the GUI thread); a missing weights file is refused
    dlg.tabs.setCurrentIndex(0)
    qtbot.waitUntil(lambda: dlg.models_ready, timeout=60_000)
    assert dlg.model_combo.findText("stdc1") >= 0
    dlg.model_combo.setCurrentText("stdc1")
    dlg.size_edit.setText("72x96")
    zoo = dlg.request()
    assert zoo.choice.model == "stdc1" and zoo.choice.input_size == (72, 96) and zoo.choice.weights is None
    assert zoo.choice.refine is None
    dlg.crf_check.setChecked(True)  # CRF refinement inside the exported graph
    refined = dlg.request()
    assert refined.choice.refine == "crf" and "crf refinement" in refined.describe()
    assert ModelRequest.from_dict(refined.to_dict()) == refined
    again = ModelPickerDialog(None, refined)
    qtbot.addWidget(again)
    assert again.crf_check.isChecked() and again.request() == refined
    dlg.weights_edit.setText(str(tmp_path / "none.pt"))
    with pytest.raises(UserInputError, match="does not exist"):
        dlg.request()
    with pytest.raises(UserInputError, match="unknown backend"):
        ModelRequest(req.choice, "cuda-magic").factory()


def test_source_dialog_specs(qtbot, tmp_path: Path) -> None:
    dlg = SourceDialog()
    qtbot.addWidget(dlg)
    with pytest.raises(UserInputError, match="enter a file"):
        dlg.spec()
    dlg.file_edit.setText(str(tmp_path / "a.mp4"))
    assert dlg.spec() == str(tmp_path / "a.mp4")
    dlg.tabs.setCurrentIndex(SourceDialog.TABS.index("Webcam"))
    dlg.camera_spin.setValue(2)
    assert dlg.spec() == 2
    dlg.tabs.setCurrentIndex(SourceDialog.TABS.index("Synthetic"))
    dlg.synthetic_edit.setText("320x240")
    assert dlg.spec() == "synthetic:320x240"
    dlg.tabs.setCurrentIndex(SourceDialog.TABS.index("URL"))
    dlg._accept()
    assert "enter a url" in dlg.error_label.text()


def test_recorder_fills_live_gaps_by_capture_time_up_to_a_second() -> None:
    from rtseg.gui.recorder import repeats

    img = np.zeros((2, 2, 3), np.uint8)
    a = Frame(seq=0, t_capture=10.0, image=img)
    assert repeats(a, None, 25.0) == 1
    assert repeats(Frame(seq=1, t_capture=10.04, image=img), a, 25.0) == 1
    assert repeats(Frame(seq=2, t_capture=10.2, image=img), a, 25.0) == 5
    assert repeats(Frame(seq=3, t_capture=15.0, image=img), a, 25.0) == 1  # a pause: not filled


def test_default_request_is_the_bundled_model_on_a_usable_backend(tmp_path: Path, small_onnx: Path) -> None:
    from rtseg.gui.main_window import default_request, last_request
    from rtseg.resolve.model import BUNDLED_MODEL, FALLBACK_MODEL

    s = Settings(tmp_path / "s.ini")
    assert last_request(s) is None
    s.set_backend("onnxruntime")
    s.set_last_model(ModelRequest(ModelChoice(None, None, None, None, small_onnx), "onnxruntime").to_dict())
    req = default_request(s)
    assert req.backend == "onnxruntime"
    if BUNDLED_MODEL.is_file():
        assert req.choice.weights == BUNDLED_MODEL
    else:
        assert (req.choice.model, req.choice.num_classes, req.choice.input_size) == FALLBACK_MODEL
    assert last_request(s).choice.onnx == small_onnx  # offered first in the model dialog
    s.set_backend("trt")  # needs an engine, which the bundled model is not
    assert default_request(s).backend == "auto"


def test_auto_is_measured_in_the_factory_not_on_the_gui_thread(small_onnx: Path) -> None:
    """The default request is ``auto``: building its factory (GUI thread) measures nothing; calling
    it (the inference thread) times the candidates, caches the decision and returns the chosen one."""
    import os

    from rtseg.resolve import autotune as at

    req = ModelRequest(ModelChoice(None, None, None, None, small_onnx))
    assert (req.backend, req.precision) == ("auto", "auto")
    t = time.perf_counter()
    build = req.factory()
    assert time.perf_counter() - t < 2.0  # no candidate was timed here
    cache = Path(os.environ["XDG_CACHE_HOME"]) / "rtseg" / "autotune.json"  # tests/conftest.py's own
    cache.unlink(missing_ok=True)
    with build() as be:
        chosen = be.info()
        assert be.infer(np.zeros((1, *be.input_shape[1:], 3), np.uint8)).shape == (1, *be.input_shape[1:])
    assert chosen.backend in at.installed_backends() and cache.is_file()


def test_the_model_dialog_never_imports_torch_on_the_gui_thread() -> None:
    """Listing the zoo imports torch (seconds): the dialog does it on a background thread."""
    import subprocess
    import sys

    code = """
import importlib.abc, sys, threading, time
seen = {}
class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch":
            seen.setdefault("thread", threading.current_thread().name)
        return None
sys.meta_path.insert(0, Spy())
from PyQt6.QtWidgets import QApplication
app = QApplication([])
from rtseg.gui.model_picker import ModelPickerDialog
dlg = ModelPickerDialog()
t0 = time.monotonic()
while not dlg.models_ready and time.monotonic() - t0 < 60:
    app.processEvents()
    time.sleep(0.01)
assert dlg.models_ready and dlg.model_combo.findText("stdc1") >= 0
assert seen.get("thread") == "rtseg-model-list", seen
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
