"""``rtseg-eval``: accuracy of a deploy artifact on a dataset split, or parity of two backends.

Examples::

    rtseg-eval model.pt --split heldout-val                          # torch backend, sequence 0006R0
    rtseg-eval out/stdc1.onnx --backend openvino --precision bf16 --json out/ov_bf16.json
    rtseg-eval out/stdc1.onnx --backend onnxruntime --parity-with openvino --parity-precision bf16
    rtseg-eval out/stdc1_int8.onnx --baseline out/stdc1.onnx --max-drop 1   # accuracy cost of INT8
    rtseg-eval model.pt --refine crf                                 # with mean-field CRF refinement
    rtseg-eval --engine engines/stdc1_....engine                     # a TensorRT engine (needs TensorRT)

Every backend runs the deploy graph (BGR uint8 frames in, labels out), so the
numbers are those of what ships.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rtseg.cli.common import run_main
from rtseg.cli.common import size_arg as _size
from rtseg.data.datasets import DATASET_KINDS, DEFAULT_CAMVID_ROOT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtseg-eval",
        description="mIoU, per-class IoU, pixel accuracy and confusion matrix of an artifact (PyTorch "
                    "checkpoint, ONNX file, TensorRT engine) on a dataset split, run through a backend; "
                    "or, with --parity-with, frame-by-frame label agreement of two backends.",
    )
    p.add_argument("artifact", nargs="?", help="checkpoint (.pt/.pth), ONNX file (.onnx) or TensorRT engine")
    p.add_argument("--engine", help="a TensorRT engine to evaluate (instead of ARTIFACT; runs on trt)")
    p.add_argument("--backend", help="torch, onnxruntime, openvino, trt, torch-cuda "
                   "(default: torch for checkpoints, onnxruntime for .onnx, trt for engines)")
    p.add_argument("--precision", help="backend precision, e.g. f32, bf16 (OpenVINO); default: the artifact's "
                   "own (an INT8 ONNX runs int8), else the backend's")
    p.add_argument("--threads", type=int, help="CPU threads of the backend")
    p.add_argument("--input-size", type=_size, metavar="HxW",
                   help="torch backend only: input size (default: the checkpoint's)")
    p.add_argument("--tta", choices=["none", "flip", "scales", "flip+scales"], default="none",
                   help="test-time augmentation for checkpoints (torch backend): flip averages the logits of "
                        "each frame and its mirror, scales those at 0.75/1/1.25x, flip+scales both. An ONNX "
                        "file holds its own (rtseg-export --tta flip)")
    p.add_argument("--data", default=DEFAULT_CAMVID_ROOT, help="dataset root (default %(default)s)")
    p.add_argument("--dataset-kind", default="auto", choices=DATASET_KINDS)
    p.add_argument("--split", default="val", help="split to evaluate (default %(default)s)")
    p.add_argument("--limit", type=int, help="evaluate the first N pairs only")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--parity-with", metavar="BACKEND", help="compare with this second backend frame by frame")
    p.add_argument("--parity-artifact", help="artifact of the second backend (default: the same artifact)")
    p.add_argument("--parity-precision", help="precision of the second backend")
    p.add_argument("--baseline", metavar="ARTIFACT",
                   help="also evaluate this artifact (e.g. the FP32 ONNX) on the same split and report the "
                        "candidate's mIoU drop against ground truth relative to it")
    p.add_argument("--baseline-backend", help="backend of --baseline (default: by its file type)")
    p.add_argument("--baseline-precision", help="precision of the --baseline backend")
    p.add_argument("--refine", metavar="crf[:ITERS][,KEY=VALUE...]",
                   help="checkpoints on the torch backend: evaluate the deploy graph with mean-field CRF "
                        "refinement (an ONNX file carries its refinement from rtseg-export --refine)")
    p.add_argument("--max-drop", type=float, metavar="POINTS",
                   help="with --baseline: exit non-zero when the drop exceeds this many mIoU points")
    return p


def default_backend(artifact: str) -> str:
    suffix = Path(artifact).suffix.lower()
    if suffix == ".onnx":
        return "onnxruntime"
    if suffix in (".engine", ".plan", ".trt"):
        return "trt"
    return "torch"


def _make(kind: str | None, artifact: str, precision: str | None, threads: int | None,
          input_size: tuple[int, int] | None, tta: str = "none", refine=None):
    """The backend for one artifact, by the rules every command shares (``rtseg.resolve``)."""
    from rtseg.core.errors import UserInputError
    from rtseg.resolve.backend import backend_kind, resolve
    from rtseg.resolve.model import ModelChoice

    choice = ModelChoice.from_artifact(artifact, input_size=input_size)
    k = backend_kind(choice, kind, default_backend=default_backend(artifact))
    options: dict[str, object] = {}
    if tta != "none":
        if k != "torch":
            raise UserInputError(f"--tta {tta} runs on the torch backend from a checkpoint; for {k}, export the "
                                 f"augmentation into the graph (rtseg-export --tta {tta}) and evaluate that file")
        options["tta"] = tta
    if refine is not None:
        if k != "torch":
            raise UserInputError(f"--refine builds the refined graph from a checkpoint on the torch backend, not "
                                 f"{k}; for other backends export it with rtseg-export --refine and evaluate that file")
        options["refine"] = refine
    return resolve(choice, k, precision, threads=threads, options=options,
                   report=lambda s: print(s, file=sys.stderr)).create()


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{done}/{total} frames")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _body(args: argparse.Namespace) -> int:
    from rtseg.core.atomic import atomic_write_text
    from rtseg.core.errors import UserInputError
    from rtseg.data.datasets import open_dataset, require_nonempty
    from rtseg.eval.evaluate import evaluate_backend, parity

    if args.max_drop is not None and not args.baseline:
        raise UserInputError("--max-drop needs --baseline ARTIFACT (the reference to measure the drop against)")
    if args.baseline and args.parity_with:
        raise UserInputError("use either --baseline (accuracy drop against ground truth) or --parity-with "
                             "(label agreement), not both")
    if args.baseline and not Path(args.baseline).is_file():
        raise UserInputError(f"baseline {args.baseline} does not exist; check the path")
    if bool(args.artifact) == bool(args.engine):
        raise UserInputError("pass the artifact to evaluate: a checkpoint, ONNX file or engine, or --engine PATH "
                             "(one of them)")
    args.artifact = args.artifact or args.engine
    refine = None
    if args.refine:
        from rtseg.models.crf import parse_refine  # imports torch, which --refine needs anyway

        refine = parse_refine(args.refine)
    # The artifact and its options first: a wrong combination is reported whatever the dataset path
    # (created here, activated below, so nothing heavy runs before the dataset check).
    be_a = _make(args.backend, args.artifact, args.precision, args.threads, args.input_size, args.tta, refine)
    ds = require_nonempty(open_dataset(args.data, args.split, args.dataset_kind))
    result: dict
    with be_a:
        info_a = be_a.info()
        tta = be_a.meta.extra.get("tta", "none")
        header = (f"{args.artifact} on {ds.info.name} {args.split} ({min(len(ds), args.limit or len(ds))} frames) "
                  f"via {info_a.backend} {info_a.precision} on {info_a.device}, input "
                  f"{be_a.input_shape[1]}x{be_a.input_shape[2]}" + ("" if tta == "none" else f", TTA {tta}")
                  + (f", refined by {refine.describe()}" if refine is not None else ""))
        if args.parity_with:
            art_b = args.parity_artifact or args.artifact
            be_b = _make(args.parity_with, art_b, args.parity_precision, args.threads, args.input_size)
            with be_b:
                info_b = be_b.info()
                names = (f"{info_a.backend}/{info_a.precision}", f"{info_b.backend}/{info_b.precision}")
                t0 = time.perf_counter()
                rep = parity(be_a, be_b, ds, limit=args.limit, names=names, progress=_progress)
            print(header)
            print(rep.summary())
            result = {"artifact": args.artifact, "artifact_b": art_b, "dataset": ds.info.name,
                      "split": args.split, "seconds": time.perf_counter() - t0, **rep.to_dict()}
        else:
            t0 = time.perf_counter()
            metrics = evaluate_backend(be_a, ds, limit=args.limit, progress=_progress)
            print(header)
            print(metrics.format_table())
            result = {"artifact": args.artifact, "backend": info_a.backend, "precision": info_a.precision, "tta": tta,
                      "refine": refine.to_dict() if refine is not None else None,
                      "device": info_a.device, "dataset": ds.info.name, "split": args.split,
                      "frames": min(len(ds), args.limit or len(ds)), "seconds": time.perf_counter() - t0,
                      **metrics.to_dict()}
    if args.baseline and not args.parity_with:
        result["versus_baseline"] = _versus_baseline(args, ds, metrics,
                                                     f"{args.artifact} via {info_a.backend}/{info_a.precision}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1) + "\n")
    if args.baseline and args.max_drop is not None:
        from rtseg.eval.evaluate import check_accuracy_drop

        # After the JSON is written, so the figures behind a rejection are kept.
        check_accuracy_drop(result["versus_baseline"], args.max_drop)
    return 0


def _versus_baseline(args: argparse.Namespace, ds, candidate, cand_name: str) -> dict:
    """Evaluate ``--baseline`` on the same split and print the candidate's accuracy drop."""
    from rtseg.eval.evaluate import accuracy_drop, evaluate_backend

    be = _make(args.baseline_backend, args.baseline, args.baseline_precision, args.threads, args.input_size)
    with be:
        info = be.info()
        base = evaluate_backend(be, ds, limit=args.limit, progress=_progress)
    base_name = f"{args.baseline} via {info.backend}/{info.precision}"
    d = accuracy_drop(base, candidate, names=(base_name, cand_name))
    print(f"versus baseline {base_name}: mIoU {100 * base.miou:.2f} -> {100 * candidate.miou:.2f} "
          f"(drop {d['miou_drop_points']:+.2f} points against ground truth)")
    worst = sorted(((v, k) for k, v in d["class_drop_points"].items() if v is not None), reverse=True)[:3]
    if worst:
        print("  largest class drops: " + ", ".join(f"{k} {v:+.2f}" for v, k in worst))
    return d


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``rtseg-eval``."""
    return run_main("rtseg-eval", _body, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
