"""Learning-rate schedule and optimizer parameter groups.

The LR is a pure function of the iteration (linear warm-up, then poly decay
over the whole planned run), so a resumed run continues on exactly the same
curve: nothing but the iteration number has to be saved.
"""

from __future__ import annotations

import torch
from torch import nn


def poly_lr(it: int, total: int, base_lr: float, *, power: float = 0.9, warmup_iters: int = 0,
            warmup_ratio: float = 0.1) -> float:
    """LR for iteration ``it`` (0-based) of ``total``.

    Warm-up rises linearly from ``warmup_ratio * base_lr`` to ``base_lr`` over
    ``warmup_iters``; afterwards ``base_lr * (1 - progress) ** power`` with the
    progress measured over the iterations after warm-up.
    """
    if total <= 0:
        raise ValueError("total iterations must be positive")
    if it < warmup_iters:
        return base_lr * (warmup_ratio + (1 - warmup_ratio) * it / warmup_iters)
    span = max(1, total - warmup_iters)
    progress = min(1.0, (it - warmup_iters) / span)
    return base_lr * (1.0 - progress) ** power


def param_groups(model: nn.Module, weight_decay: float, *, encoder: nn.Module | None = None,
                 encoder_lr_mult: float = 1.0) -> list[dict]:
    """Weights of convs/linears get ``weight_decay``; norm weights and all biases
    (1-D parameters) get none, since decaying them only shrinks scales and offsets
    the next layer would have to undo.

    With ``encoder`` and ``encoder_lr_mult != 1``, the encoder's parameters form
    their own two groups whose LR is ``encoder_lr_mult`` times the schedule's: a
    pretrained encoder is fine-tuned gently while the new heads learn at full rate.
    Every group carries ``lr_mult`` (read by ``set_lr``).
    """
    enc_ids = {id(p) for p in encoder.parameters()} if encoder is not None and encoder_lr_mult != 1.0 else set()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        groups.setdefault((id(p) in enc_ids, p.ndim > 1), []).append(p)
    out = []
    for (in_enc, decays) in ((False, True), (False, False), (True, True), (True, False)):
        params = groups.get((in_enc, decays), [])
        if params or not in_enc:  # the two head groups always exist (tests and old states rely on it)
            out.append({"params": params, "weight_decay": weight_decay if decays else 0.0,
                        "lr_mult": encoder_lr_mult if in_enc else 1.0})
    return out


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)
