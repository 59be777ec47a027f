"""Every accuracy figure of a trained model's card, in one run over the val split.

    .venv/bin/python scripts/model_card_figures.py [CHECKPOINT] [--data ../shared/datasets/camvid]
                                                  [--limit N] [--json PATH]

For each way the model ships, on the same frames, against the ground truth
and against the FP32 ONNX labels:

- ``torch``: the checkpoint itself (FP16 storage loads as float32);
- ``onnxruntime``, ``openvino f32``: the FP32 deploy-graph ONNX;
- ``openvino bf16``: the same file with ``INFERENCE_PRECISION_HINT=bf16``;
- ``fp16``: the mixed-precision ONNX on OpenVINO f16 where the CPU has FP16
  arithmetic, otherwise with FP16 rounding emulated on ONNX Runtime (the
  table says which), with the NaN/Inf count of its logits;
- ``int8``: the Q/DQ ONNX calibrated on 32 train frames, ONNX Runtime INT8 kernels; its weights
  are 7-bit on a CPU without VNNI, where 8-bit ones saturate the kernels (``rtseg.core.cpu``), so
  the row measures the quantization rather than that (the table says which).

Prints a markdown table (the one in ``assets/README.md``): mIoU against
ground truth, its difference from the FP32 ONNX, pixel agreement with the
FP32 labels (mean and worst frame), and the mIoU against the FP32 labels (the
proxy ``rtseg-bench --parity`` must use on unlabelled video).

Everything runs on the calling thread; the backends are created and released here.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

@dataclass
class Column:
    """One way of running the model, accumulated frame by frame."""

    name: str
    how: str
    backend: Any  # rtseg.runtime.base.Backend, active while measuring
    gt: Any = None  # ConfusionMatrix vs ground truth
    proxy: Any = None  # ConfusionMatrix vs the FP32 ONNX labels
    agree: list[float] = field(default_factory=list)
    nonfinite: int | None = None


def measure(checkpoint: Path, data: Path, limit: int | None, workdir: Path) -> dict[str, Any]:
    from rtseg.benchmark.parity import fp16_candidate
    from rtseg.core.cpu import int8_saturates
    from rtseg.core.errors import UserInputError
    from rtseg.data.augment import resize_for_model
    from rtseg.data.datasets import open_dataset
    from rtseg.eval.evaluate import labels_to_size
    from rtseg.eval.metrics import ConfusionMatrix
    from rtseg.eval.parity import count_nonfinite, outputs
    from rtseg.export.onnx_export import export_onnx
    from rtseg.export.precision import convert_to_mixed_fp16
    from rtseg.export.quantize import quantize_int8
    from rtseg.models.checkpoint import load_model
    from rtseg.runtime.factory import create_backend

    loaded = load_model(checkpoint)
    meta = loaded.meta
    if meta.input_size is None:
        raise UserInputError(f"{checkpoint} records no input size; export it with rtseg-train --export-best")
    size = tuple(meta.input_size)
    val = open_dataset(data, "val")
    n = min(len(val), limit) if limit else len(val)

    fp32 = workdir / "fp32.onnx"
    fp32_logits = workdir / "fp32_logits.onnx"
    fp16 = workdir / "fp16.onnx"
    int8 = workdir / "int8.onnx"
    print(f"exporting {checkpoint.name} at {size[0]}x{size[1]} ...", flush=True)
    export_onnx(loaded.model, meta, input_size=size, path=fp32, verify=False)
    export_onnx(loaded.model, meta, input_size=size, path=fp32_logits, verify=False, with_logits=True)
    convert_to_mixed_fp16(fp32_logits, fp16)
    bits = 7 if int8_saturates() else 8
    quantize_int8(fp32, int8, calib_source=data / "train" / "images", max_frames=32, weight_bits=bits)

    fp16_backend, fp16_how = fp16_candidate(fp16)  # OpenVINO f16 where the CPU has FP16 arithmetic
    columns = [
        Column("torch f32", "the checkpoint, PyTorch CPU", create_backend("torch", checkpoint)),
        Column("onnxruntime f32", "FP32 ONNX, ONNX Runtime", create_backend("onnxruntime", fp32)),
        Column("openvino f32", "FP32 ONNX, OpenVINO INFERENCE_PRECISION_HINT=f32",
               create_backend("openvino", fp32, precision="f32")),
        Column("openvino bf16", "FP32 ONNX, OpenVINO INFERENCE_PRECISION_HINT=bf16",
               create_backend("openvino", fp32, precision="bf16")),
        Column("fp16", fp16_how, fp16_backend, nonfinite=0),
        Column("int8", f"Q/DQ INT8 ONNX ({bits}-bit weights, 32 train frames), ONNX Runtime",
               create_backend("onnxruntime", int8)),
    ]
    reference = columns[1].backend
    c = val.info.num_classes
    for col in columns:
        col.gt = ConfusionMatrix(c, val.info.ignore_index)
        col.proxy = ConfusionMatrix(c)
    t0 = time.perf_counter()
    try:
        for col in columns:
            col.backend.activate()
        for i in range(n):
            frame = resize_for_model(val.load_image(i), size)[None]
            gt = val.load_label(i)
            ref = reference.infer(frame)
            for col in columns:
                labels, logits = outputs(col.backend, frame)
                if col.nonfinite is not None and logits is not None:
                    col.nonfinite += count_nonfinite(logits)
                col.gt.update(labels_to_size(labels[0], gt.shape), gt)
                col.proxy.update(labels, ref)
                col.agree.append(float((labels == ref).mean()))
            if (i + 1) % 10 == 0 or i + 1 == n:
                print(f"  {i + 1}/{n} frames ({time.perf_counter() - t0:.0f} s)", flush=True)
    finally:
        for col in columns:
            col.backend.deactivate()

    names = val.info.class_names
    base = columns[1].gt.result(names).miou
    rows = []
    for col in columns:
        m = col.gt.result(names)
        p = col.proxy.result(names)
        rows.append({
            "name": col.name, "how": col.how, "miou": m.miou, "pixel_accuracy": m.pixel_accuracy,
            "mean_class_accuracy": m.mean_class_accuracy, "per_class_iou": m.per_class(),
            "miou_vs_fp32_onnx_points": 100 * (m.miou - base),
            "agreement_mean": float(np.mean(col.agree)), "agreement_worst": float(np.min(col.agree)),
            "miou_vs_fp32_labels": p.miou, "per_class_iou_vs_fp32_labels": p.per_class(),
            "nonfinite_logits": col.nonfinite,
        })
    return {"checkpoint": str(checkpoint), "input_size": list(size), "frames": n,
            "model": meta.model, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    h, w = result["input_size"]
    lines = [f"{result['model']} at {h}x{w}, {result['frames']} CamVid val frames "
             "(`scripts/model_card_figures.py`):", "",
             "| run | mIoU vs ground truth | vs FP32 ONNX | labels = FP32 (mean / worst frame) "
             "| mIoU vs FP32 labels | how |",
             "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        extra = f"; NaN/Inf in logits: {r['nonfinite_logits']}" if r["nonfinite_logits"] is not None else ""
        lines.append(f"| {r['name']} | {100 * r['miou']:.2f}% | {r['miou_vs_fp32_onnx_points']:+.2f} "
                     f"| {100 * r['agreement_mean']:.2f}% / {100 * r['agreement_worst']:.2f}% "
                     f"| {100 * r['miou_vs_fp32_labels']:.2f}% | {r['how']}{extra} |")
    names = list(result["rows"][0]["per_class_iou"])
    lines += ["", "| class | " + " | ".join(r["name"] for r in result["rows"]) + " |",
              "|---|" + "---|" * len(result["rows"])]
    for cls in names:
        vals = []
        for r in result["rows"]:
            v = r["per_class_iou"][cls]
            vals.append("n/a" if v is None else f"{100 * v:.2f}")
        lines.append(f"| {cls} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", nargs="?", default=str(REPO / "assets" / "stdc_efflite0_camvid.pt"))
    p.add_argument("--data", default=str(REPO.parent / "shared" / "datasets" / "camvid"))
    p.add_argument("--limit", type=int, help="first N val frames only (a quick check)")
    p.add_argument("--json", help="also write the figures as JSON")
    args = p.parse_args(argv)
    from rtseg.core.errors import RtsegError

    ckpt, data = Path(args.checkpoint), Path(args.data)
    if not ckpt.is_file():
        print(f"error: checkpoint {ckpt} not found; pass a trained rtseg checkpoint", file=sys.stderr)
        return 2
    if not (data / "val" / "images").is_dir() or not (data / "train" / "images").is_dir():
        print(f"error: {data} is not a CamVid-layout dataset (train/ and val/ with images/ and labels/); "
              "pass --data", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="rtseg-card-") as tmp:
            result = measure(ckpt, data, args.limit, Path(tmp))
    except RtsegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown(result))
    if args.json:
        from rtseg.core.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
