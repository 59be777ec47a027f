"""Choosing the model and how it runs: a zoo model (+ weights), an exported ONNX file, or a TensorRT engine.

An ONNX file's or engine's metadata (model, classes, input size, precision) is
read and shown before anything is loaded, so the user sees what they picked;
the classes shown anywhere in the GUI always come from that metadata.

GUI thread only. The model itself is built later by ``ModelRequest.factory()``
on the pipeline's inference thread (export, torch import and backend
compilation never block the window); the request is resolved by the same rules
as every command (``rtseg.resolve``). The zoo's model names are listed by a
background thread (listing them imports torch), and appear in the combo box
when it is done.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from rtseg.core.errors import RtsegError, UserInputError
from rtseg.resolve.model import ModelChoice
from rtseg.runtime.base import Backend
from rtseg.runtime.factory import backend_kinds, canonical_kind

#: "auto": the artifact's own precision (an INT8 ONNX runs int8), else the backend's default.
AUTO = "auto"
PRECISIONS = (AUTO, "f32", "bf16", "fp16", "int8")


@dataclass(frozen=True)
class ModelRequest:
    """A model choice plus the backend that runs it."""

    choice: ModelChoice
    backend: str = AUTO  # a backend kind, or "auto": the measured fastest CPU path (rtseg.resolve.autotune)
    precision: str = AUTO  # any Precision spelling, or "auto"
    threads: int | None = None

    @property
    def requested_precision(self) -> str | None:
        return None if self.precision.strip().lower() in ("", AUTO) else self.precision

    def factory(self) -> Any:
        """A zero-argument backend factory for ``Pipeline``; exporting happens when it is called.

        Resolved here without touching files or frameworks (a bad backend or precision name,
        an engine on another backend, fail at once on the GUI thread); the export and the
        artifact checks run inside the factory, on the inference thread.
        """
        from rtseg.resolve.backend import resolve

        auto = self.backend.strip().lower() == AUTO
        res = resolve(self.choice, None if auto else self.backend, self.requested_precision, threads=self.threads,
                      eager=False)
        measured = auto and self.requested_precision is None

        def build() -> Backend:  # inference thread
            if measured:
                # The automatic choice times its candidates for up to ~10 s on first use (then it
                # is cached): that may block only this thread, never the GUI's.
                return resolve(self.choice, AUTO, AUTO, threads=self.threads).create()
            return res.create()

        return build

    def describe(self) -> str:
        return f"{self.choice.describe()} on {self.backend} ({self.precision})"

    def to_dict(self) -> dict[str, Any]:
        c = self.choice
        return {"model": c.model, "weights": str(c.weights) if c.weights else None, "num_classes": c.num_classes,
                "input_size": list(c.input_size) if c.input_size else None,
                "onnx": str(c.onnx) if c.onnx else None, "engine": str(c.engine) if c.engine else None,
                "refine": c.refine, "backend": self.backend, "precision": self.precision, "threads": self.threads}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelRequest:
        def path(key: str) -> Path | None:
            return Path(d[key]) if d.get(key) else None

        size = d.get("input_size")
        choice = ModelChoice(d.get("model"), path("weights"), d.get("num_classes"),
                             (int(size[0]), int(size[1])) if size else None, path("onnx"), path("engine"),
                             d.get("refine") or None)
        return cls(choice, str(d.get("backend") or AUTO), str(d.get("precision") or AUTO),
                   d.get("threads") or None)


def describe_onnx(path: str | Path) -> str:
    """One paragraph about an rtseg ONNX file's metadata (raises ``RtsegError`` for a foreign file)."""
    from rtseg.runtime.onnx_file import OnnxArtifact

    art = OnnxArtifact.open(path)
    n, h, w = art.input_shape
    m = art.meta
    refined = ", CRF-refined" if m.extra.get("refine") else ""
    return (f"{m.model}, {m.num_classes} classes ({', '.join(m.class_names[:6])}"
            f"{', ...' if m.num_classes > 6 else ''}), input {w}x{h}, batch {n}, {art.precision}{refined}, "
            f"weights: {m.weights or 'RANDOM (untrained)'}")


def describe_engine(path: str | Path) -> str:
    """The same for a TensorRT engine, from its JSON sidecar (TensorRT itself is not needed)."""
    from rtseg.core.meta import ModelMeta
    from rtseg.runtime.engine_file import read_sidecar

    side = read_sidecar(path)
    m = ModelMeta.from_dict(side["meta"])
    h, w = side["input"]["size"]
    plat = side.get("platform", {})
    return (f"{m.model}, {m.num_classes} classes, input {w}x{h}, {side.get('precision')}, "
            f"built for TensorRT {plat.get('trt_version', '?')} on {plat.get('gpu_name', plat.get('sm', '?'))}")


class _ModelList(QObject):
    """Lists the zoo's model names on a background thread (importing the zoo imports torch) and
    hands them to the GUI thread through a queued signal."""

    done = pyqtSignal(list, str)  # names, error ("" when listed)

    def start(self) -> None:
        threading.Thread(target=self._run, name="rtseg-model-list", daemon=True).start()

    def _run(self) -> None:  # background thread: only emits
        try:
            from rtseg.models import list_models

            names, err = list_models(), ""
        except Exception as exc:  # noqa: BLE001 - without torch the zoo tab still takes a typed name
            names, err = [], type(exc).__name__
        try:
            self.done.emit(names, err)
        except RuntimeError:  # the dialog (and this object) were deleted meanwhile
            pass


def _file_row(edit: QLineEdit, browse) -> QWidget:  # type: ignore[no-untyped-def]
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit, 1)
    b = QPushButton("Browse...")
    b.clicked.connect(browse)
    lay.addWidget(b)
    return w


class ModelPickerDialog(QDialog):
    """Tabs: Zoo model, ONNX file, TensorRT engine; backend, precision and threads below."""

    def __init__(self, parent: QWidget | None = None, current: ModelRequest | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Choose model")
        self.setMinimumWidth(520)
        self.tabs = QTabWidget()
        # zoo model
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("empty = random (untrained) weights")
        self.classes_spin = QSpinBox()
        self.classes_spin.setRange(0, 256)
        self.classes_spin.setSpecialValueText("from the weights (19 when random)")
        self.size_edit = QLineEdit()
        self.size_edit.setPlaceholderText("HxW, e.g. 360x480 (empty = the checkpoint's)")
        # The refined graph is exported with the model, so the toggle lives on the zoo tab
        # (an ONNX file or engine carries whatever refinement it was exported with).
        self.crf_check = QCheckBox("CRF refinement (mean-field, in the exported graph; costs time per frame)")
        zoo = QWidget()
        f = QFormLayout(zoo)
        f.addRow("model", self.model_combo)
        f.addRow("weights", _file_row(self.weights_edit, self._browse_weights))
        f.addRow("classes", self.classes_spin)
        f.addRow("input size", self.size_edit)
        f.addRow("refine", self.crf_check)
        self.tabs.addTab(zoo, "Zoo model")
        # ONNX
        self.onnx_edit = QLineEdit()
        self.onnx_info = QLabel("")
        self.onnx_info.setWordWrap(True)
        self.onnx_edit.editingFinished.connect(self._show_onnx)
        onnx = QWidget()
        f = QFormLayout(onnx)
        f.addRow("ONNX file", _file_row(self.onnx_edit, self._browse_onnx))
        f.addRow(self.onnx_info)
        self.tabs.addTab(onnx, "ONNX file")
        # engine
        self.engine_edit = QLineEdit()
        self.engine_info = QLabel("")
        self.engine_info.setWordWrap(True)
        self.engine_edit.editingFinished.connect(self._show_engine)
        eng = QWidget()
        f = QFormLayout(eng)
        f.addRow("engine", _file_row(self.engine_edit, self._browse_engine))
        f.addRow(self.engine_info)
        self.tabs.addTab(eng, "TensorRT engine")
        # how it runs
        self.backend_combo = QComboBox()
        self.backend_combo.addItems([AUTO, *backend_kinds()])
        self.precision_combo = QComboBox()
        self.precision_combo.setEditable(True)
        self.precision_combo.addItems(PRECISIONS)
        self.threads_spin = QSpinBox()
        self.threads_spin.setRange(0, 256)
        self.threads_spin.setSpecialValueText("backend default")
        run = QFormLayout()
        run.addRow("backend", self.backend_combo)
        run.addRow("precision", self.precision_combo)
        run.addRow("threads", self.threads_spin)
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c0392b")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        self.tabs.currentChanged.connect(self._tab_changed)
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs)
        lay.addLayout(run)
        lay.addWidget(self.error_label)
        lay.addWidget(buttons)
        self.models_ready = False  # True once the zoo's names are in the combo box
        self._fill_models()
        if current is not None:
            self.set_request(current)

    def _fill_models(self) -> None:
        # Never on the GUI thread: importing the zoo imports torch, which takes seconds.
        self._model_list = _ModelList(self)
        self._model_list.done.connect(self._models_listed)
        self._model_list.start()

    def _models_listed(self, names: list[str], error: str) -> None:  # GUI thread (queued)
        if error:
            self.error_label.setText(f"the model zoo is unavailable ({error}); pick an ONNX file or engine instead")
            return
        typed = self.model_combo.currentText()
        self.model_combo.addItems(names)
        if typed:
            self.model_combo.setCurrentText(typed)  # keep what the user or the last request set
        self.models_ready = True

    def set_request(self, req: ModelRequest) -> None:
        c = req.choice
        if c.engine is not None:
            self.tabs.setCurrentIndex(2)
            self.engine_edit.setText(str(c.engine))
            self._show_engine()
        elif c.onnx is not None:
            self.tabs.setCurrentIndex(1)
            self.onnx_edit.setText(str(c.onnx))
            self._show_onnx()
        else:
            self.tabs.setCurrentIndex(0)
            self.model_combo.setCurrentText(c.model or "")
            self.weights_edit.setText(str(c.weights) if c.weights else "")
            self.classes_spin.setValue(c.num_classes or 0)
            self.size_edit.setText(f"{c.input_size[0]}x{c.input_size[1]}" if c.input_size else "")
            self.crf_check.setChecked(bool(c.refine))
        self.backend_combo.setCurrentText(AUTO if req.backend.strip().lower() == AUTO
                                          else canonical_kind(req.backend))
        self.precision_combo.setCurrentText(req.precision)
        self.threads_spin.setValue(req.threads or 0)

    def _tab_changed(self, index: int) -> None:
        if index == 2:
            self.backend_combo.setCurrentText("trt")
        elif self.backend_combo.currentText() == "trt":
            self.backend_combo.setCurrentText("openvino")

    def _browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Weights", "", "Checkpoints (*.pt *.pth *.tar);;All files (*)")
        if path:
            self.weights_edit.setText(path)

    def _browse_onnx(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "ONNX model", "engines", "ONNX (*.onnx);;All files (*)")
        if path:
            self.onnx_edit.setText(path)
            self._show_onnx()

    def _browse_engine(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "TensorRT engine", "engines",
                                              "Engines (*.engine *.plan);;All files (*)")
        if path:
            self.engine_edit.setText(path)
            self._show_engine()

    def _show_onnx(self) -> None:
        self.onnx_info.setText(self._describe(describe_onnx, self.onnx_edit.text().strip()))

    def _show_engine(self) -> None:
        self.engine_info.setText(self._describe(describe_engine, self.engine_edit.text().strip()))

    @staticmethod
    def _describe(fn, path: str) -> str:  # type: ignore[no-untyped-def]
        if not path:
            return ""
        try:
            return fn(path)
        except RtsegError as exc:
            return f"cannot use it: {exc}"

    def request(self) -> ModelRequest:
        """The chosen request; ``RtsegError`` with what to fix when the form is incomplete."""
        text = self.backend_combo.currentText()
        backend = AUTO if text == AUTO else canonical_kind(text)
        precision = self.precision_combo.currentText().strip() or AUTO
        threads = self.threads_spin.value() or None
        tab = self.tabs.currentIndex()
        if tab == 1:
            text = self.onnx_edit.text().strip()
            if not text:
                raise UserInputError("pick an ONNX file first")
            describe_onnx(text)  # refuse a missing or foreign file now, not on the inference thread
            choice = ModelChoice(None, None, None, None, Path(text))
        elif tab == 2:
            text = self.engine_edit.text().strip()
            if not text:
                raise UserInputError("pick a TensorRT engine first")
            describe_engine(text)
            choice = ModelChoice(None, None, None, None, None, Path(text))
            backend = "trt"
        else:
            name = self.model_combo.currentText().strip() or None
            weights = self.weights_edit.text().strip() or None
            if name is None and weights is None:
                raise UserInputError("choose a zoo model name, a weights file, or both")
            if weights and not Path(weights).is_file():
                raise UserInputError(f"weights file {weights} does not exist")
            size = None
            text = self.size_edit.text().strip()
            if text:
                try:
                    h, w = (int(v) for v in text.lower().split("x"))
                except ValueError:
                    raise UserInputError(f"bad size {text!r}: write it as HEIGHTxWIDTH, e.g. 360x480") from None
                size = (h, w)
            choice = ModelChoice(name, Path(weights) if weights else None, self.classes_spin.value() or None,
                                 size, None, refine="crf" if self.crf_check.isChecked() else None)
        return replace(ModelRequest(choice), backend=backend, precision=precision, threads=threads)

    def _accept(self) -> None:
        try:
            self.request()
        except RtsegError as exc:
            self.error_label.setText(str(exc))
            return
        self.accept()
