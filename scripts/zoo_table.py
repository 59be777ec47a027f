"""The zoo table of docs/zoo.md: params and GFLOPs at 360x480 of every registered model, with the
OpenVINO f32 / bf16 inference-only latency that ``scripts/bench_seed_zoo.sh`` measured.

    .venv/bin/python scripts/zoo_table.py out/zoo_bench > out/zoo_bench/table.md

GFLOPs: torch's FlopCounterMode on one 3x360x480 frame through the inference graph (the model as
exported, heads for training dropped), counting a multiply-add as two operations; elementwise ops,
pooling and resizes are not counted (they are small beside the convolutions here). Latency: the
median of the inference-only loop of each ``rtseg-bench`` JSON (no decode, resize or colourise).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from rtseg.models import create_model, list_models

# Class count each model was benchmarked with (torchvision layouts: the 21 VOC classes).
VOC = {"fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
       "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"}


PAPERS = {
    "stdc1": "Fan et al., CVPR 2021", "stdc2": "Fan et al., CVPR 2021",
    "bisenetv1": "Yu et al., ECCV 2018", "bisenetv2": "Yu et al., IJCV 2021",
    "stdc_efflite0": "STDC-Seg head on EfficientNet-Lite (Tan & Le 2019)",
    "stdc_efflite1": "STDC-Seg head on EfficientNet-Lite (Tan & Le 2019)",
    "stdc_efflite2": "STDC-Seg head on EfficientNet-Lite (Tan & Le 2019)",
    "lraspp_mobilenet_v3_large": "Howard et al., ICCV 2019",
    "deeplabv3_mobilenet_v3_large": "Chen et al. 2017 on Howard et al. 2019",
    "deeplabv3_resnet50": "Chen et al. 2017", "deeplabv3_resnet101": "Chen et al. 2017",
    "fcn32s": "Long et al., CVPR 2015", "fcn16s": "Long et al., CVPR 2015", "fcn8s": "Long et al., CVPR 2015",
    "fcn_resnet50": "FCN head on ResNet (torchvision)", "fcn_resnet101": "FCN head on ResNet (torchvision)",
    "segnet": "Badrinarayanan et al., TPAMI 2017", "segnet_basic": "Badrinarayanan et al., TPAMI 2017",
    "deconvnet": "Noh et al., ICCV 2015", "dilation8": "Yu & Koltun, ICLR 2016",
}


def cost(name: str, classes: int) -> tuple[float, float]:
    """(params in millions, GFLOPs at 360x480) of the inference graph."""
    # On the meta device: shapes and counts only, no arithmetic (the VGG models take seconds a frame).
    with torch.device("meta"):
        model = create_model(name, num_classes=classes).eval()
        x = torch.zeros(1, 3, 360, 480)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return params, counter.get_total_flops() / 1e9


def latency(out: Path, name: str) -> dict[str, float]:
    f = out / f"{name}.json"
    if not f.is_file():
        return {}
    rep = json.loads(f.read_text())
    return {r["label"]: r["infer_only"]["p50"] for r in rep["runs"]}


def main(out: Path) -> None:
    print("| model | paper | classes | params (M) | GFLOPs | OpenVINO f32 ms | OpenVINO bf16 ms |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in list_models():
        classes = 21 if name in VOC else 11
        params, gflops = cost(name, classes)
        ms = latency(out, name)
        f32 = ms.get("openvino f32")
        bf16 = ms.get("openvino bf16")
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        print(f"| `{name}` | {PAPERS.get(name, '?')} | {classes} | {params:.1f} | {gflops:.1f} | {fmt(f32)} | {fmt(bf16)} |", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/zoo_bench"))
