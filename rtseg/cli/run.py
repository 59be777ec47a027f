"""``rtseg-run``: the headless job. Segment a video with the live pipeline and
write the overlay video, then print a summary.

With no arguments it plays the bundled CamVid sample with the bundled model
(``assets/``), exporting (or reusing) its ONNX in ``engines/``.

    rtseg-run                                    # bundled sample + bundled model
    rtseg-run clip.mp4 --model bisenetv2 --weights model_final_v2_city.pth --input-size 512x1024

Threads: the pipeline's capture and inference threads produce results; this
module's main thread colourises, blends and encodes them (so writing the
video never slows inference down beyond the file's own pace).
"""

from __future__ import annotations

import argparse
import queue
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rtseg.cli.common import add_model_args, run_main
from rtseg.core.errors import RtsegError, UserInputError
from rtseg.runtime.choice import (
    BUNDLED_MODEL,
    FALLBACK_MODEL,
    SAMPLE_CLIP,
    ModelChoice,
    make_backend_factory,
    resolve_model,
)

# The model choice lives in rtseg.runtime.choice so the GUI shares it (it may not import the CLI);
# the names stay importable from here.
__all__ = ["ModelChoice", "resolve_model", "make_backend_factory", "SAMPLE_CLIP", "BUNDLED_MODEL",
           "FALLBACK_MODEL", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtseg-run",
        description="Segment a video headless on the live pipeline and write the overlay video.",
    )
    p.add_argument("source", nargs="?", default=str(SAMPLE_CLIP),
                   help="video file, image folder, camera index, stream URL or synthetic:WxH "
                        "(default: the bundled CamVid sample)")
    add_model_args(p, need_size=False)
    p.add_argument("--onnx", help="an exported rtseg ONNX file to run instead of --model/--weights")
    p.add_argument("--backend", default="openvino", help="onnxruntime | openvino | torch (default openvino)")
    p.add_argument("--precision", default="f32", help="f32 | bf16 (OpenVINO); default f32")
    p.add_argument("--threads", type=int, help="inference threads (default: the backend's choice)")
    p.add_argument("--output", "-o", default="out/overlay.mp4", help="overlay video to write (default out/overlay.mp4)")
    p.add_argument("--alpha", type=float, default=0.5, help="mask opacity 0..1 (default 0.5)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames (needed for cameras and streams)")
    p.add_argument("--smoothing", type=int, default=0, help="temporal hysteresis in frames (0 = off)")
    return p


def _run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from rtseg.benchmark.report import StageStats
    from rtseg.core.atomic import atomic_path
    from rtseg.pipeline.overlay import blend, class_shares, colorize, palette_lut
    from rtseg.pipeline.sources import open_source
    from rtseg.pipeline.worker import Pipeline

    if not 0.0 <= args.alpha <= 1.0:
        raise UserInputError(f"--alpha must be between 0 and 1, got {args.alpha}")
    output = Path(args.output)
    if output.suffix.lower() not in (".mp4", ".avi"):
        raise UserInputError(f"--output {output} must end in .mp4 or .avi")
    source = open_source(args.source)  # fails fast, before any export, on a bad path
    choice = resolve_model(args)
    factory = make_backend_factory(choice, args.backend, args.precision, args.threads)

    results: queue.Queue = queue.Queue(maxsize=8)
    errors: list[RtsegError] = []
    ended = object()

    def on_error(e: RtsegError) -> None:  # inference thread: record the error, then end the wait
        errors.append(e)
        results.put(ended)

    pipe = Pipeline(on_result=results.put, on_error=on_error, on_end=lambda: results.put(ended))
    fps = source.fps or 25.0
    is_live = source.is_live
    if is_live and not args.max_frames:
        raise UserInputError(f"{source.describe()} is live: pass --max-frames N to say when to stop")
    n_done = 0
    lat, infer_s, pre_s, dec_s, post_s = [], [], [], [], []
    shares = None
    meta = None
    info = None
    t_first = t_last = None
    with atomic_path(output) as tmp:
        writer = None
        pipe.start(source, factory, mode="realtime" if is_live else "benchmark", smoothing=args.smoothing)
        try:
            while True:
                item = results.get()
                if item is ended:
                    break
                r = item
                t0 = time.perf_counter()
                if meta is None:
                    meta = r.meta
                    info = pipe.backend_info
                    lut = palette_lut(meta.palette)
                    shares = np.zeros(meta.num_classes)
                    if not meta.trained:
                        print("WARNING: this model has RANDOM, UNTRAINED weights: the colours mean nothing. "
                              "Train one with rtseg-train or pass --weights.", file=sys.stderr)
                img = r.frame.image
                if writer is None:
                    h, w = img.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
                    if not writer.isOpened():
                        raise UserInputError(f"cannot write video {output}; check the folder is writable")
                writer.write(blend(img, colorize(r.labels, lut), args.alpha))
                shares += class_shares(r.labels, meta.num_classes)
                t1 = time.perf_counter()
                n_done += 1
                t_first = t_first or r.t_result
                t_last = t1
                lat.append(r.latency_s)
                infer_s.append(r.infer_s)
                pre_s.append(r.preprocess_s)
                dec_s.append(r.decode_s)
                post_s.append(t1 - t0)
                if args.max_frames and n_done >= args.max_frames:
                    break
        finally:
            pipe.stop()
            if writer is not None:
                writer.release()
        if errors:
            raise errors[0]
        if n_done == 0:
            raise UserInputError(f"{args.source} produced no frames")

    assert meta is not None and shares is not None
    wall = (t_last - t_first) if (t_last and t_first and n_done > 1) else float("nan")
    print(f"\nwrote {output}: {n_done} frames with the {meta.model} overlay")
    print(f"model: {meta.model}, {meta.num_classes} classes, weights: {meta.weights or 'RANDOM (untrained)'}")
    if info is not None:
        print(f"backend: {info.backend} on {info.device}, precision {info.precision}, threads {info.threads or 'default'}")
    print(f"throughput: {(n_done - 1) / wall:.1f} FPS over {n_done} frames (decode, inference and encode overlapped)")
    print(f"{'latency (ms)':<14}{'mean':>8}{'p50':>8}{'p90':>8}{'p99':>8}")
    for name, vals in (("decode", dec_s), ("preprocess", pre_s), ("infer", infer_s),
                       ("overlay+encode", post_s), ("capture->result", lat)):
        s = StageStats.of(vals)
        print(f"  {name:<16}{s.mean_ms:6.1f}{s.p50_ms:8.1f}{s.p90_ms:8.1f}{s.p99_ms:8.1f}")
    top = np.argsort(shares)[::-1][:5]
    print("pixel share: " + ", ".join(f"{meta.class_names[i]} {shares[i] / n_done:.1%}" for i in top))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``rtseg-run``."""
    return run_main("rtseg-run", _run, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
