"""What every console script shares: one-line errors, exit codes, logging setup."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from rtseg.core.errors import RtsegError


def run_main(prog: str, body: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser,
             argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run ``body``; an ``RtsegError`` becomes one line on
    stderr and a non-zero exit, Ctrl-C exits 130 (outputs are written
    atomically, so nothing half-written stays behind)."""
    args = parser.parse_args(argv)
    try:
        return body(args)
    except RtsegError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def add_model_args(p: argparse.ArgumentParser, *, need_size: bool = True) -> None:
    """--model / --weights / --num-classes / --input-size, shared by export, bench and run."""
    p.add_argument("--model", help="zoo model name (see --list-models); optional when --weights says it")
    p.add_argument("--weights", help="weights file: an rtseg checkpoint or a public STDC-Seg/BiSeNet release file; "
                   "omit for random (untrained) weights")
    p.add_argument("--num-classes", type=int, help="class count for random weights (default 19); "
                   "with --weights it must match the file")
    p.add_argument("--input-size", required=False, metavar="HxW",
                   help="model input size, e.g. 360x480" + (" (default: the checkpoint's)" if not need_size else ""))


def size_arg(text: str) -> tuple[int, int]:
    """argparse type for ``HxW`` sizes (crops, eval sizes); the deploy-size rules are checked elsewhere."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: write HEIGHTxWIDTH, e.g. 360x480") from None
    return h, w


def add_artifact_args(p: argparse.ArgumentParser, *, onnx: bool = True) -> None:
    """--onnx / --engine: a ready artifact instead of --model/--weights (rtseg, rtseg-run, rtseg-bench)."""
    if onnx:
        p.add_argument("--onnx", help="an exported rtseg ONNX file to run instead of --model/--weights "
                       "(onnxruntime or openvino)")
    p.add_argument("--engine", help="a TensorRT engine to run (built with rtseg-export --format engine; "
                   "its sidecar says the rest); runs on --backend trt, which it implies")


def add_backend_args(p: argparse.ArgumentParser, *, default: str | None = "auto") -> None:
    """--backend / --precision / --threads, with the one set of rules of ``rtseg.resolve``."""
    p.add_argument("--backend", default=default,
                   help="auto | onnxruntime | openvino | torch | torch-cuda | trt (default auto: trt for --engine, "
                        "else the fastest CPU path that keeps FP32's labels, measured once and cached)")
    p.add_argument("--precision", default="auto",
                   help="auto | f32 | bf16 | fp16 | int8 (default auto: chosen with --backend auto, else the "
                        "artifact's own or the backend's: OpenVINO f32, torch-cuda fp16). An INT8/FP16 ONNX or an "
                        "engine runs at the precision it was written at; the precision that really runs is always "
                        "reported")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's own choice)")
