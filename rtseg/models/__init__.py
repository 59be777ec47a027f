"""Model zoo: networks, registry, checkpoint loading, deploy wrapper (imports torch).

Importing this package registers every model family (one file per family).
"""

from rtseg.models import bisenetv1, bisenetv2, stdc  # noqa: F401  (registers the families)
from rtseg.models.registry import create_model, get_entry, list_models, register_model

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
