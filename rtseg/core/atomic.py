"""Atomic file writes: write to a temporary name beside the target, rename at the end.

An interrupted write (exception, Ctrl-C) leaves neither a partial target nor the
temporary file behind.

The temporary file is created with mode 0666 filtered by the process umask (the
kernel applies it, exactly as for a plain ``open``), so the result gets normal
permissions without ever reading or changing the umask: changing it, even for
an instant, would let a file another thread creates meanwhile come out
world-writable.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

#: Attempts at a fresh temporary name before giving up (each collision is a 2**-32 chance).
_NAME_ATTEMPTS = 100


def _create_temporary(folder: Path, prefix: str, suffix: str) -> Path:
    """Create a new empty file ``folder/prefix<random>suffix`` with mode 0666 & ~umask."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(_NAME_ATTEMPTS):
        path = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            fd = os.open(path, flags, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path
    raise FileExistsError(f"no free temporary name for {prefix}*{suffix} in {folder}")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``target`` on success.

    ``suffix`` defaults to the target's suffix, so tools that look at the
    extension (ONNX, OpenCV's VideoWriter) see the right one.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name keeps the target's extension last, because writers
    # such as cv2.VideoWriter and onnx.save pick the format from it.
    tmp = _create_temporary(target.parent, f".{target.name}.", target.suffix if suffix is None else suffix)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))
