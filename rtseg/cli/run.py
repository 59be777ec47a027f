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
from dataclasses import dataclass
from pathlib import Path

from rtseg.cli.common import add_model_args, run_main
from rtseg.core.errors import RtsegError, UserInputError

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SAMPLE_CLIP = ASSETS / "camvid_0016E5_val.mp4"
BUNDLED_MODEL = ASSETS / "stdc1_camvid.pt"
#: Used when no trained model is bundled yet: the CamVid input size, random weights.
FALLBACK_MODEL = ("stdc1", 11, (360, 480))


@dataclass(frozen=True)
class ModelChoice:
    model: str | None
    weights: Path | None
    num_classes: int | None
    input_size: tuple[int, int] | None
    onnx: Path | None


def resolve_model(args: argparse.Namespace) -> ModelChoice:
    """What the user asked for, or the bundled default (trained if shipped, else random STDC1)."""
    from rtseg.models.deploy import parse_size

    size = parse_size(args.input_size) if args.input_size else None
    if args.onnx:
        return ModelChoice(None, None, None, None, Path(args.onnx))
    if args.model or args.weights:
        if args.weights and not Path(args.weights).is_file():
            raise UserInputError(f"weights file {args.weights} does not exist")
        return ModelChoice(args.model, Path(args.weights) if args.weights else None, args.num_classes, size, None)
    if BUNDLED_MODEL.is_file():
        return ModelChoice(None, BUNDLED_MODEL, None, size, None)
    name, n, default_size = FALLBACK_MODEL
    return ModelChoice(name, None, n, size or default_size, None)


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


def make_backend_factory(choice: ModelChoice, backend: str, precision: str, threads: int | None):
    """(factory, description): the factory is called on the pipeline's inference thread."""
    from rtseg.export.artifacts import ensure_onnx
    from rtseg.runtime.factory import ONNX_BACKENDS, canonical_kind, create_backend

    kind = canonical_kind(backend)
    if kind in ONNX_BACKENDS:
        onnx_path = choice.onnx
        if onnx_path is None:
            onnx_path, fresh = ensure_onnx(choice.model, choice.weights, input_size=choice.input_size,
                                           num_classes=choice.num_classes)
            print(("exported " if fresh else "using ") + str(onnx_path))
        return lambda: create_backend(kind, onnx_path, precision=precision, threads=threads)
    if choice.onnx is not None:
        raise UserInputError(f"--onnx runs on onnxruntime or openvino, not {kind}")
    return lambda: create_backend(kind, choice.weights, precision=precision, threads=threads,
                                  model=choice.model, num_classes=choice.num_classes, input_size=choice.input_size)


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

    pipe = Pipeline(on_result=results.put, on_error=lambda e: (errors.append(e), results.put(ended)),
                    on_end=lambda: results.put(ended))
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
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
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
