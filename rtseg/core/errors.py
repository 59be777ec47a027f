"""Errors a user can act on.

Every ``RtsegError`` message is one line that says what went wrong and what to
do about it. CLIs print it and exit non-zero; the GUI shows it in the window.
Any other exception is a bug and may show a traceback.
"""

from __future__ import annotations


class RtsegError(Exception):
    """Base class: an error whose message tells the user what to do."""

    exit_code = 2


class UserInputError(RtsegError):
    """A bad argument: unknown model name, impossible size, missing file..."""


class CheckpointError(RtsegError):
    """A weights file that cannot be loaded into the requested model."""


class ExportError(RtsegError):
    """Export or verification of a deploy artifact failed."""


class BackendError(RtsegError):
    """A runtime backend could not be created or run."""


class SourceError(RtsegError):
    """A video source could not be opened or read."""


class ArtifactError(RtsegError):
    """An artifact's metadata (checkpoint, ONNX, engine sidecar) is damaged, foreign or from a newer rtseg."""
