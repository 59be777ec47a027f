"""``rtseg-export``: turn a model into a deploy artifact.

    rtseg-export --model stdc1 --weights model_maxmIOU50.pth --input-size 512x1024 --format onnx
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rtseg.cli.common import add_model_args, run_main
from rtseg.core.errors import UserInputError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtseg-export",
        description="Export a segmentation model as the fused deploy graph (uint8 BGR frames in, "
                    "uint8 labels out) to ONNX, with its metadata, verified against PyTorch.",
    )
    add_model_args(p)
    p.add_argument("--batch", type=int, default=1, help="fixed batch size of the artifact (default 1)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="artifact format (default onnx)")
    p.add_argument("--output", "-o", help="output path (default: engines/<model>_<H>x<W>_b<N>.onnx)")
    p.add_argument("--logits", action="store_true", help="also output float logits (for parity tools)")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime vs PyTorch check")
    p.add_argument("--list-models", action="store_true", help="list the zoo's models and exit")
    return p


def _run(args: argparse.Namespace) -> int:
    from rtseg.models.deploy import parse_size

    if args.list_models:
        from rtseg.models import get_entry, list_models

        for name in list_models():
            print(f"{name:12s} {get_entry(name).summary}")
        return 0
    if not args.model and not args.weights:
        raise UserInputError("say which model: --model NAME (random weights) and/or --weights PATH")
    size = parse_size(args.input_size) if args.input_size else None
    if args.weights and not Path(args.weights).is_file():
        raise UserInputError(f"weights file {args.weights} does not exist")

    from rtseg.export.onnx_export import export_onnx
    from rtseg.models.deploy import load_for_deploy

    loaded = load_for_deploy(args.model, args.num_classes, args.weights)
    size = size or loaded.meta.input_size
    if size is None:
        raise UserInputError("this checkpoint records no input size: pass --input-size HxW")
    out = Path(args.output) if args.output else Path("engines") / f"{loaded.meta.model}_{size[0]}x{size[1]}_b{args.batch}.onnx"
    if loaded.meta.trained:
        print(loaded.report.summary())
    else:
        print("WARNING: no --weights given: exporting RANDOM, UNTRAINED weights (the labels mean nothing)")
    res = export_onnx(loaded.model, loaded.meta, input_size=size, path=out, batch=args.batch,
                      with_logits=args.logits, verify=not args.no_verify)
    print(f"wrote {res.path} ({res.path.stat().st_size / 1e6:.1f} MB, sha256 {res.sha256[:12]})")
    print(f"  graph: frames uint8 {list(res.input_shape)} BGR -> labels uint8 {list(res.input_shape[:3])}; "
          f"{loaded.meta.num_classes} classes, opset 17")
    if not args.no_verify:
        print(f"  verified: ONNX Runtime vs PyTorch labels agree on {res.agreement:.4%} of pixels "
              f"({res.verify_frames} frames)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``rtseg-export``."""
    return run_main("rtseg-export", _run, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
