"""Description of a public release checkpoint layout.

Each model family file defines the ``ReleaseFormat`` objects for the public
weights of its family; ``rtseg.models.checkpoint`` detects which one a file
has and converts it into a state_dict the family's model loads strictly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Converted:
    """Result of converting a release state_dict.

    ``state_dict`` loads strictly into ``create_model(model, num_classes, aux=aux)``.
    ``dropped`` maps a human reason ("ImageNet classifier", "alias of
    cp.backbone.features") to the keys removed for it.
    """

    model: str
    num_classes: int
    aux: bool
    state_dict: StateDict
    dropped: dict[str, list[str]]


@dataclass(frozen=True)
class ReleaseFormat:
    """One public checkpoint layout (e.g. the official STDC1-Seg release files)."""

    name: str  # shown to users, e.g. "official STDC-Seg release (STDC1)"
    model: str  # registry name the file loads into
    detect: Callable[[Mapping[str, torch.Tensor]], bool]  # cheap check on key names
    convert: Callable[[Mapping[str, torch.Tensor]], Converted]  # raises CheckpointError
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: str = "RGB"
    dataset: str = "cityscapes"


#: ``Converted.dropped`` reason under which a converter reports the
#: ``num_batches_tracked`` buffers it had to create (set to 0) because the file
#: lacked them. Strict loading needs them; their value only matters for
#: BatchNorm with ``momentum=None``, which no zoo model uses.
FILLED_NUM_BATCHES = "filled: num_batches_tracked missing (set to 0)"


def model_layout(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a model's state_dict (what a converter checks a file against)."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def conform_state_dict(sd: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], *,
                       layout: str) -> tuple[StateDict, dict[str, list[str]]]:
    """Check ``sd`` against the key/shape layout a model expects.

    Returns the state_dict in the model's key order and the keys it filled
    (missing ``num_batches_tracked``, reported under ``FILLED_NUM_BATCHES``).
    Any other missing key, unexpected key or shape mismatch raises a one-line
    ``CheckpointError`` naming the first few, so a damaged or foreign file is
    refused before ``load_state_dict`` would report it less readably.
    """
    from rtseg.core.errors import CheckpointError

    def few(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"checkpoint looks like the {layout} but lacks {len(missing)} key(s): "
                              f"{few(missing)}; the file is incomplete or a different variant")
    unexpected = [k for k in sd if k not in expected]
    if unexpected:
        raise CheckpointError(f"checkpoint looks like the {layout} but has {len(unexpected)} unknown key(s): "
                              f"{few(unexpected)}; it is a different variant of the network")
    bad = [f"{k} {tuple(sd[k].shape)} != {shape}" for k, shape in expected.items()
           if k in sd and tuple(sd[k].shape) != tuple(shape)]
    if bad:
        raise CheckpointError(f"checkpoint looks like the {layout} but {len(bad)} tensor(s) have the wrong "
                              f"shape: {few(bad)}; it is a different variant of the network")
    out: StateDict = {}
    filled: list[str] = []
    for k in expected:
        if k in sd:
            out[k] = sd[k]
        else:
            out[k] = torch.zeros((), dtype=torch.long)
            filled.append(k)
    return out, ({FILLED_NUM_BATCHES: filled} if filled else {})


def convert_classifier_layout(sd: Mapping[str, torch.Tensor], *, layout: str, model: str, classifier: str,
                              aux_heads: tuple[str, ...], build: Callable[[int, bool], torch.nn.Module],
                              heads_word: str = "auxiliary heads") -> Converted:
    """The conversion shared by layouts whose only variables are the class count and the training heads.

    Reads ``num_classes`` from ``classifier``'s weight, requires all or none of
    ``aux_heads``, and conforms ``sd`` to ``build(num_classes, aux)``'s exact
    key/shape layout. ``sd`` has its wrapper prefixes stripped already.
    """
    from rtseg.core.errors import CheckpointError

    if classifier not in sd or sd[classifier].dim() != 4:
        raise CheckpointError(f"checkpoint looks like the {layout} but has no classifier "
                              f"{classifier!r}; the file is incomplete")
    num_classes = int(sd[classifier].shape[0])
    present = [h for h in aux_heads if any(k.startswith(h + ".") for k in sd)]
    if present and len(present) != len(aux_heads):
        missing = [h for h in aux_heads if h not in present]
        raise CheckpointError(f"checkpoint looks like the {layout} but has only some {heads_word} "
                              f"({', '.join(present)}; missing {', '.join(missing)}); keep all or none")
    aux = bool(present)
    # A CPU build (~0.2 s) rather than torch.device("meta"), whose first use
    # in a process costs more than that; only the key/shape layout is kept.
    expected = model_layout(build(num_classes, aux))
    state_dict, dropped = conform_state_dict(sd, expected, layout=layout)
    return Converted(model, num_classes, aux, state_dict, dropped)
