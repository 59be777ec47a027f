"""Recording the overlay to MP4 (mp4v) on a writer thread, published atomically.

Threads: ``start``/``submit``/``stop`` are called from the GUI thread;
composing at frame size and encoding run on the recorder's own thread, so a
slow encoder never stalls painting. ``submit`` never blocks: when the writer
falls more than ``QUEUE`` frames behind, the frame is skipped and counted.

The file is written under a temporary name beside the target and renamed on
``stop``; a failed recording leaves nothing behind (``rtseg.core.atomic``).

The video keeps real time: when the model is slower than the source, frames
that never got a result are filled by repeating the last recorded one (a file's
frame-index gap, or a live source's capture-time gap, at most one second), so
the recording plays at the speed the scene happened. Seeks and pauses are
not filled.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rtseg.core.atomic import atomic_path
from rtseg.core.errors import UserInputError
from rtseg.core.frames import Frame
from rtseg.gui.compose import OverlayStyle, compose
from rtseg.pipeline.overlay import palette_lut

QUEUE = 16
_STOP = object()


def repeats(frame: Frame, prev: Frame | None, fps: float) -> int:
    """How many times to write ``frame`` so the video keeps real time (see the module docstring)."""
    if prev is None:
        return 1
    max_fill = max(1, round(fps))
    if frame.index is not None and prev.index is not None:
        gap = frame.index - prev.index  # frames of the file that got no result
    else:
        gap = round((frame.t_capture - prev.t_capture) * fps)
    return gap if 1 <= gap <= max_fill else 1  # a seek, loop or pause is not filled


class Recorder:
    """One recording at a time: ``start(path, fps)``, ``submit(...)`` per shown result, ``stop()``."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.frames = 0
        self.skipped = 0
        self.error: str | None = None
        self._q: queue.Queue[Any] = queue.Queue(maxsize=QUEUE)
        self._thread: threading.Thread | None = None
        self._ctx: contextlib.AbstractContextManager[Path] | None = None

    @property
    def active(self) -> bool:
        return self._thread is not None

    def start(self, path: str | Path, fps: float) -> None:
        """GUI thread. Raises ``UserInputError`` for a bad target."""
        if self.active:
            raise UserInputError("already recording; stop the recording first (R)")
        path = Path(path)
        if path.suffix.lower() != ".mp4":
            raise UserInputError(f"recordings are MP4 files; name it {path.with_suffix('.mp4').name}")
        ctx = atomic_path(path)
        try:
            tmp = ctx.__enter__()
        except OSError as exc:
            raise UserInputError(f"cannot write in {path.parent} ({exc.strerror}); choose another folder") from None
        self._ctx, self.path, self.frames, self.skipped, self.error = ctx, path, 0, 0, None
        self._q = queue.Queue(maxsize=QUEUE)
        self._thread = threading.Thread(target=self._run, args=(tmp, max(1.0, float(fps or 25.0))),
                                        name="rtseg-recorder", daemon=True)
        self._thread.start()

    def submit(self, frame: Frame, labels: np.ndarray, palette: Any, style: OverlayStyle) -> None:
        """GUI thread: queue one frame and its labels (read-only pipeline outputs; nothing is copied)."""
        if not self.active:
            return
        try:
            self._q.put_nowait((frame, labels, palette, style))
        except queue.Full:
            self.skipped += 1

    def stop(self) -> Path | None:
        """GUI thread: finish writing and publish the file; returns its path, or None when nothing was written."""
        if self._thread is None:
            return None
        self._q.put(_STOP)
        self._thread.join()
        self._thread = None
        ctx, self._ctx = self._ctx, None
        assert ctx is not None
        if self.error is not None or self.frames == 0:
            # removes the temporary file: nothing half-written stays behind
            ctx.__exit__(UserInputError, UserInputError(self.error or "no frames"), None)
            if self.error is not None:
                raise UserInputError(self.error)
            return None
        ctx.__exit__(None, None, None)
        return self.path

    def _run(self, tmp: Path, fps: float) -> None:
        """Recorder thread: compose at frame size and encode until ``_STOP``."""
        writer: cv2.VideoWriter | None = None
        lut_key: Any = None
        lut = None
        prev: Frame | None = None
        try:
            while True:
                item = self._q.get()
                if item is _STOP:
                    return
                if self.error is not None:
                    continue  # drain until stop
                frame, labels, palette, style = item
                key = (tuple(map(tuple, palette)), style.visible)
                if key != lut_key:
                    vis = style.visible if style.visible is not None and len(style.visible) == len(palette) else None
                    lut, lut_key = palette_lut(palette, vis), key
                assert lut is not None
                out = compose(frame.image, labels, lut, style)
                if writer is None:
                    h, w = out.shape[:2]
                    fourcc = cv2.VideoWriter_fourcc(*"mp4v")  # type: ignore[attr-defined]
                    writer = cv2.VideoWriter(str(tmp), fourcc, fps, (w, h))
                    if not writer.isOpened():
                        self.error = f"cannot write video {self.path}; check the folder is writable"
                        continue
                    size = (w, h)
                if (out.shape[1], out.shape[0]) != size:
                    out = cv2.resize(out, size)  # the source changed size mid-recording
                for _ in range(repeats(frame, prev, fps)):
                    writer.write(out)
                    self.frames += 1
                prev = frame
        finally:
            if writer is not None:
                writer.release()
