"""Weight averaging of checkpoints from one training lineage ("model soup", SWA-style).

Runs fine-tuned from the same starting weights stay in one loss basin, and the
mean of their weights is often better than any one of them. Averaging is only
meaningful for such runs: the files must hold the same model with the same
tensors (names and shapes), which ``average_checkpoints`` checks.

BatchNorm running statistics are averaged like the weights. Re-estimating them
on un-augmented training frames instead was measured on the bundled CamVid
model and lost 3.4 points of val mIoU (the network was trained on random-scale
crops, whose statistics differ), so the averaged statistics are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rtseg.core.atomic import atomic_path
from rtseg.core.errors import UserInputError
from rtseg.core.hashing import file_sha256
from rtseg.models.checkpoint import RTSEG_FORMAT as _CHECKPOINT_FORMAT
from rtseg.train.config import STATE_FORMAT as _STATE_FORMAT
from rtseg.train.export import lineage_of


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserInputError(f"{path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserInputError(f"cannot read {path} ({type(e).__name__}); pass rtseg checkpoints "
                             f"(best.pt, rtseg-train --export-best output) or rtseg-train last.pt files") from None
    fmt = obj.get("format") if isinstance(obj, dict) else None
    if fmt not in (_CHECKPOINT_FORMAT, _STATE_FORMAT):
        raise UserInputError(f"{path} is neither an rtseg checkpoint nor an rtseg-train resume state")
    return obj


def _weights(obj: dict[str, Any]) -> dict[str, torch.Tensor]:
    return obj["state_dict"] if obj["format"] == _CHECKPOINT_FORMAT else obj["model"]


def average_checkpoints(sources: list[str | Path], dest: str | Path) -> str:
    """Write the mean of ``sources``' weights to ``dest`` as an rtseg checkpoint.

    ``sources[0]`` must be an rtseg checkpoint: its metadata (classes, palette,
    normalisation, input size) and ``aux`` flag go to ``dest``. The others may
    also be rtseg-train resume states (``last.pt``). Every file must hold the
    same tensor names and shapes; floating-point tensors are averaged and
    stored in float32 (BatchNorm statistics included), integer ones (BatchNorm batch
    counters) are taken from the first file. ``extra["averaged_from"]`` names
    each source with its sha256; the first file's lineage is kept. Written
    atomically. Returns a one-line summary.
    """
    paths = [Path(p).expanduser() for p in sources]
    if len(paths) < 2:
        raise UserInputError("averaging needs at least two checkpoints")
    objs = [_read(p) for p in paths]
    if objs[0]["format"] != _CHECKPOINT_FORMAT:
        raise UserInputError(f"{paths[0]} is a resume state; put an rtseg checkpoint (e.g. the run's best.pt) "
                             f"first, its metadata goes into the averaged file")
    first = _weights(objs[0])
    for p, o in zip(paths[1:], objs[1:], strict=True):
        sd = _weights(o)
        if set(sd) != set(first):
            extra_keys = sorted(set(sd) ^ set(first))
            raise UserInputError(f"{p} holds other tensors than {paths[0]} (e.g. {extra_keys[0]}): average "
                                 f"checkpoints of the same model, all with or all without training heads")
        bad = next((k for k in first if sd[k].shape != first[k].shape), None)
        if bad is not None:
            raise UserInputError(f"{p}: {bad} has shape {tuple(sd[bad].shape)}, {paths[0]} has "
                                 f"{tuple(first[bad].shape)}; average checkpoints of the same model")
    out: dict[str, torch.Tensor] = {}
    for k, v in first.items():
        if v.is_floating_point():
            out[k] = torch.stack([_weights(o)[k].float() for o in objs]).mean(dim=0)
        else:
            out[k] = v.clone()
    # The sources' scores and training command do not describe the mean; the
    # history of the first file (its own phases, then the file) does.
    extra: dict[str, Any] = {"lineage": lineage_of(paths[0])}
    extra["averaged_from"] = [{"file": str(p), "sha256": file_sha256(p)} for p in paths]
    result = {key: objs[0][key] for key in ("format", "version", "meta", "aux")}
    result.update(state_dict=out, extra=extra)
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        torch.save(result, tmp)
    return f"wrote {dest}: mean of {len(paths)} checkpoints (fp32 weights)"
