"""Turn a training run's best checkpoint into a shippable file (FP16 weights, same format)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rtseg.core.atomic import atomic_path
from rtseg.core.errors import UserInputError


def lineage_of(path: str | Path) -> list[dict[str, Any]]:
    """The training history of the weights file ``path``, oldest phase first.

    A run started with ``--init`` continues the history of the file it started
    from: this returns that file's own recorded lineage plus one entry for the
    file itself (its sha256, and for an rtseg-train checkpoint the iteration,
    val mIoU and the exact command). A public release checkpoint yields a single
    entry naming it. The result goes into ``extra["lineage"]`` of every
    checkpoint the run writes, so a shipped model says every command behind it
    even after the intermediate files are gone.
    """
    from rtseg.models.checkpoint import load_model

    loaded = load_model(path)
    extra = loaded.extra or {}
    cfg = extra.get("train_config") or {}
    entry: dict[str, Any] = {"file": Path(path).name, "sha256": loaded.meta.weights_sha256,
                             "weights": loaded.meta.weights}
    if cfg:
        entry.update(command=cfg.get("command"), iteration=extra.get("iteration"),
                     iters=cfg.get("iters"), val_miou=extra.get("val_miou"))
    return list(extra.get("lineage") or []) + [entry]


def export_best(src: str | Path, dest: str | Path, *, fp16: bool = True) -> str:
    """Copy the rtseg checkpoint ``src`` to ``dest`` without the training-only heads,
    floating-point tensors cast to FP16 when ``fp16`` (metadata and ``extra`` kept).

    BatchNorm statistics and weights survive FP16 casting well within the
    network's own tolerance; ``load_model`` casts them back to float32.
    Returns a one-line summary.
    """
    src, dest = Path(src), Path(dest)
    if not src.is_file():
        raise UserInputError(f"{src} does not exist: the run has not validated yet (see --eval-every; a run "
                             f"without --val-split ships its final.pt with --export-final)")
    obj = torch.load(src, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or "state_dict" not in obj:
        raise UserInputError(f"{src} is not an rtseg checkpoint")
    sd = obj["state_dict"]
    meta = obj.get("meta") or {}
    if obj.get("aux") and meta.get("model"):
        # Ship the inference network only: the auxiliary and detail heads are
        # training-time outputs that no deploy graph runs.
        from rtseg.models import create_model

        keep = set(create_model(meta["model"], len(meta["class_names"]), aux=False).state_dict())
        sd = {k: v for k, v in sd.items() if k in keep}
        obj = dict(obj, aux=False)
    extra = dict(obj.get("extra") or {})
    init = (extra.get("train_config") or {}).get("init")
    if init and "lineage" not in extra:
        # Runs made before lineage was recorded at start: read it now if the
        # --init file is still there (otherwise the card says the history is unknown).
        init_path = Path(init).expanduser()
        if init_path.is_file():
            extra["lineage"] = lineage_of(init_path)
        obj = dict(obj, extra=extra)
    if fp16:
        sd = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
    obj = dict(obj, state_dict=sd)
    with atomic_path(dest) as tmp:
        torch.save(obj, tmp)
    miou = extra.get("val_miou")
    size_mb = dest.stat().st_size / 1e6
    return (f"wrote {dest} ({size_mb:.1f} MB, {'fp16' if fp16 else 'fp32'} weights) from iteration "
            f"{extra.get('iteration', '?')}" + (f", val mIoU {100 * miou:.2f}%" if miou is not None else ""))


def model_card(path: str | Path) -> str:
    """Markdown summary of an rtseg checkpoint's validation results (for assets/README.md)."""
    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    extra = obj.get("extra") or {}
    meta = obj.get("meta") or {}
    per_class = extra.get("val_per_class_iou") or {}
    cfg = extra.get("train_config") or {}
    lines = [
        f"- model: `{meta.get('model')}`, {len(meta.get('class_names', []))} classes, input "
        f"{'x'.join(str(v) for v in meta.get('input_size') or [])} (HxW), dataset `{meta.get('dataset')}`",
        (f"- iteration {extra.get('iteration')} of a {cfg.get('iters')}-iteration schedule, "
         f"selected on the `{extra.get('val_split')}` split") if "val_split" in extra else
        (f"- the end of a fixed {cfg.get('iters')}-iteration schedule on `{extra.get('train_split')}` "
         f"({extra.get('train_frames')} frames), no checkpoint selection"),
        f"- val mIoU **{100 * extra['val_miou']:.2f}%**, pixel accuracy "
        f"{100 * extra['val_pixel_accuracy']:.2f}%" if "val_miou" in extra
        else "- not validated during training (evaluate it on held-out frames)",
        f"- command: `{cfg.get('command')}`" if cfg.get("command") else "- command: unknown",
    ]
    lineage = extra.get("lineage")
    if lineage:
        lines.append(f"- started from `{cfg.get('init')}`; the training phases before this one, oldest first:")
        for i, e in enumerate(lineage, 1):
            what = (f"iteration {e.get('iteration')} of {e.get('iters')}, val mIoU {100 * e['val_miou']:.2f}%"
                    if e.get("val_miou") is not None else (e.get("weights") or "no training record"))
            cmd = f": `{e['command']}`" if e.get("command") else ""
            lines.append(f"  {i}. `{e.get('file')}` (sha256 {str(e.get('sha256'))[:12]}, {what}){cmd}")
    elif cfg.get("init"):
        lines.append(f"- started from `{cfg.get('init')}` (its history was not recorded)")
    if per_class:
        lines += ["", "| class | val IoU % |", "|---|---|"]
        for name, v in per_class.items():
            lines.append(f"| {name} | {'n/a' if v is None else f'{100 * v:.2f}'} |")
    return "\n".join(lines)
