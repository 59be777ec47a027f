"""Class legend: colour swatch, name, visibility toggle and live pixel share per class.

Built from the model's ``ModelMeta`` (class names and palette travel with the
artifact; nothing is hard-coded). GUI thread only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PyQt6.QtCore import Qt, pyqtSignal
from PyQt6.QtGui import QColor, QIcon, QPixmap
from PyQt6.QtWidgets import QHBoxLayout, QPushButton, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from rtseg.core.meta import ModelMeta


def swatch(rgb: Sequence[int], size: int = 14) -> QIcon:
    pm = QPixmap(size, size)
    pm.fill(QColor(int(rgb[0]), int(rgb[1]), int(rgb[2])))
    return QIcon(pm)


class LegendWidget(QWidget):
    """``visibility_changed(tuple[bool, ...])`` fires when the user toggles a class."""

    visibility_changed = pyqtSignal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.meta: ModelMeta | None = None
        self.tree = QTreeWidget(self)
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Class", "Share"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys belong to the window's shortcuts
        self.tree.itemChanged.connect(self._item_changed)
        all_btn, none_btn = QPushButton("Show all"), QPushButton("Hide all")
        self._show_all = all_btn
        for b in (all_btn, none_btn):
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        all_btn.clicked.connect(lambda: self.set_all(True))
        none_btn.clicked.connect(lambda: self.set_all(False))
        buttons = QHBoxLayout()
        buttons.addWidget(all_btn)
        buttons.addWidget(none_btn)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.tree)
        lay.addLayout(buttons)
        self._updating = False

    def set_meta(self, meta: ModelMeta) -> None:
        """Rebuild the rows for a model's classes (keeps visibility when the classes are the same)."""
        if self.meta is not None and self.meta.class_names == meta.class_names and \
                self.meta.palette == meta.palette:
            self.meta = meta
            return
        self.meta = meta
        self._updating = True
        try:
            self.tree.clear()
            for i, (name, rgb) in enumerate(zip(meta.class_names, meta.palette, strict=True)):
                item = QTreeWidgetItem([name, ""])
                item.setIcon(0, swatch(rgb))
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(0, Qt.CheckState.Checked)
                item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setData(0, Qt.ItemDataRole.UserRole, i)
                self.tree.addTopLevelItem(item)
            self.tree.resizeColumnToContents(0)
            self._fit_height()
        finally:
            self._updating = False
        self.visibility_changed.emit(self.visible())

    def _fit_height(self) -> None:
        """As tall as its rows (no empty box under a short class list); it scrolls when space runs out."""
        n = self.tree.topLevelItemCount()
        row = self.tree.sizeHintForRow(0) if n else 18
        header = self.tree.header()
        head = header.sizeHint().height() if header is not None else 20
        # one spare row: the style's item spacing is not in sizeHintForRow on every platform
        tree_h = head + (n + 1) * max(row, 1) + 2 * self.tree.frameWidth()
        self.tree.setMaximumHeight(tree_h)
        lay = self.layout()
        spacing = lay.spacing() if lay is not None else 6
        self.setMaximumHeight(tree_h + spacing + self._show_all.sizeHint().height())

    def visible(self) -> tuple[bool, ...]:
        return tuple(self.tree.topLevelItem(i).checkState(0) == Qt.CheckState.Checked  # type: ignore[union-attr]
                     for i in range(self.tree.topLevelItemCount()))

    def set_visible(self, index: int, on: bool) -> None:
        item = self.tree.topLevelItem(index)
        if item is None:
            raise IndexError(f"no class {index} in the legend")
        item.setCheckState(0, Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def set_all(self, on: bool) -> None:
        self._updating = True
        try:
            for i in range(self.tree.topLevelItemCount()):
                self.set_visible(i, on)
        finally:
            self._updating = False
        self.visibility_changed.emit(self.visible())

    def update_shares(self, shares: np.ndarray) -> None:
        """Per-class pixel share (0..1) of the frame on screen."""
        for i in range(min(len(shares), self.tree.topLevelItemCount())):
            item = self.tree.topLevelItem(i)
            assert item is not None
            item.setText(1, f"{100.0 * float(shares[i]):.1f}%")

    def _item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if column == 0 and not self._updating:
            self.visibility_changed.emit(self.visible())
