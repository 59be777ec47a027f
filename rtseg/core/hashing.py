"""File hashing shared by checkpoints, ONNX caching and engine sidecars."""

from __future__ import annotations

import hashlib
import os


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks (weights files can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
