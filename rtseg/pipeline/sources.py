"""Video sources: webcam, video file, stream URL, image folder, synthetic street.

``open_source(spec)`` picks the kind from the spec:

=====================================  ===============================================
spec                                   source
=====================================  ===============================================
``0``, ``"0"``, ``"1"``...             webcam by index (``CameraSource``)
``"rtsp://..."``, ``"http(s)://..."``  network stream (``StreamSource``); also rtsps, rtmp
``"path/to/clip.mp4"``                 video file (``VideoFileSource``)
``"path/to/folder"``                   sorted image files played at ``fps`` (``ImageFolderSource``)
``"synthetic"``, ``"synthetic:WxH"``   deterministic moving street scene (``SyntheticSource``)
=====================================  ===============================================

Threading: a source is owned by one thread at a time. In the live pipeline the
capture thread opens it (``open_source`` may take seconds for a camera or a
stream), reads, seeks and closes it; OpenCV's ``VideoCapture`` is not safe to
share between threads.
"""

from __future__ import annotations

import abc
import os
import re
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from rtseg.core.errors import SourceError
from rtseg.core.frames import IMAGE_EXTENSIONS, Frame

#: URL schemes handed to FFmpeg.
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
#: Used when a container or camera reports no frame rate.
DEFAULT_FPS = 30.0
#: How long FFmpeg may try to open or read a stream before giving up (ms).
STREAM_TIMEOUT_MS = 5000


class Source(abc.ABC):
    """A sequence of BGR frames.

    ``read()`` returns the next ``Frame`` or None at the end (a file that ended,
    a live source that stopped delivering). ``seq`` counts frames this source
    delivered; ``index`` is the position in a file or folder (None when live).
    All methods are called from the thread that owns the source.
    """

    kind: str = ""

    def __init__(self) -> None:
        self._seq = 0
        self._closed = False

    # -- what every source says about itself ---------------------------------
    @property
    @abc.abstractmethod
    def fps(self) -> float:
        """Nominal frames per second (``DEFAULT_FPS`` when the source does not say)."""

    @property
    def frame_count(self) -> int | None:
        """Number of frames, or None when unknown or live."""
        return None

    @property
    def is_live(self) -> bool:
        """True for cameras and streams: frames come at the sender's pace and cannot be sought."""
        return False

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for the status bar and reports, e.g. ``video clip.mp4 (320x240, 25.0 fps, 250 frames)``."""

    # -- reading -------------------------------------------------------------------
    def read(self) -> Frame | None:
        """The next frame, or None at the end."""
        if self._closed:
            raise SourceError(f"{self.describe()} was read after close(); open it again")
        got = self._read()
        if got is None:
            return None
        image, index, decode_s, t_capture = got
        frame = Frame(seq=self._seq, t_capture=t_capture, image=image, index=index, decode_s=decode_s)
        self._seq += 1
        return frame

    @abc.abstractmethod
    def _read(self) -> tuple[np.ndarray, int | None, float, float] | None:
        """(image, index, decode seconds, t_capture) or None at the end."""

    def seek(self, index: int) -> None:
        """Make the next ``read()`` return frame ``index`` (files, folders, synthetic only)."""
        raise SourceError(f"{self.describe()} is live: seeking works only on video files and image folders")

    def reopen(self) -> None:
        """Reconnect a live source after it stopped delivering; raises SourceError if it cannot."""
        raise SourceError(f"{self.describe()} cannot be reopened")

    def _check_seek(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise SourceError(f"seek needs a frame number, got {index!r}")
        index = int(index)
        n = self.frame_count
        if index < 0 or (n is not None and index >= n):
            last = "" if n is None else f"..{n - 1}"
            raise SourceError(f"frame {index} is outside {self.describe()}; choose a frame in 0{last}")
        return index

    # -- life cycle ---------------------------------------------------------------
    def close(self) -> None:
        """Release the camera, file or connection. Idempotent."""
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing
        pass

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Source:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        # a forgotten source must not keep a camera busy for other programs
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown, nothing to report to
            pass


class _CaptureSource(Source):
    """Shared code of the sources read through ``cv2.VideoCapture``."""

    def __init__(self) -> None:
        super().__init__()
        self._cap: cv2.VideoCapture | None = None
        # The first frame is read while opening, to tell "opens but delivers
        # nothing" apart from a working source; it is handed out by the first read().
        self._pending: tuple[np.ndarray, int | None, float, float] | None = None

    def _grab(self, index: int | None) -> tuple[np.ndarray, int | None, float, float] | None:
        """Read one frame, separating the wait for it (``grab``) from decoding (``retrieve``)."""
        cap = self._cap
        if cap is None:
            return None
        t0 = time.perf_counter()
        if not cap.grab():
            return None
        t1 = time.perf_counter()
        ok, image = cap.retrieve()
        t2 = time.perf_counter()
        if not ok or image is None:
            return None
        image = _as_bgr(image)
        # A live source's grab() mostly waits for the sensor or the network, which
        # is not decoding; a file's grab() is where FFmpeg demuxes and decodes.
        decode_s = (t2 - t1) if self.is_live else (t2 - t0)
        return image, index, decode_s, t2

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._pending = None

    def _cap_fps(self) -> float:
        fps = self._cap.get(cv2.CAP_PROP_FPS) if self._cap is not None else 0.0
        return float(fps) if fps and np.isfinite(fps) and 0.5 < fps < 1000 else DEFAULT_FPS


class _LiveCaptureSource(_CaptureSource):
    """A camera or network stream: opened (and re-opened after a drop) by ``_connect``.

    Subclasses say how to connect, what to call themselves and what to tell the
    user when the source opens but delivers nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self._size = (0, 0)
        self._fps = DEFAULT_FPS

    @abc.abstractmethod
    def _connect(self) -> cv2.VideoCapture:
        """An opened capture, or ``SourceError`` saying what to check."""

    @abc.abstractmethod
    def _label(self) -> str:
        """How ``describe`` names the source, e.g. ``camera 0``."""

    @abc.abstractmethod
    def _no_frames_error(self) -> SourceError:
        """The error for "opens but delivers no frames"."""

    def _open(self) -> None:
        self._cap = self._connect()
        first = self._grab(None)
        if first is None:
            self._close()
            raise self._no_frames_error()
        self._pending = first
        self._size = (first[0].shape[1], first[0].shape[0])
        # cached: other threads call fps/describe(), and a VideoCapture must not be shared
        self._fps = self._cap_fps()

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def is_live(self) -> bool:
        return True

    def describe(self) -> str:
        return f"{self._label()} ({self._size[0]}x{self._size[1]}, {self.fps:.1f} fps)"

    def _read(self) -> tuple[np.ndarray, int | None, float, float] | None:
        if self._pending is not None:
            got, self._pending = self._pending, None
            return got
        return self._grab(None)

    def reopen(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
        self._open()


class CameraSource(_LiveCaptureSource):
    """A webcam by OpenCV index."""

    kind = "camera"

    def __init__(self, index: int, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None) -> None:
        super().__init__()
        self.index = int(index)
        self._want = (width, height, fps)
        self._open()

    def _connect(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"camera {self.index} could not be opened: is another program using it? "
                              "try another index")
        width, height, fps = self._want
        if width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        # Keep the driver's queue short: frames waiting in it are latency, and the
        # pipeline wants the newest frame rather than every frame.
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    def _label(self) -> str:
        return f"camera {self.index}"

    def _no_frames_error(self) -> SourceError:
        return SourceError(f"camera {self.index} opened but delivers no frames: is another program "
                           "using it? try another index")


class StreamSource(_LiveCaptureSource):
    """A network stream (RTSP, RTMP, HTTP/HTTPS) decoded by FFmpeg."""

    kind = "stream"

    def __init__(self, url: str, *, timeout_ms: int = STREAM_TIMEOUT_MS) -> None:
        super().__init__()
        self.url = url
        self.timeout_ms = int(timeout_ms)
        self._open()

    def _connect(self) -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms]
        cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"stream {redact_url(self.url)} could not be opened: check the address, "
                              "that the server is running and that this machine can reach it")
        return cap

    def _label(self) -> str:
        return f"stream {redact_url(self.url)}"

    def _no_frames_error(self) -> SourceError:
        return SourceError(f"stream {redact_url(self.url)} opened but sent no frames within "
                           f"{self.timeout_ms / 1000:.0f} s: check that it is a video stream")


class VideoFileSource(_CaptureSource):
    """A video file decoded by FFmpeg; seekable."""

    kind = "video"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.exists():
            raise SourceError(f"video file {self.path} not found; check the path")
        if not self.path.is_file():
            raise SourceError(f"{self.path} is not a file; give a video file or an image folder")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.path} is not a video OpenCV can read; convert it to mp4 (H.264 or mp4v)")
        self._cap = cap
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._count = n if n > 0 else None
        self._next = 0
        first = self._grab(0)
        if first is None:
            self._close()
            raise SourceError(f"{self.path} opens as a video but no frame can be decoded; "
                              "the file may be damaged or use an unsupported codec")
        self._pending = first
        self._next = 1
        self._size = (first[0].shape[1], first[0].shape[0])
        self._fps = self._cap_fps()

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def frame_count(self) -> int | None:
        return self._count

    def describe(self) -> str:
        n = f", {self._count} frames" if self._count else ""
        return f"video {self.path.name} ({self._size[0]}x{self._size[1]}, {self._fps:.1f} fps{n})"

    def _read(self) -> tuple[np.ndarray, int | None, float, float] | None:
        if self._pending is not None:
            image, index, decode_s, _ = self._pending
            self._pending = None
            # A file frame is "captured" when the pipeline reads it, not when the
            # constructor decoded it for validation; a live source's pending frame
            # keeps its real (older) stamp so latency stays honest.
            return image, index, decode_s, time.perf_counter()
        got = self._grab(self._next)
        if got is not None:
            self._next += 1
        return got

    def seek(self, index: int) -> None:
        index = self._check_seek(index)
        if self._cap is None:
            raise SourceError(f"{self.describe()} is closed; open it again")
        self._pending = None
        # FFmpeg seeks to the keyframe before ``index`` and decodes forward to it,
        # so the next frame read is exactly ``index``.
        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, index):
            raise SourceError(f"{self.describe()} cannot seek to frame {index}")
        self._next = index


class ImageFolderSource(Source):
    """The image files of one folder, in natural order (``2.png`` before ``10.png``), at ``fps``."""

    kind = "folder"

    def __init__(self, path: str | os.PathLike[str], *, fps: float = 10.0) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.is_dir():
            raise SourceError(f"image folder {self.path} not found; check the path")
        if not fps or not 0 < float(fps) <= 1000:
            raise SourceError(f"image folder fps must be in (0, 1000], got {fps!r}")
        self._fps = float(fps)
        self.files = sorted(
            (p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=_natural_key,
        )
        if not self.files:
            exts = ", ".join(sorted(IMAGE_EXTENSIONS))
            raise SourceError(f"image folder {self.path} contains no images ({exts}); "
                              "put frames there or choose another folder")
        self._next = 0

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def frame_count(self) -> int:
        return len(self.files)

    def describe(self) -> str:
        return f"folder {self.path.name} ({len(self.files)} images at {self._fps:.1f} fps)"

    def _read(self) -> tuple[np.ndarray, int | None, float, float] | None:
        if self._next >= len(self.files):
            return None
        index = self._next
        t0 = time.perf_counter()
        image = cv2.imread(str(self.files[index]), cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        if image is None:
            raise SourceError(f"{self.files[index]} is not a readable image; remove it from the folder")
        self._next += 1
        return image, index, t1 - t0, t1

    def seek(self, index: int) -> None:
        self._next = self._check_seek(index)


class SyntheticSource(Source):
    """A deterministic street scene with moving cars (``rtseg.core.synthetic``).

    Frame ``i`` is always the same image, so tests and benchmarks can run
    without any file. ``frames=None`` plays forever.

    Rendering costs ~4 ms at 160x128 but ~70 ms at 1024x512 on one CPU core,
    which would cap a benchmark at ~15 fps. ``period=P`` makes the scene repeat
    every P frames and keeps those P images after the first render (P * H * W * 3
    bytes), so afterwards a frame costs nothing; benchmarks should use it.
    """

    kind = "synthetic"

    def __init__(self, *, width: int = 160, height: int = 128, fps: float = 30.0,
                 frames: int | None = None, seed: int = 0, period: int | None = None) -> None:
        super().__init__()
        if width < 16 or height < 16 or width > 8192 or height > 8192:
            raise SourceError(f"synthetic frames must be 16..8192 pixels a side, got {width}x{height}")
        if not 0 < float(fps) <= 1000:
            raise SourceError(f"synthetic fps must be in (0, 1000], got {fps!r}")
        if frames is not None and frames < 1:
            raise SourceError(f"synthetic frame count must be >= 1, got {frames}")
        self.width, self.height, self._fps = int(width), int(height), float(fps)
        self._frames = frames
        if period is not None and not 1 <= period <= 10_000:
            raise SourceError(f"synthetic period must be 1..10000 frames, got {period}")
        self.seed = int(seed)
        self.period = period
        self._cache: dict[int, np.ndarray] = {}
        self._next = 0

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def frame_count(self) -> int | None:
        return self._frames

    def describe(self) -> str:
        n = f", {self._frames} frames" if self._frames else ""
        rep = f", repeats every {self.period}" if self.period else ""
        return f"synthetic street ({self.width}x{self.height}, {self._fps:.1f} fps{n}{rep})"

    def _read(self) -> tuple[np.ndarray, int | None, float, float] | None:
        from rtseg.core.synthetic import street_frame

        if self._frames is not None and self._next >= self._frames:
            return None
        index = self._next
        t0 = time.perf_counter()
        if self.period is None:
            image = street_frame(self.height, self.width, t=index, seed=self.seed)
        else:
            # the same array is handed out again: frames are read-only downstream
            t = index % self.period
            if t not in self._cache:
                self._cache[t] = street_frame(self.height, self.width, t=t, seed=self.seed)
            image = self._cache[t]
        t1 = time.perf_counter()
        self._next += 1
        return image, index, t1 - t0, t1

    def seek(self, index: int) -> None:
        self._next = self._check_seek(index)


# -- choosing a source -----------------------------------------------------------------

def open_source(spec: str | int | os.PathLike[str], **opts: Any) -> Source:
    """Open the source ``spec`` names (see the module docstring); raises ``SourceError``.

    ``opts`` go to the chosen source: ``fps`` (folder, synthetic; camera: a
    request), ``width``/``height`` (camera request; synthetic size), ``frames``
    ``seed`` and ``period`` (synthetic), ``timeout_ms`` (stream). Options that do not apply
    to the chosen kind are ignored, so one option set can serve any spec.
    """
    if isinstance(spec, bool):
        raise SourceError(f"not a video source: {spec!r}; give a camera index, file, folder or URL")
    if isinstance(spec, (int, np.integer)):
        return _camera(int(spec), opts)
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str) or not spec.strip():
        raise SourceError(f"not a video source: {spec!r}; give a camera index, file, folder or URL")
    text = spec.strip()
    if text.isdigit():
        return _camera(int(text), opts)
    if text == "synthetic" or text.startswith("synthetic:"):
        return _synthetic(text, opts)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        scheme = text.split("://", 1)[0].lower()
        if scheme == "file":
            text = urlsplit(text).path
        elif scheme in STREAM_SCHEMES:
            return StreamSource(text, **_pick(opts, "timeout_ms"))
        else:
            raise SourceError(f"unsupported URL scheme {scheme}:// in {redact_url(text)}; "
                              f"use one of {', '.join(s + '://' for s in STREAM_SCHEMES)}")
    path = Path(text).expanduser()
    if path.is_dir():
        return ImageFolderSource(path, **_pick(opts, "fps"))
    if not path.exists():
        raise SourceError(f"video file {path} not found; check the path (or give a camera index, "
                          "an image folder, a stream URL or 'synthetic')")
    return VideoFileSource(path)


def _camera(index: int, opts: dict[str, Any]) -> CameraSource:
    if index < 0:
        raise SourceError(f"camera index must be 0 or more, got {index}")
    return CameraSource(index, **_pick(opts, "width", "height", "fps"))


def _synthetic(text: str, opts: dict[str, Any]) -> SyntheticSource:
    kw = _pick(opts, "width", "height", "fps", "frames", "seed", "period")
    if ":" in text:
        m = re.fullmatch(r"synthetic:(\d+)x(\d+)", text)
        if not m:
            raise SourceError(f"bad synthetic spec {text!r}; write 'synthetic' or 'synthetic:WIDTHxHEIGHT'")
        kw.setdefault("width", int(m.group(1)))
        kw.setdefault("height", int(m.group(2)))
    return SyntheticSource(**kw)


def _pick(opts: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: opts[k] for k in names if opts.get(k) is not None}


def redact_url(url: str) -> str:
    """The URL without a password, for messages and logs."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _natural_key(p: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Some cameras deliver grey or BGRA frames; the pipeline takes BGR only."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
