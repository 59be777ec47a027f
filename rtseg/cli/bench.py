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
from typing import TYPE_CHECKING

from rtseg.cli.common import add_model_args, run_main
from rtseg.core.atomic import atomic_write_text
from rtseg.core.errors import UserInputError

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

DEFAULT_SOURCE = "synthetic:1280x720"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtseg-bench",
        description="Benchmark a backend headless: inference-only throughput, and end-to-end throughput "
                    "and per-stage latency (decode, preprocess, infer, postprocess) of the pipelined run.",
    )
    add_model_args(p)
    p.add_argument("--onnx", help="use this exported ONNX file for ONNX backends instead of exporting")
    p.add_argument("--engine", help="TensorRT engine for --backend trt (built with rtseg-export --format engine)")
    p.add_argument("--cuda-graph", action="store_true", help="torch-cuda: capture the graph once and replay it")
    p.add_argument("--parity", choices=["fp16", "int8"],
                   help="instead of timing: compare FP16 (or INT8) labels against FP32 on the source's frames "
                        "(pixel agreement, per-class IoU, NaN/Inf). Uses --engine when given, else the mixed "
                        "FP16 ONNX on OpenVINO f16 (FP16 rounding emulated on "
                        "ONNX Runtime where the CPU has no FP16 arithmetic) / the Q/DQ INT8 ONNX on ONNX Runtime")
    p.add_argument("--int8-budget", type=float, default=1.0, help="--parity int8: accepted mIoU drop in points")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument("--backend", default="openvino",
                   help="onnxruntime | openvino | torch | torch-cuda | trt (default openvino); ignored with --compare")
    p.add_argument("--precision", help="openvino: f32 (default) | bf16 | f16; torch-cuda: fp16 (default) | fp32; "
                   "trt: the engine's. Always reported")
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
            # OpenVINO's own default is bf16 on this kind of CPU: never leave it implicit.
            prec = {"torch-cuda": "fp16", "trt": ""}.get(kind, "f32")
        runs.append((kind, prec or None))
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
    size = parse_size(args.input_size) if args.input_size else None
    if args.parity:
        return _parity(args, size)
    runs = _parse_runs(args)
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
            extra = {"cuda_graph": True} if (kind == "torch-cuda" and args.cuda_graph) else {}
            backend = create_backend(kind, args.weights, precision=prec, threads=args.threads, model=args.model,
                                     num_classes=args.num_classes, input_size=size, batch=args.batch, **extra)
        else:  # trt
            if not args.engine:
                raise UserInputError("--backend trt needs --engine PATH (build one with rtseg-export --format engine)")
            backend = create_backend(kind, args.engine, precision=prec, threads=args.threads)
        meta = backend.meta
        label = f"{kind} {backend.info().precision}" + (" cuda-graph" if kind == "torch-cuda" and args.cuda_graph else "")
        print(f"running {label} ...", file=sys.stderr)
        reports.append(run_backend(label, backend, make_source, warmup=args.warmup, frames=args.frames))
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


def _parity(args: argparse.Namespace, size) -> int:
    """FP16/INT8 vs FP32 labels on the source's frames; non-zero exit when the rule fails."""
    import tempfile

    from rtseg.benchmark.parity import (
        cpu_has_fp16_arithmetic,
        fp16_emulation_runner,
        onnxruntime_runner,
        openvino_runner,
        parity_on_source,
    )
    from rtseg.export.artifacts import ensure_onnx
    from rtseg.runtime.onnx_file import OnnxArtifact

    if args.source.startswith("synthetic"):
        raise UserInputError("--parity needs real frames: pass --source VIDEO_OR_FOLDER (e.g. the bundled sample)")
    fp32 = Path(args.onnx) if args.onnx else ensure_onnx(args.model, args.weights, input_size=size,
                                                          num_classes=args.num_classes, batch=args.batch,
                                                          with_logits=True)[0]
    art = OnnxArtifact.open(fp32)
    candidate: Callable[[np.ndarray], np.ndarray]
    reference = onnxruntime_runner(fp32)
    with tempfile.TemporaryDirectory(prefix="rtseg-parity-") as tmp:
        if args.engine:
            from rtseg.runtime.factory import create_backend

            be = create_backend("trt", args.engine)
            be.activate()
            candidate, name = be.infer, f"TensorRT {be.info().precision} engine"
        elif args.parity == "fp16":
            from rtseg.export.precision import convert_to_mixed_fp16

            fp16 = convert_to_mixed_fp16(fp32, Path(tmp) / "fp16.onnx").path
            if cpu_has_fp16_arithmetic():
                candidate, executed = openvino_runner(fp16, inference_precision="f16", threads=args.threads)
                n16 = sum(v for (op, prec), v in executed.items() if op == "Convolution" and prec == "f16")
                name = f"mixed-FP16 ONNX on OpenVINO f16 ({n16} convolutions executed in f16)"
            else:
                # Said plainly in the report: this CPU cannot compute in FP16, so the check
                # rounds every FP16 tensor instead (FP16 precision and range between ops).
                candidate = fp16_emulation_runner(fp16, threads=args.threads)
                name = ("mixed-FP16 ONNX, FP16 rounding emulated on ONNX Runtime (this CPU has no FP16 "
                        "arithmetic: FP16 weights and tensors, FP32 arithmetic inside each op)")
        else:
            from rtseg.export.quantize import quantize_int8

            int8 = quantize_int8(fp32, Path(tmp) / "int8.onnx", calib_source=args.source).path
            candidate, name = onnxruntime_runner(int8), "Q/DQ INT8 ONNX on ONNX Runtime (calibrated on the source)"
        report = parity_on_source(reference, candidate, args.source, input_size=art.input_shape[1:],
                                  class_names=art.meta.class_names, batch=art.input_shape[0],
                                  max_frames=args.frames, precision=args.parity, int8_budget=args.int8_budget,
                                  reference_name="FP32 ONNX on ONNX Runtime", candidate_name=name)
    print(report.summary())
    print("  per-class IoU vs FP32 labels: " + ", ".join(f"{k} {v:.3f}" for k, v in report.class_iou.items()))
    if args.json:
        import json

        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``rtseg-bench``."""
    parser = build_parser()
    parser.set_defaults(_argv=list(argv) if argv is not None else None)
    return run_main("rtseg-bench", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
