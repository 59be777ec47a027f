"""Atomic file writes: write to a temporary name beside the target, rename at the end.

An interrupted write (exception, Ctrl-C) leaves neither a partial target nor the
temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=target.suffix if suffix is None else suffix,
        dir=target.parent,
    )
    os.close(fd)
    real_tmp = Path(tmp_name)
    try:
        yield real_tmp
        # mkstemp creates the file 0600; give the result normal permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(real_tmp, 0o666 & ~umask)
        os.replace(real_tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            real_tmp.unlink()
        raise


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    atomic_write_bytes(target, text.encode("utf-8"))
