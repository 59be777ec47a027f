"""What the GUI remembers between runs, in QSettings.

Where it lives: the platform's usual place for organisation "rtseg",
application "rtseg", unless a path is given (tests and ``--settings``), or
the ``RTSEG_SETTINGS`` environment variable names an INI file. Tests must
always pass a temporary path so they never touch the user's settings.

GUI thread only (QSettings objects are not shared between threads here).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QByteArray, QSettings

#: How many recent sources the File menu lists.
MAX_RECENT = 10


class Settings:
    """Typed accessors over one QSettings store."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        path = path if path is not None else os.environ.get("RTSEG_SETTINGS") or None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.qs = QSettings(str(path), QSettings.Format.IniFormat)
        else:
            self.qs = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "rtseg", "rtseg")

    @property
    def location(self) -> str:
        return self.qs.fileName()

    def sync(self) -> None:
        self.qs.sync()

    # -- recent sources -----------------------------------------------------------------
    def recent_sources(self) -> list[str]:
        raw = self.qs.value("recent/sources", "[]")
        try:
            items = json.loads(raw) if isinstance(raw, str) else []
        except ValueError:
            items = []  # a hand-edited, broken entry: start over rather than fail
        return [str(s) for s in items if isinstance(s, str | int)][:MAX_RECENT]

    def add_recent_source(self, spec: str | int) -> list[str]:
        """Put ``spec`` first (once); returns the new list."""
        spec = str(spec)
        items = [spec] + [s for s in self.recent_sources() if s != spec]
        items = items[:MAX_RECENT]
        self.qs.setValue("recent/sources", json.dumps(items))
        return items

    def clear_recent(self) -> None:
        self.qs.setValue("recent/sources", "[]")

    # -- model ---------------------------------------------------------------------------
    def last_model(self) -> dict[str, Any] | None:
        """The last model request the user picked (see ``ModelRequest.to_dict``), or None."""
        raw = self.qs.value("model/last", "")
        if not isinstance(raw, str) or not raw:
            return None
        try:
            d = json.loads(raw)
        except ValueError:
            return None
        return d if isinstance(d, dict) else None

    def set_last_model(self, d: dict[str, Any]) -> None:
        self.qs.setValue("model/last", json.dumps(d))

    def backend(self, default: str = "openvino") -> str:
        return str(self.qs.value("model/backend", default))

    def set_backend(self, kind: str) -> None:
        self.qs.setValue("model/backend", kind)

    def precision(self, default: str = "f32") -> str:
        return str(self.qs.value("model/precision", default))

    def set_precision(self, precision: str) -> None:
        self.qs.setValue("model/precision", precision)

    # -- view ------------------------------------------------------------------------------
    def opacity(self, default: float = 0.5) -> float:
        try:
            v = float(self.qs.value("view/opacity", default))
        except (TypeError, ValueError):
            return default
        return min(max(v, 0.0), 1.0)

    def set_opacity(self, value: float) -> None:
        self.qs.setValue("view/opacity", float(value))

    def geometry(self) -> QByteArray | None:
        v = self.qs.value("window/geometry")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def set_geometry(self, data: QByteArray) -> None:
        self.qs.setValue("window/geometry", data)

    def window_state(self) -> QByteArray | None:
        v = self.qs.value("window/state")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def set_window_state(self, data: QByteArray) -> None:
        self.qs.setValue("window/state", data)

    def output_dir(self) -> Path:
        return Path(str(self.qs.value("output/dir", "out")))

    def set_output_dir(self, path: str | os.PathLike[str]) -> None:
        self.qs.setValue("output/dir", str(path))
