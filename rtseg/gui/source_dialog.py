"""Choosing a video source: file, image folder, webcam index, stream URL or the synthetic scene.

GUI thread only. The dialog returns a spec string/int that ``open_source``
understands; the source itself is opened later, on the pipeline's capture
thread, so a slow camera or stream never freezes the window.
"""

from __future__ import annotations

from PyQt6.QtWidgets import (
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

from rtseg.core.errors import UserInputError

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mkv *.mov *.webm *.m4v *.mpg *.mpeg);;All files (*)"


def pick_video_file(parent: QWidget | None, start_dir: str = "") -> str | None:
    """The standard open-file dialog for a video; None when cancelled."""
    path, _ = QFileDialog.getOpenFileName(parent, "Open video", start_dir, VIDEO_FILTER)
    return path or None


def _path_row(edit: QLineEdit, browse) -> QWidget:  # type: ignore[no-untyped-def]
    w = QWidget()
    lay = QHBoxLayout(w)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(edit, 1)
    b = QPushButton("Browse...")
    b.clicked.connect(browse)
    lay.addWidget(b)
    return w


class SourceDialog(QDialog):
    """Tabs: File, Folder, Webcam, URL, Synthetic. ``spec()`` is valid after ``exec()`` accepted."""

    TABS = ("File", "Folder", "Webcam", "URL", "Synthetic")

    def __init__(self, parent: QWidget | None = None, start_dir: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Open source")
        self.start_dir = start_dir
        self.tabs = QTabWidget()
        self.file_edit = QLineEdit()
        self.folder_edit = QLineEdit()
        self.camera_spin = QSpinBox()
        self.camera_spin.setRange(0, 63)
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText("rtsp://host:554/stream or http://host/video.mjpg")
        self.synthetic_edit = QLineEdit("synthetic:1280x720")
        pages = (
            ("video file", _path_row(self.file_edit, self._browse_file)),
            ("folder of images (played in name order)", _path_row(self.folder_edit, self._browse_folder)),
            ("camera index (0 = first webcam)", self.camera_spin),
            ("stream URL", self.url_edit),
            ("synthetic street scene, WxH", self.synthetic_edit),
        )
        for name, (label, widget) in zip(self.TABS, pages, strict=True):
            page = QWidget()
            form = QFormLayout(page)
            form.addRow(QLabel(label))
            form.addRow(widget)
            self.tabs.addTab(page, name)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        self.error_label = QLabel("")
        self.error_label.setStyleSheet("color: #c0392b")
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs)
        lay.addWidget(self.error_label)
        lay.addWidget(buttons)

    def _browse_file(self) -> None:
        path = pick_video_file(self, self.start_dir)
        if path:
            self.file_edit.setText(path)

    def _browse_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open image folder", self.start_dir)
        if path:
            self.folder_edit.setText(path)

    def spec(self) -> str | int:
        """The chosen source as ``open_source`` takes it; ``UserInputError`` when the tab is empty."""
        tab = self.TABS[self.tabs.currentIndex()]
        if tab == "Webcam":
            return int(self.camera_spin.value())
        text = {"File": self.file_edit, "Folder": self.folder_edit, "URL": self.url_edit,
                "Synthetic": self.synthetic_edit}[tab].text().strip()
        if not text:
            raise UserInputError(f"enter a {tab.lower()} first")
        if tab == "Synthetic" and not text.startswith("synthetic"):
            text = "synthetic:" + text
        return text

    def _accept(self) -> None:
        try:
            self.spec()
        except UserInputError as exc:
            self.error_label.setText(str(exc))
            return
        self.accept()
