"""``rtseg-export``: turn a model into a deploy artifact.

    rtseg-export --model stdc1 --weights model_maxmIOU50.pth --input-size 512x1024 --format onnx
    rtseg-export --model stdc1 --weights model_maxmIOU50.pth --input-size 512x1024 --format engine --precision fp16

Every artifact is the same fused deploy graph (uint8 BGR frames in, uint8
labels out). An engine is built from the verified FP32 ONNX in small
file-in/file-out steps (``rtseg.export.tensorrt_build``) and lands in
``engines/`` with a JSON sidecar.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from rtseg.cli.common import add_model_args, run_main
from rtseg.core.errors import UserInputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtseg-export",
        description="Export a segmentation model as the fused deploy graph (uint8 BGR frames in, "
                    "uint8 labels out): a verified ONNX with its metadata, or a TensorRT engine with a JSON sidecar.",
    )
    add_model_args(p)
    p.add_argument("--format", choices=["onnx", "engine"], default="onnx", help="artifact format (default onnx)")
    p.add_argument("--precision", choices=["fp32", "f32", "fp16", "int8"],
                   help="engine: fp16 (default), fp32 or int8 (explicit Q/DQ calibrated on --calib-source). "
                        "onnx: fp32 (default), fp16 (mixed-precision ONNX) or int8 (Q/DQ ONNX)")
    batch = p.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=int, default=None, help="fixed batch size (default 1)")
    batch.add_argument("--batch-range", metavar="MIN:OPT:MAX", help="engine only: dynamic batch profile")
    p.add_argument("--workspace", type=float, metavar="GB", help="engine: builder workspace limit")
    p.add_argument("--timing-cache", metavar="PATH", help="engine: TensorRT timing cache file to read/update")
    p.add_argument("--calib-source", metavar="VIDEO_OR_FOLDER", help="int8: frames to calibrate on (your own data)")
    p.add_argument("--quantizer", choices=["ort", "nncf"], default="ort",
                   help="onnx int8: ort (default; ONNX Runtime's symmetric per-channel Q/DQ, what TensorRT "
                        "takes) or nncf (NNCF's Q/DQ for OpenVINO on CPU; needs rtseg[nncf]); NNCF's file is "
                        "accepted when its labels agree with FP32 on --int8-agreement of the pixels")
    p.add_argument("--int8-agreement", type=float, default=0.995,
                   help="--quantizer nncf: least share of pixels whose INT8 label equals FP32's (default 0.995)")
    p.add_argument("--int8-budget", type=float, default=None,
                   help="int8: largest accepted mIoU drop, in points: vs FP32 labels for the default "
                        "quantizer and engines (default 1); vs ground truth for --quantizer nncf with "
                        "--int8-data (default 0.5)")
    p.add_argument("--int8-weight-bits", type=int, choices=[7, 8], default=None,
                   help="onnx int8: weight range. 7 gives the same labels on every CPU (x86 CPUs without VNNI "
                        "saturate on 8-bit weights); 8 is TensorRT's full range. Default: 7 for --quantizer nncf "
                        "(a CPU artifact), 8 for ort (TensorRT's Q/DQ)")
    p.add_argument("--int8-data", metavar="DATASET",
                   help="--quantizer nncf: labelled frames (a dataset root, as rtseg-eval takes) whose "
                        "mIoU budget NNCF's accuracy control keeps by leaving sensitive layers in float")
    p.add_argument("--int8-split", default="val", help="with --int8-data: the split (default val)")
    p.add_argument("--int8-frames", type=int, default=48,
                   help="with --int8-data: how many labelled frames, spread over the split (default 48)")
    p.add_argument("--rebuild-on-mismatch", action="store_true",
                   help="engine: rebuild when a cached engine was built for another TensorRT or GPU")
    p.add_argument("--output", "-o", help="onnx: output path (default engines/<model>_<H>x<W>_b<N>[_fp16].onnx)")
    p.add_argument("--out-dir", default="engines", help="engine: output folder (default engines/)")
    p.add_argument("--tta", choices=["none", "flip", "scales", "flip+scales"], default="none",
                   help="onnx fp32: test-time augmentation inside the graph; flip averages the logits of the "
                        "frames and their mirror (twice the compute), scales adds 0.75x/1.25x passes, "
                        "flip+scales both (six passes): for offline use")
    p.add_argument("--logits", action="store_true", help="onnx: also output float logits (for parity tools)")
    p.add_argument("--no-verify", action="store_true", help="onnx: skip the ONNX Runtime vs PyTorch check")
    p.add_argument("--refine", metavar="crf[:ITERS][,KEY=VALUE...]",
                   help="put a mean-field CRF (bounded-window fully connected CRF) between the logits and the "
                        "argmax, e.g. crf, crf:10, crf:5,w_bilateral=3 (see rtseg.models.crf.CRFParams)")
    p.add_argument("--list-models", action="store_true", help="list the zoo's models and exit")
    return p


def _list_models() -> int:
    from rtseg.models import get_entry, list_models

    for name in list_models():
        print(f"{name:12s} {get_entry(name).summary}")
    return 0


def _export_fp32_onnx(args: argparse.Namespace, size, batch: int | None, out: Path | None):
    """Load the model and export (or reuse) the verified FP32 deploy ONNX; returns (path, meta)."""
    from rtseg.export.artifacts import ensure_onnx
    from rtseg.export.onnx_export import export_onnx
    from rtseg.models.crf import parse_refine
    from rtseg.models.deploy import load_for_deploy

    refine = parse_refine(args.refine)
    loaded = load_for_deploy(args.model, args.num_classes, args.weights)
    if loaded.meta.trained:
        print(loaded.report.summary())
    else:
        print("WARNING: no --weights given: exporting RANDOM, UNTRAINED weights (the labels mean nothing)")
    size = size or loaded.meta.input_size
    if size is None:
        raise UserInputError("this checkpoint records no input size: pass --input-size HxW")
    if out is None:
        path, fresh = ensure_onnx(args.model, args.weights, input_size=size, num_classes=args.num_classes,
                                  batch=batch, refine=refine)
        print(("exported " if fresh else "reusing ") + f"FP32 deploy ONNX {path}")
        return path, loaded.meta
    res = export_onnx(loaded.model, loaded.meta, input_size=size, path=out, batch=batch or 1,
                      with_logits=args.logits, verify=not args.no_verify, dynamic_batch=batch is None,
                      tta=args.tta, refine=refine)
    print(f"wrote {res.path} ({res.path.stat().st_size / 1e6:.1f} MB, sha256 {res.sha256[:12]})")
    if refine is not None:
        print(f"  refinement: {refine.describe()}")
    print(f"  graph: frames uint8 {list(res.input_shape)} BGR -> labels uint8 {list(res.input_shape[:3])}; "
          f"{loaded.meta.num_classes} classes, opset 17")
    if not args.no_verify:
        print(f"  verified: ONNX Runtime vs PyTorch labels agree on {res.agreement:.4%} of pixels "
              f"({res.verify_frames} frames)")
    return res.path, loaded.meta


def _run(args: argparse.Namespace) -> int:
    from rtseg.models.deploy import parse_size

    if args.list_models:
        return _list_models()
    if not args.model and not args.weights:
        raise UserInputError("say which model: --model NAME (random weights) and/or --weights PATH")
    size = parse_size(args.input_size) if args.input_size else None
    if args.weights and not Path(args.weights).is_file():
        raise UserInputError(f"weights file {args.weights} does not exist")
    if args.batch is not None and args.batch < 1:
        raise UserInputError(f"--batch must be >= 1, got {args.batch}")
    if args.precision == "int8" and not args.calib_source:
        raise UserInputError("--precision int8 needs --calib-source VIDEO_OR_FOLDER: frames of your own data "
                             "to calibrate on")
    if args.quantizer == "nncf":
        if args.format == "engine" or args.precision != "int8":
            raise UserInputError("--quantizer nncf makes an INT8 ONNX: use it with --format onnx --precision int8")
        import importlib.util

        if importlib.util.find_spec("nncf") is None:  # before minutes of export
            raise UserInputError("--quantizer nncf needs NNCF: pip install 'rtseg[nncf]'")
    if args.int8_weight_bits is not None and (args.format == "engine" or args.precision != "int8"):
        raise UserInputError("--int8-weight-bits is for --format onnx --precision int8 (a TensorRT engine always "
                             "takes 8-bit weights)")
    if args.int8_data:
        if args.quantizer != "nncf":
            raise UserInputError("--int8-data is for --quantizer nncf (its accuracy control); the default "
                                 "quantizer checks against FP32 labels on --calib-source")
        if args.int8_frames < 1:
            raise UserInputError(f"--int8-frames must be >= 1, got {args.int8_frames}")
        from rtseg.data.datasets import open_dataset, require_nonempty

        args.int8_dataset = require_nonempty(open_dataset(args.int8_data, args.int8_split))  # before work
    if args.calib_source and not Path(args.calib_source).exists():
        raise UserInputError(f"--calib-source {args.calib_source} does not exist")
    if args.tta != "none" and (args.format != "onnx" or (args.precision or "fp32") != "fp32"):
        raise UserInputError("--tta is for FP32 ONNX exports (offline use); drop --tta for engines and "
                             "reduced-precision artifacts")
    if args.format == "engine":
        return _engine(args, size)
    if args.batch_range:
        raise UserInputError("--batch-range is for --format engine; an ONNX for ONNX Runtime/OpenVINO has a fixed --batch")
    precision = args.precision or "fp32"
    out = Path(args.output) if args.output else None
    if out is not None and out.suffix != ".onnx":
        raise UserInputError(f"output {out} must end in .onnx")
    if precision in ("fp32", "f32"):
        if out is None:
            name = args.model or Path(args.weights).stem
            tag = "" if args.tta == "none" else f"_tta{args.tta}"
            out = Path("engines") / f"{name}_{size[0]}x{size[1]}_b{args.batch or 1}{tag}.onnx" if size else None
        _export_fp32_onnx(args, size, args.batch or 1, out)
        return 0
    # fp16 / int8 ONNX: file in (the FP32 export), file out.
    fp32, meta = _export_fp32_onnx(args, size, args.batch or 1, None)
    out = out or fp32.with_name(fp32.stem + f"_{precision}.onnx")
    if precision == "fp16":
        from rtseg.export.precision import convert_to_mixed_fp16

        rep = convert_to_mixed_fp16(fp32, out)
        print(f"wrote {out}: mixed FP16 ({rep.fp16_nodes} nodes FP16, {rep.fp32_nodes} kept FP32, "
              f"{rep.casts_inserted} casts)")
    elif args.quantizer == "nncf":
        from rtseg.export.nncf_quantize import labelled_frames, quantize_nncf

        labelled = None
        if args.int8_data:
            labelled = labelled_frames(args.int8_dataset, tuple(meta.input_size), args.int8_frames)
        repn = quantize_nncf(fp32, out, calib_source=args.calib_source, min_agreement=args.int8_agreement,
                             labelled=labelled,
                             max_miou_drop=0.5 if args.int8_budget is None else args.int8_budget,
                             weight_bits=args.int8_weight_bits or 7)
        checked = f"{repn.check_frames} frames"
        if repn.fp32_miou is not None and repn.int8_miou is not None:
            checked = (f"{labelled.name if labelled else checked}: mIoU {100 * repn.fp32_miou:.2f}% FP32 -> "
                       f"{100 * repn.int8_miou:.2f}% INT8 ({repn.miou_drop_points:+.2f} points lost)")
        print(f"wrote {out}: NNCF INT8 ({repn.weight_bits}-bit weights) calibrated on {repn.calibration_frames} "
              f"frames of {args.calib_source}, {repn.quantizers} quantizers; labels agree with FP32 on {100 * repn.agreement:.2f}% of the "
              f"pixels of {checked} (OpenVINO)")
    else:
        from rtseg.benchmark.parity import parity_on_source
        from rtseg.core.errors import ExportError
        from rtseg.export.quantize import quantize_int8
        from rtseg.runtime.onnxruntime_backend import OnnxRuntimeBackend

        rep8 = quantize_int8(fp32, out, calib_source=args.calib_source, weight_bits=args.int8_weight_bits or 8)
        print(f"wrote {out}: explicit Q/DQ INT8 ({rep8.weight_bits}-bit weights) calibrated on "
              f"{rep8.calibration_frames} frames of {args.calib_source} ({rep8.quantized_nodes} ops quantized)")
        # The same acceptance rule as for INT8 engines: mIoU vs FP32 labels within the budget.
        try:
            with OnnxRuntimeBackend(fp32) as reference, OnnxRuntimeBackend(out) as candidate:
                parity = parity_on_source(reference, candidate, args.calib_source, precision="int8",
                                          int8_budget=1.0 if args.int8_budget is None else args.int8_budget)
        except ExportError as exc:
            out.unlink(missing_ok=True)
            from rtseg.core.cpu import int8_saturates

            if rep8.weight_bits == 8 and int8_saturates():
                # The check ran on this CPU's INT8 kernels, which saturate on 8-bit weights: say so.
                raise ExportError(f"{exc}. This CPU has no VNNI, so ONNX Runtime's INT8 kernels saturate on 8-bit "
                                  "weights: for a CPU artifact add --int8-weight-bits 7 (for TensorRT, build "
                                  "the engine with --format engine on the GPU machine)") from None
            raise
        print(parity.summary())
    return 0


def _engine(args: argparse.Namespace, size) -> int:
    from rtseg.export.engine_cache import parse_batch_range
    from rtseg.export.tensorrt_build import ConsoleProgress, build_engine, detect_platform

    # Fail before exporting anything when TensorRT or the GPU is missing.
    detect_platform()
    batch_range = parse_batch_range(args.batch_range, args.batch)
    dynamic = batch_range[0] != batch_range[2]
    fp32, _meta = _export_fp32_onnx(args, size, None if dynamic else batch_range[0], None)
    command = "rtseg-export " + shlex.join(args._argv if args._argv is not None else sys.argv[1:])
    paths = build_engine(fp32, precision=args.precision or "fp16", batch_range=batch_range,
                         workspace_gb=args.workspace, timing_cache=args.timing_cache, calib_source=args.calib_source,
                         int8_budget=1.0 if args.int8_budget is None else args.int8_budget, out_dir=args.out_dir,
                         rebuild_on_mismatch=args.rebuild_on_mismatch, progress=ConsoleProgress(), command=command)
    print(("built " if paths.built else "reusing cached ") + f"{paths.engine}\n  sidecar {paths.sidecar}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``rtseg-export``."""
    parser = build_parser()
    parser.set_defaults(_argv=list(argv) if argv is not None else None)
    return run_main("rtseg-export", _run, parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
