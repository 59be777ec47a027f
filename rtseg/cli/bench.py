"""``rtseg-bench``: headless throughput and per-stage latency of any backend.

    rtseg-bench --model stdc1 --input-size 360x480 --backend openvino --precision bf16 --source clip.mp4
    rtseg-bench --model stdc1 --input-size 360x480 --compare onnxruntime,openvino:f32,openvino:bf16,torch
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from rtseg.cli.common import add_model_args, run_main
from rtseg.core.atomic import atomic_write_text
from rtseg.core.errors import UserInputError

DEFAULT_SOURCE = "synthetic:1280x720"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtseg-bench",
        description="Benchmark a backend headless: inference-only throughput, and end-to-end throughput "
                    "and per-stage latency (decode, preprocess, infer, postprocess) of the pipelined run.",
    )
    add_model_args(p)
    p.add_argument("--onnx", help="use this exported ONNX file for ONNX backends instead of exporting")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--backend", default="openvino",
                   help="onnxruntime | openvino | torch (default openvino); ignored with --compare")
    p.add_argument("--precision", help="f32 | bf16 (OpenVINO) ... always reported; default f32")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's own choice)")
    p.add_argument("--compare", metavar="B[:P],B[:P]...",
                   help="run several backends on the same frames, e.g. onnxruntime,openvino:f32,openvino:bf16,torch")
    p.add_argument("--source", default=DEFAULT_SOURCE,
                   help=f"video file, image folder or synthetic:WxH (default {DEFAULT_SOURCE})")
    p.add_argument("--frames", type=int, default=200, help="measured frames per run (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up frames, not measured (default 20)")
    p.add_argument("--json", help="also write the report as JSON to this path")
    return p


def _parse_runs(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    from rtseg.runtime.factory import canonical_kind

    specs = args.compare.split(",") if args.compare else [args.backend + (f":{args.precision}" if args.precision else "")]
    runs = []
    for spec in specs:
        kind, _, prec = spec.strip().partition(":")
        kind = canonical_kind(kind)
        if not prec:
            prec = "f32"
        runs.append((kind, prec))
    return runs


def _run(args: argparse.Namespace) -> int:
    from rtseg.benchmark.report import BenchReport, format_report, host_info
    from rtseg.benchmark.runner import run_backend
    from rtseg.export.artifacts import ensure_onnx
    from rtseg.models.deploy import parse_size
    from rtseg.pipeline.sources import open_source
    from rtseg.runtime.factory import ONNX_BACKENDS, create_backend

    if args.frames < 1 or args.warmup < 0:
        raise UserInputError("--frames must be >= 1 and --warmup >= 0")
    if args.batch < 1:
        raise UserInputError(f"--batch must be >= 1, got {args.batch}")
    runs = _parse_runs(args)
    size = parse_size(args.input_size) if args.input_size else None
    if args.weights and not Path(args.weights).is_file():
        raise UserInputError(f"weights file {args.weights} does not exist")
    if args.onnx is None and not args.model and not args.weights:
        raise UserInputError("say which model: --model NAME, --weights PATH or --onnx FILE")

    # Open the source once up front so a bad path fails before any export.
    probe = open_source(args.source)
    first = probe.read()
    source_info = {"spec": args.source, "description": probe.describe(),
                   "width": first.width if first else None, "height": first.height if first else None}
    probe.close()
    if first is None:
        raise UserInputError(f"source {args.source} delivered no frame")

    def make_source():
        # A synthetic scene is rendered once per frame of its period, then replayed,
        # so rendering never limits the measured pipeline.
        return open_source(args.source, period=24)

    onnx_path = Path(args.onnx) if args.onnx else None
    reports = []
    meta = None
    for kind, prec in runs:
        if kind in ONNX_BACKENDS:
            if onnx_path is None:
                onnx_path, fresh = ensure_onnx(args.model, args.weights, input_size=size,
                                               num_classes=args.num_classes, batch=args.batch)
                if fresh:
                    print(f"exported {onnx_path}", file=sys.stderr)
            backend = create_backend(kind, onnx_path, precision=prec, threads=args.threads)
        elif kind in ("torch", "torch-cuda"):
            backend = create_backend(kind, args.weights, precision=prec, threads=args.threads, model=args.model,
                                     num_classes=args.num_classes, input_size=size, batch=args.batch)
        else:
            backend = create_backend(kind, args.onnx, precision=prec, threads=args.threads)
        meta = backend.meta
        print(f"running {kind} {prec} ...", file=sys.stderr)
        reports.append(run_backend(f"{kind} {prec}", backend, make_source, warmup=args.warmup, frames=args.frames))
        shape = backend.input_shape

    assert meta is not None
    model_info = {"name": meta.model, "num_classes": meta.num_classes, "input_size": f"{shape[1]}x{shape[2]}",
                  "batch": shape[0], "trained": meta.trained, "weights": meta.weights,
                  "onnx": str(onnx_path) if onnx_path else None}
    command = "rtseg-bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if args._argv is None else args._argv))
    rep = BenchReport(model=model_info, source=source_info, host=host_info(), runs=reports, command=command)
    print(format_report(rep))
    if args.json:
        atomic_write_text(args.json, rep.to_json())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``rtseg-bench``."""
    parser = build_parser()
    parser.set_defaults(_argv=list(argv) if argv is not None else None)
    return run_main("rtseg-bench", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
