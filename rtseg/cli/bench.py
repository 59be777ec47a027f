"""``rtseg-bench``: headless throughput and per-stage latency of any backend.

    rtseg-bench --source clip.mp4                       # the bundled model on the fastest CPU path (auto)
    rtseg-bench --autotune                              # measure the automatic choice again
    rtseg-bench --model stdc1 --input-size 360x480 --backend openvino --precision bf16 --source clip.mp4
    rtseg-bench --model stdc1 --input-size 360x480 --compare onnxruntime,openvino:f32,openvino:bf16,torch
    rtseg-bench --onnx engines/stdc1_int8.onnx --backend onnxruntime        # reports int8 (the file's tag)
    rtseg-bench --engine engines/stdc1_....engine                           # TensorRT (needs TensorRT)

The end-to-end figure is the app's own pipeline in benchmark mode
(``rtseg.pipeline.headless``, the code ``rtseg-run`` runs); inference-only
timing is reported beside it, labelled as such.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from rtseg.cli.common import add_artifact_args, add_model_args, run_main
from rtseg.core.atomic import atomic_write_text
from rtseg.core.errors import UserInputError

DEFAULT_SOURCE = "synthetic:1280x720"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtseg-bench",
        description="Benchmark a backend headless: inference-only throughput, and end-to-end throughput "
                    "and per-stage latency (decode, queue, preprocess, infer, smoothing, postprocess) of the "
                    "app's own pipeline in benchmark mode.",
    )
    add_model_args(p)
    add_artifact_args(p)
    p.add_argument("--cuda-graph", action="store_true", help="torch-cuda: capture the graph once and replay it")
    p.add_argument("--parity", choices=["fp16", "int8"],
                   help="instead of timing: compare FP16 (or INT8) labels against FP32 on the source's frames "
                        "(pixel agreement, per-class IoU, NaN/Inf). Uses --engine when given, else the mixed "
                        "FP16 ONNX on OpenVINO f16 (FP16 rounding emulated on "
                        "ONNX Runtime where the CPU has no FP16 arithmetic) / the Q/DQ INT8 ONNX on ONNX Runtime")
    p.add_argument("--int8-budget", type=float, default=1.0, help="--parity int8: accepted mIoU drop in points")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 1, or the artifact's)")
    p.add_argument("--backend", default="auto",
                   help="auto | onnxruntime | openvino | torch | torch-cuda | trt (default auto: trt for --engine, "
                        "else the fastest CPU path that keeps FP32's labels, measured once and cached); "
                        "ignored with --compare")
    p.add_argument("--precision", default="auto",
                   help="auto | f32 | bf16 | fp16 | int8 (default auto: chosen with --backend auto, else the "
                        "artifact's or the backend's: OpenVINO f32, torch-cuda fp16). The precision that really "
                        "ran is always reported")
    p.add_argument("--autotune", action="store_true",
                   help="with --backend auto: measure the candidates again instead of using the cached choice")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's own choice)")
    p.add_argument("--compare", metavar="B[:P],B[:P]...",
                   help="run several backends on the same frames, e.g. onnxruntime,openvino:f32,openvino:bf16,torch")
    p.add_argument("--source", default=DEFAULT_SOURCE,
                   help=f"video file, image folder or synthetic:WxH (default {DEFAULT_SOURCE})")
    p.add_argument("--frames", type=int, default=200, help="measured frames per run (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="warm-up frames, not measured (default 20)")
    p.add_argument("--rounds", type=int, default=4,
                   help="measure inference-only and end to end alternately in this many rounds, so a machine "
                        "whose speed drifts weighs on both alike (default 4; 1: one of each)")
    p.add_argument("--json", help="also write the report as JSON to this path")
    return p


def _parse_runs(args: argparse.Namespace) -> list[tuple[str | None, str | None]]:
    """(backend, precision) per run, as the user spelled them (resolve applies the rules)."""
    if not args.compare:
        return [(args.backend, args.precision)]
    runs: list[tuple[str | None, str | None]] = []
    for spec in args.compare.split(","):
        kind, _, prec = spec.strip().partition(":")
        runs.append((kind or None, prec or None))
    return runs


def _run(args: argparse.Namespace) -> int:
    from rtseg.benchmark.report import BenchReport, format_report, host_info
    from rtseg.benchmark.runner import run_backend
    from rtseg.pipeline.sources import open_source
    from rtseg.resolve.backend import resolve
    from rtseg.resolve.model import resolve_model

    if args.frames < 1 or args.warmup < 0:
        raise UserInputError("--frames must be >= 1 and --warmup >= 0")
    if args.rounds < 1:
        raise UserInputError(f"--rounds must be >= 1, got {args.rounds}")
    if args.batch is not None and args.batch < 1:
        raise UserInputError(f"--batch must be >= 1, got {args.batch}")
    # No model named: the bundled one (rtseg.resolve.model), as rtseg-run does.
    if args.parity:
        return _parity(args)
    choice = resolve_model(args)

    # Open the source once up front so a bad path fails before any export.
    probe = open_source(args.source)
    first = probe.read()
    source_info = {"spec": args.source, "description": probe.describe(),
                   "width": first.width if first else None, "height": first.height if first else None}
    probe.close()
    if first is None:
        raise UserInputError(f"source {args.source} delivered no frame")

    def note(text: str) -> None:
        print(text, file=sys.stderr)

    # Every run is resolved before any is measured: a bad spec fails before minutes of timing.
    plans = []
    for kind, prec in _parse_runs(args):
        options = {"cuda_graph": True} if args.cuda_graph and kind == "torch-cuda" else {}
        plans.append(resolve(choice, kind, prec, threads=args.threads, batch=args.batch, options=options,
                             report=note, autotune=args.autotune, throughput=True))
    reports = []
    for res in plans:
        # What the automatic choice added (INT8 float layers, streams) belongs in the label too.
        rest = res.options.get("float_precision")
        streams = res.options.get("streams", 1)
        label = (f"{res.kind} {res.precision}" + (f" (float layers {rest})" if rest else "")
                 + (f", {streams} streams" if streams > 1 else "")
                 + (" cuda-graph" if res.options.get("cuda_graph") else ""))
        note(f"running {label} ...")
        rep = run_backend(label, res.factory, args.source, warmup=args.warmup, frames=args.frames,
                          rounds=args.rounds)
        if rep.backend["precision"] != res.precision:  # e.g. OpenVINO compiled a lower precision
            rep.label = f"{res.kind} {rep.backend['precision']}" + label[len(f"{res.kind} {res.precision}"):]
        reports.append(rep)
    onnx = next((str(r.artifact) for r in plans if r.artifact is not None and r.artifact.suffix == ".onnx"), None)
    model_info = {**reports[0].model, "onnx": onnx}
    command = "rtseg-bench " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if args._argv is None else args._argv))
    rep_all = BenchReport(model=model_info, source=source_info, host=host_info(), runs=reports, command=command)
    print(format_report(rep_all))
    if args.json:
        atomic_write_text(args.json, rep_all.to_json())
    return 0


def _parity(args: argparse.Namespace) -> int:
    """FP16/INT8 vs FP32 labels on the source's frames, both through backends; non-zero exit on failure.

    The reference is the FP32 ONNX on ONNX Runtime (``--onnx``, or the export of
    ``--model``/``--weights``); the candidate is ``--engine`` when given, else
    the FP16/INT8 ONNX made from the reference here.
    """
    import copy
    import json
    import tempfile
    from pathlib import Path

    from rtseg.benchmark.parity import fp16_candidate, parity_on_source
    from rtseg.resolve.backend import resolve
    from rtseg.resolve.model import ModelChoice, resolve_model
    from rtseg.runtime.base import Backend
    from rtseg.runtime.openvino_backend import OpenVinoBackend

    if args.source.startswith("synthetic"):
        raise UserInputError("--parity needs real frames: pass --source VIDEO_OR_FOLDER (e.g. the bundled sample)")
    engine_res = None
    if args.engine:
        # The engine is the candidate: resolved first, so a machine without TensorRT hears that at once.
        engine_res = resolve(ModelChoice(None, None, None, None, None, Path(args.engine)), "trt", None)
    ref_args = copy.copy(args)
    ref_args.engine = None
    if not (ref_args.onnx or ref_args.model or ref_args.weights):
        raise UserInputError("--parity compares against the FP32 model: pass --onnx FP32.onnx or --model/--weights")
    choice = resolve_model(ref_args)
    # The FP32 reference: the ONNX given, or the export of the checkpoint (with logits for the NaN/Inf check).
    reference_res = resolve(choice, "onnxruntime", None, threads=args.threads, batch=args.batch,
                            with_logits=choice.onnx is None, report=lambda s: print(s, file=sys.stderr))
    fp32 = reference_res.artifact
    assert fp32 is not None
    with tempfile.TemporaryDirectory(prefix="rtseg-parity-") as tmp:
        candidate: Backend
        if engine_res is not None:
            candidate = engine_res.create()
            name = f"TensorRT {engine_res.precision} engine"
        elif args.parity == "fp16":
            from rtseg.export.precision import convert_to_mixed_fp16

            fp16 = convert_to_mixed_fp16(fp32, Path(tmp) / "fp16.onnx").path
            candidate, name = fp16_candidate(fp16, threads=args.threads)
        else:
            from rtseg.core.cpu import int8_saturates
            from rtseg.export.quantize import quantize_int8
            from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend

            # This CPU runs the check: without VNNI its INT8 kernels saturate on 8-bit weights, and the
            # figure would measure that instead of the quantization (rtseg.core.cpu).
            bits = 7 if int8_saturates() else 8
            int8 = quantize_int8(fp32, Path(tmp) / "int8.onnx", calib_source=args.source, weight_bits=bits).path
            candidate = OnnxRuntimeBackend(int8, threads=args.threads)
            name = f"Q/DQ INT8 ONNX ({bits}-bit weights) on ONNX Runtime (calibrated on the source)"
        with reference_res.create() as reference, candidate:
            if isinstance(candidate, OpenVinoBackend):
                n16 = sum(v for (op, p), v in candidate.executed_precisions().items()
                          if op == "Convolution" and p == "f16")
                name += f" ({n16} convolutions executed in f16)"
            report = parity_on_source(reference, candidate, args.source, max_frames=args.frames,
                                      precision=engine_res.precision if engine_res else args.parity,
                                      int8_budget=args.int8_budget,
                                      reference_name="FP32 ONNX on ONNX Runtime", candidate_name=name)
    print(report.summary())
    print("  per-class IoU vs FP32 labels: " + ", ".join(f"{k} {v:.3f}" for k, v in report.class_iou.items()))
    if args.json:
        atomic_write_text(args.json, json.dumps(report.to_dict(), indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``rtseg-bench``."""
    parser = build_parser()
    parser.set_defaults(_argv=list(argv) if argv is not None else None)
    return run_main("rtseg-bench", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
