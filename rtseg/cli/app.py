"""``rtseg`` / ``python -m rtseg``: the desktop GUI, or the headless job where there is no display.

    rtseg                                    # the bundled sample with the bundled model
    rtseg clip.mp4 --onnx engines/m.onnx --backend onnxruntime
    rtseg 0 --weights my_model.pt            # webcam 0 with a trained rtseg checkpoint

Takes the same source and model arguments as ``rtseg-run``. On Linux with no
``DISPLAY``/``WAYLAND_DISPLAY`` (and no ``QT_QPA_PLATFORM`` such as
``offscreen``), or without PyQt6, it runs the ``rtseg-run`` code path instead
and writes the overlay video (``--output``), so ``make run`` works everywhere.
Qt is imported only when the GUI opens.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rtseg.cli.common import run_main
from rtseg.cli.run import build_parser

#: QT_QPA_PLATFORM values that need a windowing system the environment variables announce.
_WINDOWED_PLATFORMS = ("xcb", "wayland", "wayland-egl")


def has_display(environ: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a Qt window can open: a display server on Linux, or a Qt platform chosen explicitly."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    qpa = env.get("QT_QPA_PLATFORM", "").split(":")[0].strip()
    if qpa and qpa not in _WINDOWED_PLATFORMS:
        return True  # offscreen, vnc, eglfs, ...: Qt needs no display server
    if platform.startswith("linux"):
        return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    return True  # Windows and macOS always have a window server


def _qt_available() -> bool:
    try:
        import PyQt6.QtWidgets  # noqa: F401
    except ImportError:
        return False
    return True


def make_parser() -> argparse.ArgumentParser:
    p = build_parser()
    p.prog = "rtseg"
    p.description = ("Real-time semantic segmentation: opens the desktop GUI and plays SOURCE at once; "
                     "with no display it segments SOURCE headless and writes --output.")
    p.add_argument("--headless", action="store_true", help="never open the GUI; write the overlay video")
    p.add_argument("--settings", help="GUI settings file (INI) to use instead of the user's (default: "
                   "$RTSEG_SETTINGS or the platform's settings location)")
    p.add_argument("--save-dir", dest="gui_output_dir",
                   help="where the GUI saves recordings and screenshots (default: the remembered folder, out/)")
    return p


def _body(args: argparse.Namespace) -> int:
    if not args.headless and has_display() and _qt_available():
        from rtseg.gui.app import run_gui

        return run_gui(args)
    if not args.headless:
        why = "PyQt6 is not installed" if has_display() else "no display (DISPLAY/WAYLAND_DISPLAY unset)"
        print(f"rtseg: {why}: running headless, writing the overlay video to {args.output}", file=sys.stderr)
    from rtseg.cli.run import _run

    return _run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``rtseg``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = make_parser()

    def body(args: argparse.Namespace) -> int:
        # the GUI falls back to the remembered backend/precision unless given on the command line
        args.backend_given = any(a == "--backend" or a.startswith("--backend=") for a in argv)
        args.precision_given = any(a == "--precision" or a.startswith("--precision=") for a in argv)
        return _body(args)

    return run_main("rtseg", body, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
