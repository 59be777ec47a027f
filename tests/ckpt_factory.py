"""Synthetic checkpoints in the layouts of the public release files.

The real release files are not redistributable test data, so tests write
files with the same keys and shapes (from ``tests/data/checkpoint_keys``),
random but well-scaled values, and the same quirks: raw state_dicts, STDC's
alias keys sharing storage with ``cp.backbone.features``, 0-dim int64
``num_batches_tracked`` buffers (absent where the real files lack them).
Variants (``module.`` prefix, wrapped, aux heads removed, no
``num_batches_tracked``) cover what users' own training runs produce.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

KEYS_DIR = Path(__file__).parent / "data" / "checkpoint_keys"

#: layout -> (key list file, registry name, training-only head prefixes)
LAYOUTS = {
    "stdc1_seg": ("stdc1_seg.txt", "stdc1", ("conv_out16", "conv_out32", "conv_out_sp2", "conv_out_sp4",
                                             "conv_out_sp8", "conv_out_sp16")),
    "stdc2_seg": ("stdc2_seg.txt", "stdc2", ("conv_out16", "conv_out32", "conv_out_sp2", "conv_out_sp4",
                                             "conv_out_sp8", "conv_out_sp16")),
    "bisenetv1": ("bisenetv1.txt", "bisenetv1", ("conv_out16", "conv_out32")),
    "bisenetv2": ("bisenetv2.txt", "bisenetv2", ("aux2", "aux3", "aux4", "aux5_4")),
    # torchvision's segmentation checkpoints (21 VOC classes; aux classifier included but for LR-ASPP)
    "tv_fcn_resnet50": ("torchvision_fcn_resnet50.txt", "fcn_resnet50", ("aux_classifier",)),
    "tv_fcn_resnet101": ("torchvision_fcn_resnet101.txt", "fcn_resnet101", ("aux_classifier",)),
    "tv_deeplabv3_resnet50": ("torchvision_deeplabv3_resnet50.txt", "deeplabv3_resnet50", ("aux_classifier",)),
    "tv_deeplabv3_resnet101": ("torchvision_deeplabv3_resnet101.txt", "deeplabv3_resnet101", ("aux_classifier",)),
    "tv_deeplabv3_mobilenet_v3_large": ("torchvision_deeplabv3_mobilenet_v3_large.txt",
                                        "deeplabv3_mobilenet_v3_large", ("aux_classifier",)),
    "tv_lraspp_mobilenet_v3_large": ("torchvision_lraspp_mobilenet_v3_large.txt", "lraspp_mobilenet_v3_large", ()),
    # an ImageNet classifier: not a segmentation layout (must be refused)
    "tv_resnet18_imagenet": ("torchvision_resnet18_imagenet.txt", "", ()),
}
TORCHVISION_LAYOUTS = tuple(k for k in LAYOUTS if k.startswith("tv_") and LAYOUTS[k][1])

_STDC_ALIAS = re.compile(r"^cp\.backbone\.x(?:2|4|8|16|32)\.0\.(\d+)\.(.+)$")


def read_keys(layout: str) -> list[tuple[str, tuple[int, ...]]]:
    """``(key, shape)`` for every line of a layout's key list, in file order."""
    out = []
    for line in (KEYS_DIR / LAYOUTS[layout][0]).read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        key, shape = line.split(" ", 1)
        out.append((key, tuple(int(v) for v in re.findall(r"\d+", shape))))
    return out


def _value(key: str, shape: tuple[int, ...], g: torch.Generator) -> torch.Tensor:
    """A random tensor that keeps activations finite through a deep network.

    Weights get He-scaled normals (std sqrt(2 / fan_in)) so activations neither
    explode nor vanish across ~20 layers; BatchNorm statistics stay near the
    identity with a strictly positive variance.
    """
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.tensor(int(torch.randint(0, 100000, (), generator=g)), dtype=torch.long)
    if leaf == "running_var":
        return torch.rand(shape, generator=g) + 0.5
    if leaf == "running_mean":
        return 0.1 * torch.randn(shape, generator=g)
    if len(shape) == 1:  # BN weight/bias, conv/linear bias
        base = 1.0 if leaf == "weight" else 0.0
        return base + 0.1 * torch.randn(shape, generator=g)
    fan_in = math.prod(shape[1:])
    return torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)


def release_state_dict(layout: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every key of ``layout`` with its exact shape, as a raw state_dict (file key order).

    STDC alias keys are the very tensors of their ``cp.backbone.features`` twins
    (shared storage, as in the real files).
    """
    g = torch.Generator().manual_seed(seed)
    keys = read_keys(layout)
    sd: dict[str, torch.Tensor] = {}
    for key, shape in keys:
        if not _STDC_ALIAS.match(key):
            sd[key] = _value(key, shape, g)
    out: dict[str, torch.Tensor] = {}
    for key, shape in keys:
        m = _STDC_ALIAS.match(key)
        if m:
            twin = sd[f"cp.backbone.features.{m.group(1)}.{m.group(2)}"]
            assert tuple(twin.shape) == shape, key
            out[key] = twin
        else:
            out[key] = sd[key]
    return out


def with_module_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """As saved from a ``DataParallel``-wrapped model."""
    return {f"module.{k}": v for k, v in sd.items()}


def without_aux(sd: dict[str, torch.Tensor], layout: str) -> dict[str, torch.Tensor]:
    """Only the inference path (training-only heads removed)."""
    heads = tuple(h + "." for h in LAYOUTS[layout][2])
    return {k: v for k, v in sd.items() if not k.startswith(heads)}


def without_num_batches_tracked(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """As written by PyTorch < 0.4.1 or InPlaceABN training: no BN counters at all."""
    return {k: v for k, v in sd.items() if not k.endswith(".num_batches_tracked")}


def write(path: Path, obj: object) -> Path:
    """``torch.save`` (zip format, the default since PyTorch 1.6)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def write_release(path: Path, layout: str, *, seed: int = 0) -> Path:
    """A synthetic release file: raw state_dict like the published ``.pth`` files."""
    return write(path, release_state_dict(layout, seed))


#: ImageNet backbone files (``--backbone-weights``): layout -> (key list, registry name of
#: the model whose encoder takes it, how the file wraps its state_dict).
IMAGENET_LAYOUTS = {
    "stdcnet813": ("stdcnet813_imagenet.txt", "stdc1", "state_dict"),
    "stdcnet1446": ("stdcnet1446_imagenet.txt", "stdc2", "state_dict"),
    "resnet18": ("torchvision_resnet18_imagenet.txt", "bisenetv1", None),
}
_IMAGENET_ALIAS = re.compile(r"^x(?:2|4|8|16|32)\.0\.(\d+)\.(.+)$")


def imagenet_state_dict(layout: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every key of an ImageNet backbone key list with its shape; STDC's ``x2 ... x32``
    aliases share storage with their ``features`` twins as in the real files."""
    g = torch.Generator().manual_seed(seed)
    keys = []
    for line in (KEYS_DIR / IMAGENET_LAYOUTS[layout][0]).read_text().splitlines():
        if line.strip():
            key, shape = line.strip().split(" ", 1)
            keys.append((key, tuple(int(v) for v in re.findall(r"\d+", shape))))
    sd = {k: _value(k, s, g) for k, s in keys if not _IMAGENET_ALIAS.match(k)}
    out: dict[str, torch.Tensor] = {}
    for key, _shape in keys:
        m = _IMAGENET_ALIAS.match(key)
        out[key] = sd[f"features.{m.group(1)}.{m.group(2)}"] if m else sd[key]
    return out


def write_imagenet(path: Path, layout: str, *, seed: int = 0) -> Path:
    """A synthetic ImageNet backbone file wrapped as the real one is (STDC: ``{"state_dict": ...}``
    in a ``.tar`` written by torch.save; torchvision: a raw state_dict)."""
    sd = imagenet_state_dict(layout, seed)
    wrap = IMAGENET_LAYOUTS[layout][2]
    return write(path, {wrap: sd, "epoch": 300} if wrap else sd)


# --- version-proof values (shared with scripts/make_torchvision_fixtures.py) --------------


def _lcg_uniform(n: int, seed: int) -> np.ndarray:
    """``n`` floats in [-1, 1) from a 64-bit LCG: the same on every NumPy/PyTorch version and
    machine (unlike torch.randn's or NumPy's generator streams), so a fixture written by
    another torch release can be checked against weights rebuilt here."""
    a, c = np.uint64(6364136223846793005), np.uint64(1442695040888963407)
    state = np.uint64(seed * 2654435761 + 1)
    # Jump-free: one independent LCG per element, seeded by its index (vectorised).
    x = (np.arange(n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ state
    for _ in range(3):
        x = x * a + c
    return ((x >> np.uint64(11)).astype(np.float64) / float(1 << 53) * 2.0 - 1.0).astype(np.float32)


def deterministic_state_dict(layout: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every key of ``layout`` with values from ``_lcg_uniform``, scaled to keep deep nets finite.

    Convolution weights are uniform with the He variance (sqrt(6 / fan_in) bound);
    BatchNorm scales lie in [0.25, 0.75] (residual sums stay bounded through
    ResNet-101), shifts/means in +-0.1, variances in [0.5, 1.5].
    """
    out: dict[str, torch.Tensor] = {}
    for i, (key, shape) in enumerate(read_keys(layout)):
        n = math.prod(shape) if shape else 1
        u = _lcg_uniform(n, seed * 100003 + i)
        leaf = key.rsplit(".", 1)[-1]
        if leaf == "num_batches_tracked":
            out[key] = torch.tensor(1000 + i, dtype=torch.long)
            continue
        if leaf == "running_var":
            v = 1.0 + 0.5 * u
        elif len(shape) == 1 and leaf == "weight":  # BatchNorm scale
            v = 0.5 + 0.25 * u
        elif len(shape) == 1:  # biases, BN shifts and running means
            v = 0.1 * u
        else:
            v = u * math.sqrt(6.0 / math.prod(shape[1:]))
        out[key] = torch.from_numpy(v.reshape(shape).copy())
    return out


def deterministic_input(shape: tuple[int, ...], seed: int = 12345) -> torch.Tensor:
    """A normalised-image-like input tensor from the same LCG (values in [-2, 2))."""
    return torch.from_numpy(2.0 * _lcg_uniform(math.prod(shape), seed).reshape(shape))
