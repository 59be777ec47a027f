"""Model registry: ``@register_model`` on a builder, ``create_model(name, **kw)`` to build.

One file per model family registers its builders at import time (the timm
pattern). Registering a name twice is an error, so two families can never
silently shadow each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rtseg.core.errors import UserInputError

if TYPE_CHECKING:
    from rtseg.models.base import SegModel


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., SegModel]
    family: str
    summary: str


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, *, family: str, summary: str) -> Callable[[Callable[..., SegModel]], Callable[..., SegModel]]:
    """Register ``builder(num_classes=..., aux=..., **kw) -> SegModel`` under ``name``."""

    def deco(builder: Callable[..., SegModel]) -> Callable[..., SegModel]:
        if name in _REGISTRY:
            raise RuntimeError(f"model name {name!r} is registered twice "
                               f"({_REGISTRY[name].builder.__module__} and {builder.__module__})")
        _REGISTRY[name] = ModelEntry(name, builder, family, summary)
        return builder

    return deco


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserInputError(
            f"unknown model {name!r}; choose one of: {', '.join(list_models())}"
        ) from None


def create_model(name: str, num_classes: int = 19, *, aux: bool = False, **kwargs: Any) -> SegModel:
    """Build a registered model with random weights.

    ``aux=True`` also builds the training-only heads (auxiliary / detail /
    booster heads); the eval-mode forward never runs them either way.
    """
    entry = get_entry(name)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise UserInputError(f"--num-classes must be an integer >= 2, got {num_classes!r}")
    return entry.builder(num_classes=num_classes, aux=aux, **kwargs)
