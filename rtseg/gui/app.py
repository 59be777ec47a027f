"""GUI entry: QApplication setup and the window, started from ``rtseg`` / ``python -m rtseg``.

Heavy frameworks stay out of the GUI thread's start-up: the model (export,
torch, ONNX Runtime/OpenVINO compilation) is built by the pipeline's inference
thread, so the window appears at once and shows "loading...".
"""

from __future__ import annotations

import argparse
import sys

from PyQt6.QtWidgets import QApplication

from rtseg.gui.main_window import MainWindow, default_request
from rtseg.gui.model_picker import ModelRequest
from rtseg.gui.settings import Settings


def application(argv: list[str] | None = None) -> QApplication:
    """The process's QApplication (created once)."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
        app.setApplicationName("rtseg")
        app.setOrganizationName("rtseg")
    assert isinstance(app, QApplication)
    return app


def request_from_args(args: argparse.Namespace, settings: Settings) -> ModelRequest:
    """The model from the command line (same arguments as rtseg-run), else the bundled one.

    The backend and precision default to the remembered ones unless given
    (the last picked model itself is offered first in the model dialog).
    """
    from rtseg.gui.model_picker import AUTO
    from rtseg.resolve.model import resolve_model

    explicit_model = any(getattr(args, k, None) for k in ("model", "weights", "onnx", "engine", "input_size"))
    if getattr(args, "engine", None) and not args.backend_given:
        backend = "trt"  # an engine runs on trt: the remembered backend does not apply
    else:
        # "auto" (the default) is measured on the inference thread when the model loads.
        backend = args.backend if args.backend_given else settings.backend(AUTO)
    precision = args.precision if args.precision_given else settings.precision(args.precision or AUTO)
    if explicit_model:
        return ModelRequest(resolve_model(args), backend, precision, args.threads)
    base = default_request(settings)
    return ModelRequest(base.choice, backend, precision, args.threads or base.threads)


def run_gui(args: argparse.Namespace) -> int:
    """Open the window and play ``args.source`` at once; returns the exit code."""
    app = application()
    settings = Settings(args.settings)
    win = MainWindow(settings, output_dir=args.gui_output_dir)
    request = request_from_args(args, settings)
    win.show()
    win.start(args.source, request)
    return int(app.exec())
