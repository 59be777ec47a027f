"""Tune the CRF refinement's defaults (rtseg.models.crf.CRFParams) on a dataset split.

    nice -n 10 .venv/bin/python scripts/tune_crf.py assets/stdc1_camvid.pt --split val --json out/crf_tune.json

Runs the checkpoint's deploy graph once per frame (logits kept in memory as FP16),
then a coordinate search over the CRF options: each round tries every listed value
of one option with the others fixed, keeps the best mIoU, and moves on; it stops
when a full round changes nothing. Prints every configuration's mIoU (and the
unrefined baseline) and writes them to ``--json``. The chosen values become the
defaults in ``CRFParams`` by hand, with the command and result in docs/zoo.md.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from rtseg.core.atomic import atomic_write_text
from rtseg.data.augment import resize_for_model
from rtseg.data.datasets import DEFAULT_CAMVID_ROOT, open_dataset, require_nonempty
from rtseg.eval.evaluate import labels_to_size
from rtseg.eval.metrics import ConfusionMatrix
from rtseg.models.checkpoint import load_model
from rtseg.models.crf import CRFParams, MeanFieldCRF
from rtseg.models.deploy import DeployGraph

GRID = {
    # A coarse cell stands for downsample^2 pixels and a window holds up to window^2 cells, so a
    # message sums hundreds of kernel values: useful weights are small.
    "w_bilateral": (0.002, 0.005, 0.01, 0.02, 0.05),
    "theta_beta": (5.0, 10.0, 20.0),
    "w_gaussian": (0.0, 0.002, 0.005),
    "theta_alpha": (10.0, 20.0, 40.0),
    "downsample": (2, 4),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights")
    p.add_argument("--data", default=DEFAULT_CAMVID_ROOT)
    p.add_argument("--split", default="val")
    p.add_argument("--input-size", default="360x480")
    p.add_argument("--limit", type=int)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(1)
    h, w = (int(v) for v in args.input_size.split("x"))
    loaded = load_model(args.weights)
    graph = DeployGraph(loaded.model, loaded.meta, with_logits=True).eval()
    ds = require_nonempty(open_dataset(args.data, args.split, "auto"))
    n = min(len(ds), args.limit or len(ds))
    frames, logits, gts = [], [], []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(n):
            f = resize_for_model(ds.load_image(i), (h, w))
            _, lg = graph(torch.from_numpy(f[None].copy()))
            frames.append(f)
            logits.append(lg.half())
            gts.append(ds.load_label(i))
    print(f"{n} frames of {args.split}: logits in {time.perf_counter() - t0:.0f} s")

    def miou(params: CRFParams | None) -> float:
        cm = ConfusionMatrix(ds.info.num_classes, ds.info.ignore_index)
        crf = MeanFieldCRF(params) if params is not None else None
        with torch.inference_mode():
            for f, lg, gt in zip(frames, logits, gts, strict=True):
                x = lg.float()
                if crf is not None:
                    x = crf(x, torch.from_numpy(f[None].copy()).permute(0, 3, 1, 2).float())
                pred = x.argmax(1)[0].to(torch.uint8).numpy()
                cm.update(labels_to_size(pred, gt.shape), gt)
        return float(cm.result(ds.info.class_names).miou)

    results: list[dict] = []
    base = miou(None)
    print(f"unrefined: mIoU {100 * base:.2f}")
    best = CRFParams(w_bilateral=0.01, theta_alpha=20.0, theta_beta=10.0, w_gaussian=0.0, theta_gamma=6.0)
    best_score = miou(best)
    results.append({"params": best.to_dict(), "miou": best_score})
    print(f"start {best.describe()}: {100 * best_score:.2f}")
    for _ in range(args.rounds):
        changed = False
        for key, values in GRID.items():
            for v in values:
                if getattr(best, key) == v:
                    continue
                cand = replace(best, **{key: v})
                t = time.perf_counter()
                score = miou(cand)
                results.append({"params": cand.to_dict(), "miou": score})
                print(f"  {key}={v}: {100 * score:.2f} ({time.perf_counter() - t:.0f} s)", flush=True)
                if score > best_score + 1e-5:
                    best, best_score, changed = cand, score, True
            print(f"best after {key}: {best.describe()}: {100 * best_score:.2f}", flush=True)
        if not changed:
            break
    print(f"unrefined {100 * base:.2f} -> best {100 * best_score:.2f}: {best.describe()}")
    if args.json:
        atomic_write_text(Path(args.json), json.dumps({"weights": args.weights, "split": args.split, "frames": n,
                                                       "unrefined_miou": base, "best": best.to_dict(),
                                                       "best_miou": best_score, "tried": results}, indent=1))


if __name__ == "__main__":
    main()
