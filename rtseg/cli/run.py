"""``rtseg-run``: the headless job. Segment a video with the live pipeline and
write the overlay video, then print a summary.

With no arguments it plays the bundled CamVid sample with the bundled model
(``assets/``), exporting (or reusing) its ONNX in ``engines/``.

    rtseg-run                                    # bundled sample + bundled model
    rtseg-run clip.mp4 --model bisenetv2 --weights model_final_v2_city.pth --input-size 512x1024
    rtseg-run clip.mp4 --engine engines/stdc1_....engine          # a TensorRT engine (needs TensorRT)

Threads: the pipeline's capture and inference threads produce results; this
module's main thread is the result sink (``rtseg.pipeline.headless``): it
colourises, blends and encodes them, so writing the video never slows
inference down beyond the file's own pace. ``rtseg-bench`` runs the same
code, so both report the same stages.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtseg.cli.common import add_artifact_args, add_backend_args, add_model_args, run_main
from rtseg.core.errors import UserInputError
from rtseg.resolve.model import BUNDLED_MODEL, FALLBACK_MODEL, SAMPLE_CLIP, ModelChoice, resolve_model

# The model choice lives in rtseg.resolve so the GUI shares it (it may not import the CLI);
# the names stay importable from here.
__all__ = ["ModelChoice", "resolve_model", "SAMPLE_CLIP", "BUNDLED_MODEL", "FALLBACK_MODEL", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtseg-run",
        description="Segment a video headless on the live pipeline and write the overlay video.",
    )
    p.add_argument("source", nargs="?", default=str(SAMPLE_CLIP),
                   help="video file, image folder, camera index, stream URL or synthetic:WxH "
                        "(default: the bundled CamVid sample)")
    add_model_args(p, need_size=False)
    add_artifact_args(p)
    add_backend_args(p)
    p.add_argument("--output", "-o", default="out/overlay.mp4", help="overlay video to write (default out/overlay.mp4)")
    p.add_argument("--alpha", type=float, default=0.5, help="mask opacity 0..1 (default 0.5)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames (needed for cameras and streams)")
    p.add_argument("--smoothing", type=int, default=0, help="temporal hysteresis in frames (0 = off)")
    return p


def _run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from rtseg.core.atomic import atomic_path
    from rtseg.pipeline.headless import run_headless
    from rtseg.pipeline.overlay import blend, class_shares, colorize, palette_lut
    from rtseg.pipeline.sources import open_source
    from rtseg.pipeline.stats import format_stage_table
    from rtseg.resolve.backend import resolve

    if not 0.0 <= args.alpha <= 1.0:
        raise UserInputError(f"--alpha must be between 0 and 1, got {args.alpha}")
    if args.max_frames is not None and args.max_frames < 1:
        raise UserInputError(f"--max-frames must be at least 1, got {args.max_frames}")
    output = Path(args.output)
    if output.suffix.lower() not in (".mp4", ".avi"):
        raise UserInputError(f"--output {output} must end in .mp4 or .avi")
    source = open_source(args.source)  # fails fast, before any export, on a bad path
    try:
        if source.is_live and not args.max_frames:
            raise UserInputError(f"{source.describe()} is live: pass --max-frames N to say when to stop")
        # A file runs in benchmark mode (every frame, as fast as possible): auto may pick two streams.
        res = resolve(resolve_model(args), args.backend, args.precision, threads=args.threads,
                      report=lambda s: print(s, file=sys.stderr), throughput=not source.is_live)
    except BaseException:
        source.close()
        raise
    fps = source.fps or 25.0
    is_live = source.is_live
    state: dict[str, Any] = {"writer": None, "shares": None, "lut": None, "frames": 0}

    with atomic_path(output) as tmp:
        def consume(r: Any) -> None:  # main thread: the pipeline's result sink
            if state["lut"] is None:
                state["lut"] = palette_lut(r.meta.palette)
                state["shares"] = np.zeros(r.meta.num_classes)
                if not r.meta.trained:
                    print("WARNING: this model has RANDOM, UNTRAINED weights: the colours mean nothing. "
                          "Train one with rtseg-train or pass --weights.", file=sys.stderr)
            img = r.frame.image
            if state["writer"] is None:
                h, w = img.shape[:2]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise UserInputError(f"cannot write video {output}; check the folder is writable")
                state["writer"] = writer
            state["writer"].write(blend(img, colorize(r.labels, state["lut"]), args.alpha))
            state["shares"] += class_shares(r.labels, r.meta.num_classes)
            state["frames"] += 1

        try:
            rep = run_headless(source, res.factory, consume, mode="realtime" if is_live else "benchmark",
                               max_results=args.max_frames, smoothing=args.smoothing)
        finally:
            if state["writer"] is not None:
                state["writer"].release()
        if rep.results == 0:
            raise UserInputError(f"{args.source} produced no frames")

    meta, info, n_done, shares = rep.meta, rep.backend, rep.results, state["shares"]
    assert meta is not None and shares is not None
    print(f"\nwrote {output}: {n_done} frames with the {meta.model} overlay")
    print(f"model: {meta.model}, {meta.num_classes} classes, weights: {meta.weights or 'RANDOM (untrained)'}")
    if info is not None:
        print(f"backend: {info.backend} on {info.device}, precision {info.precision_text}, "
              f"threads {info.threads or 'default'}")
    print(f"throughput: {rep.fps:.1f} FPS over {n_done} frames (decode, inference and encode overlapped)"
          + (f", dropped {rep.dropped}" if rep.dropped else ""))
    print("stages (postprocess = overlay + encode on this thread; end_to_end = decode start -> written):")
    print("\n".join(format_stage_table(rep.stages)))
    if not rep.stopped_cleanly:
        print("WARNING: the pipeline's threads did not stop within their timeout", file=sys.stderr)
    top = np.argsort(shares)[::-1][:5]
    print("pixel share: " + ", ".join(f"{meta.class_names[i]} {shares[i] / n_done:.1%}" for i in top))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``rtseg-run``."""
    return run_main("rtseg-run", _run, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
