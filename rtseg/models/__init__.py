"""Model zoo: networks, registry, checkpoint loading, deploy wrapper (imports torch).

Importing this package registers every model family (one file per family).
"""

from rtseg.models import (  # noqa: F401  (registers the families)
    bisenetv1,
    bisenetv2,
    deconvnet,
    deeplabv3,
    dilation,
    fcn,
    lraspp,
    segnet,
    stdc,
)
from rtseg.models.registry import create_model, get_entry, list_models, register_model

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
