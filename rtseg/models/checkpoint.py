"""Loading and saving model weights.

Accepted files (all read with ``torch.load(map_location="cpu", weights_only=True)``,
so a file can never run code, and tensors saved on a GPU load on any machine):

- rtseg checkpoints written by ``save_checkpoint``: the model's state_dict plus
  its ``ModelMeta`` (class names, palette, normalisation...);
- public release files of the zoo's families (each family module lists its
  layouts in ``RELEASE_FORMATS``), e.g. the official STDC-Seg files and
  CoinCheung's BiSeNetV1/V2 Cityscapes weights;
- either of those as a raw state_dict, wrapped under ``state_dict`` / ``model``
  / ``model_state_dict`` / ``net`` (training checkpoints), and with the
  ``module.`` prefix ``DataParallel`` adds.

Weights are always loaded strictly: the only keys ever ignored are the ones a
layout declares unused (aliases, ImageNet classifier leftovers), and those
are reported, with any filled-in buffers, in ``LoadReport``. Library code
never prints; callers show ``LoadReport.summary()``.
"""

from __future__ import annotations

import importlib
import json
import pickle
import re
import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import torch

from rtseg.core.atomic import atomic_path
from rtseg.core.datasets_meta import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VOC_CLASSES,
    VOC_PALETTE,
    default_classes,
)
from rtseg.core.errors import CheckpointError, UserInputError
from rtseg.core.hashing import file_sha256
from rtseg.core.meta import ModelMeta
from rtseg.models.base import SegModel
from rtseg.models.registry import create_model, get_entry, list_models
from rtseg.models.release import FILLED_NUM_BATCHES, Converted, ReleaseFormat

#: ``format`` value of our own checkpoint files, and the version this code writes.
RTSEG_FORMAT = "rtseg-checkpoint"
RTSEG_VERSION = 1
#: Layout name reported for our own files.
RTSEG_LAYOUT = "rtseg checkpoint"
#: Keys under which training scripts commonly nest the state_dict.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")
#: Family modules whose ``RELEASE_FORMATS`` are always consulted (others are
#: picked up from the registry once imported).
FAMILY_MODULES = ("rtseg.models.stdc", "rtseg.models.bisenetv1", "rtseg.models.bisenetv2", "rtseg.models.fcn",
                  "rtseg.models.deeplabv3", "rtseg.models.lraspp")

_ACCEPTED = ("an rtseg checkpoint (save_checkpoint), or a state_dict of tensors (raw, or under "
             f"{'/'.join(WRAPPER_KEYS)}; 'module.' prefixes are fine)")


@dataclass(frozen=True)
class LoadReport:
    """What loading a weights file did, for the user to read.

    ``dropped``/``filled`` map a human reason to the keys removed from / added
    to the file's state_dict before the strict load.
    """

    source: str  # file name
    layout: str  # detected layout, e.g. "official STDC-Seg release layout (STDC1, ...)"
    model: str
    num_classes: int
    aux: bool  # the file had the training-only heads (the model was built with them)
    wrapper: str | None = None  # key the state_dict was nested under, if any
    prefix_stripped: str | None = None  # e.g. "module."
    dropped: dict[str, list[str]] = field(default_factory=dict)
    filled: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_dropped(self) -> int:
        return sum(len(v) for v in self.dropped.values())

    @property
    def n_filled(self) -> int:
        return sum(len(v) for v in self.filled.values())

    def summary(self) -> str:
        """One paragraph: what was loaded, from what, and every key dropped or filled (grouped)."""
        heads = "with training heads" if self.aux else "inference heads only"
        parts = [f"Loaded {self.model} ({self.num_classes} classes, {heads}) from {self.source} "
                 f"[{self.layout}]"]
        how = []
        if self.wrapper:
            how.append(f"state_dict nested under {self.wrapper!r}")
        if self.prefix_stripped:
            how.append(f"prefix {self.prefix_stripped!r} stripped")
        if how:
            parts[0] += f" ({'; '.join(how)})"
        parts[0] += "."
        for verb, groups in (("Dropped", self.dropped), ("Filled", self.filled)):
            if groups:
                total = sum(len(v) for v in groups.values())
                # Reasons may repeat the verb ("filled: ..."): say it once.
                items = "; ".join(f"{len(keys)} {_strip_verb(reason)} (e.g. {', '.join(keys[:2])})"
                                  for reason, keys in groups.items())
                parts.append(f"{verb} {total} key(s): {items}.")
        if not self.dropped and not self.filled:
            parts.append("Every key matched the model exactly.")
        return " ".join(parts)


def _strip_verb(reason: str) -> str:
    for verb in ("filled: ", "dropped: "):
        if reason.startswith(verb):
            return reason[len(verb):]
    return reason


@dataclass
class LoadedModel:
    """A model in eval mode with its weights loaded strictly, its metadata and the load report."""

    model: SegModel
    meta: ModelMeta
    report: LoadReport
    #: JSON-able training information stored by ``save_checkpoint(extra=...)`` (empty otherwise).
    extra: dict[str, Any] = field(default_factory=dict)


# --- reading files ----------------------------------------------------------------


def _read(path: Path) -> Any:
    """``torch.load`` with weights_only, every failure turned into a one-line CheckpointError."""
    if not path.exists():
        raise CheckpointError(f"weights file {path} does not exist; check the path")
    if not path.is_file():
        raise CheckpointError(f"weights path {path} is not a file; pass the .pth/.pt file itself")
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (since 1.6) or, before that, a pickle stream
    # (protocol 2 starts with 0x80 0x02); anything else cannot be a PyTorch file.
    # Only the magic bytes are checked, so a truncated archive is reported as such below.
    if not (head == b"PK\x03\x04" or head[:2] == b"\x80\x02"):
        raise CheckpointError(f"{path.name} is not a PyTorch weights file (torch.save output); "
                              f"pass a .pth/.pt checkpoint, not an ONNX/engine/image file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found or "Unsupported global" in str(e):
            what = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"refused to unpickle code from {path.name}: it holds a Python object{what}, not just "
                f"tensors, and weights are only loaded with weights_only=True; accepted: {_ACCEPTED}. "
                f"If you trust the file, re-save it with torch.save(model.state_dict(), path)"
            ) from None
        raise CheckpointError(f"{path.name} is corrupted (unreadable pickle data); "
                              f"download or copy it again") from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path.name} is corrupted or truncated ({first}); "
                              f"download or copy it again") from None


def _is_state_dict(obj: Any) -> TypeGuard[Mapping[str, torch.Tensor]]:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _unwrap(obj: Any, name: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """Find the state_dict in a loaded object; returns it and the wrapper key (None when raw)."""
    if _is_state_dict(obj):
        return dict(obj), None
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if _is_state_dict(inner):
                return dict(inner), key
            # e.g. {"model": {"state_dict": ...}}: one more level, no deeper.
            if isinstance(inner, Mapping):
                for key2 in WRAPPER_KEYS:
                    if _is_state_dict(inner.get(key2)):
                        return dict(inner[key2]), f"{key}.{key2}"
        keys = ", ".join(repr(k) for k in list(obj)[:6])
        raise CheckpointError(f"{name} holds no state_dict of tensors (top-level keys: {keys}); "
                              f"accepted: {_ACCEPTED}")
    raise CheckpointError(f"{name} holds a {type(obj).__name__}, not a state_dict; accepted: {_ACCEPTED}")


def _strip_prefix(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str | None]:
    # DataParallel / DistributedDataParallel save every key as "module.<key>".
    prefix = "module."
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}, prefix
    return sd, None


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None, str | None]:
    """(state_dict, wrapper key, stripped prefix) of a weights file, read safely.

    For files that are not rtseg checkpoints (ImageNet backbones, release files):
    the same ``weights_only`` read, unwrapping and ``module.`` stripping as ``load_model``.
    """
    path = Path(path)
    sd, wrapper = _unwrap(_read(path), path.name)
    sd, prefix = _strip_prefix(sd)
    return sd, wrapper, prefix


def release_formats() -> list[ReleaseFormat]:
    """Every known release layout: from ``FAMILY_MODULES`` and any registered family module."""
    modules: list[str] = []
    for mod_name in FAMILY_MODULES:
        try:
            importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name != mod_name:  # the family exists but one of its imports is missing: a bug
                raise
            continue
        modules.append(mod_name)
    for model_name in list_models():
        mod_name = get_entry(model_name).builder.__module__
        if mod_name not in modules:
            modules.append(mod_name)
    formats: list[ReleaseFormat] = []
    for mod_name in modules:
        mod = sys.modules.get(mod_name)
        formats.extend(getattr(mod, "RELEASE_FORMATS", []))
    return formats


def _layout_names(formats: list[ReleaseFormat]) -> str:
    return "; ".join([f"{RTSEG_LAYOUT} (save_checkpoint)"] + [f"{f.name} [{f.model}]" for f in formats])


# --- loading ----------------------------------------------------------------------


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")


def _load_strict(net: SegModel, sd: Mapping[str, torch.Tensor], name: str, layout: str) -> dict[str, list[str]]:
    """Fill missing num_batches_tracked, check keys and shapes, then ``load_state_dict(strict=True)``.

    Release converters already conform their output; this is the check for our
    own format and for any converter that does not. Returns the filled keys.
    """
    expected = net.state_dict()
    sd = dict(sd)
    filled = [k for k in expected if k not in sd and k.endswith(".num_batches_tracked")
              and k[: -len("num_batches_tracked")] + "running_mean" in sd]
    for k in filled:
        # Old PyTorch / InPlaceABN-trained BatchNorms have no counter; it only
        # matters for momentum=None, which no zoo model uses.
        sd[k] = torch.zeros((), dtype=torch.long)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        what = []
        if missing:
            what.append(f"{len(missing)} missing key(s): {_few(missing)}")
        if unexpected:
            what.append(f"{len(unexpected)} unexpected key(s): {_few(unexpected)}")
        raise CheckpointError(f"checkpoint {name} ({layout}) does not match {net.name}: {'; '.join(what)}; "
                              f"the file is incomplete or for a different network variant")
    bad = [f"{k} {tuple(sd[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
           if tuple(sd[k].shape) != tuple(v.shape)]
    if bad:
        raise CheckpointError(f"checkpoint {name} ({layout}) has {len(bad)} tensor(s) of the wrong shape for "
                              f"{net.name}: {_few(bad)}; it is for a different network variant")
    try:
        # copy_ casts: FP16 (or FP64) files load into the float32 model unchanged otherwise.
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # e.g. a dtype that cannot be copied; keys and shapes were checked
        raise CheckpointError(f"checkpoint {name} could not be loaded into {net.name}: "
                              f"{str(e).splitlines()[0][:200]}") from None
    return {FILLED_NUM_BATCHES: filled} if filled else {}


def _check_request(name: str, found_model: str, found_classes: int, layout: str,
                   model: str | None, num_classes: int | None) -> None:
    if model is not None and model != found_model:
        raise CheckpointError(f"checkpoint {name} is a {found_model} file ({layout}, {found_classes} classes), "
                              f"not {model}; pass --model {found_model}")
    if num_classes is not None and num_classes != found_classes:
        raise CheckpointError(f"checkpoint {name} has {found_classes} classes but {num_classes} were requested; "
                              f"drop --num-classes (or pass {found_classes}) to use it as is, or fine-tune it "
                              f"into a model with {num_classes} classes")


#: Class names and palette of the datasets public release files were trained on.
_DATASET_CLASSES = {"cityscapes": (CITYSCAPES_CLASSES, CITYSCAPES_PALETTE), "voc": (VOC_CLASSES, VOC_PALETTE)}


def _fmt_classes(fmt: ReleaseFormat) -> tuple[str, ...]:
    """Class names of a release layout's dataset (Cityscapes, or VOC for torchvision's files)."""
    return _DATASET_CLASSES.get(fmt.dataset, ((), ()))[0]


def _release_meta(fmt: ReleaseFormat, conv: Converted, source: Path, sha: str) -> ModelMeta:
    names, palette = default_classes(conv.num_classes)
    # Same layout with another class count is someone's fine-tune: its dataset is unknown.
    dataset = fmt.dataset if conv.num_classes == len(_fmt_classes(fmt)) else None
    if dataset is not None:
        names, palette = _DATASET_CLASSES[dataset]
    return ModelMeta(model=conv.model, class_names=names, palette=palette, mean=fmt.mean, std=fmt.std,
                     channel_order=fmt.channel_order, weights=f"{fmt.name}: {source.name}",
                     weights_sha256=sha, dataset=dataset)


def load_model(path: str | Path, *, model: str | None = None, num_classes: int | None = None) -> LoadedModel:
    """Load a weights file (see the module docstring for what is accepted) into a new model.

    ``model``/``num_classes``, when given, must match what the file holds;
    otherwise a one-line ``CheckpointError`` says what the file is and what to
    pass. The returned model is in eval mode; ``meta.weights_sha256`` is the
    sha256 of ``path``.
    """
    path = Path(path)
    name = path.name
    raw = _read(path)
    sha = file_sha256(path)

    if isinstance(raw, Mapping) and raw.get("format") == RTSEG_FORMAT:
        return _load_own(raw, path, sha, model, num_classes)

    sd, wrapper = _unwrap(raw, name)
    sd, prefix = _strip_prefix(sd)
    formats = release_formats()
    fmt = next((f for f in formats if f.detect(sd)), None)
    if fmt is None:
        raise CheckpointError(f"checkpoint {name} has no known layout (first keys: {_few(list(sd))}); "
                              f"accepted layouts: {_layout_names(formats)}")
    try:
        conv = fmt.convert(sd)
    except CheckpointError:
        if model is not None and model != fmt.model:  # the wrong model is the more useful news
            raise CheckpointError(f"checkpoint {name} is a {fmt.model} file ({fmt.name}), not {model}; "
                                  f"pass --model {fmt.model}") from None
        raise
    _check_request(name, conv.model, conv.num_classes, fmt.name, model, num_classes)
    net = create_model(conv.model, conv.num_classes, aux=conv.aux)
    dropped = {r: list(k) for r, k in conv.dropped.items() if r != FILLED_NUM_BATCHES}
    filled = {r: list(k) for r, k in conv.dropped.items() if r == FILLED_NUM_BATCHES}
    more = _load_strict(net, conv.state_dict, name, fmt.name)
    for r, keys in more.items():
        filled.setdefault(r, []).extend(keys)
    net.eval()
    report = LoadReport(source=name, layout=fmt.name, model=conv.model, num_classes=conv.num_classes,
                        aux=conv.aux, wrapper=wrapper, prefix_stripped=prefix, dropped=dropped, filled=filled)
    return LoadedModel(net, _release_meta(fmt, conv, path, sha), report)


def _load_own(raw: Mapping[str, Any], path: Path, sha: str, model: str | None,
              num_classes: int | None) -> LoadedModel:
    name = path.name
    version = raw.get("version")
    if not isinstance(version, int) or version > RTSEG_VERSION:
        raise CheckpointError(f"{name} is an rtseg checkpoint of version {version!r}, newer than this rtseg "
                              f"reads ({RTSEG_VERSION}); upgrade rtseg")
    try:
        meta = ModelMeta.from_dict(dict(raw["meta"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{name} is an rtseg checkpoint with invalid metadata ({e}); "
                              f"the file is damaged") from None
    sd, prefix = _strip_prefix(dict(raw.get("state_dict") or {}))
    if not _is_state_dict(sd):
        raise CheckpointError(f"{name} is an rtseg checkpoint without a state_dict; the file is damaged")
    layout = f"{RTSEG_LAYOUT} v{version}"
    _check_request(name, meta.model, meta.num_classes, layout, model, num_classes)
    if meta.model not in list_models():
        release_formats()  # imports the family modules, which registers their models
    try:
        net = create_model(meta.model, meta.num_classes, aux=bool(raw.get("aux", False)))
        if "aux" not in raw and any(k not in net.state_dict() for k in sd):
            # Not written by save_checkpoint: keys beyond the inference model are the training heads.
            net = create_model(meta.model, meta.num_classes, aux=True)
    except UserInputError as e:
        raise CheckpointError(f"{name} is for model {meta.model!r}, which this rtseg does not have "
                              f"({e})") from None
    aux = net.aux
    filled = _load_strict(net, sd, name, layout)
    net.eval()
    report = LoadReport(source=name, layout=layout, model=meta.model, num_classes=meta.num_classes,
                        aux=aux, wrapper=None, prefix_stripped=prefix, dropped={}, filled=filled)
    extra = raw.get("extra")
    return LoadedModel(net, meta.with_(weights_sha256=sha), report, dict(extra) if isinstance(extra, Mapping) else {})


def build_model(model: str | None, num_classes: int | None, weights: str | Path | None) -> LoadedModel:
    """A model ready for inference: random weights when ``weights`` is None, else ``load_model``.

    With ``weights``, ``model``/``num_classes`` may be None (taken from the
    file) or must match it. Random-init models need both; they get
    ``meta.weights = None`` (``meta.trained`` is False), class names/palette
    from ``default_classes`` and ImageNet normalisation. Seed torch first for
    reproducible random weights.
    """
    if weights is not None:
        return load_model(weights, model=model, num_classes=num_classes)
    if model is None or num_classes is None:
        raise UserInputError("random weights need both --model NAME and --num-classes N (or pass --weights)")
    release_formats()  # registers every family
    net = create_model(model, num_classes)
    net.eval()
    names, palette = default_classes(num_classes)
    meta = ModelMeta(model=model, class_names=names, palette=palette, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                     channel_order="RGB", weights=None)
    report = LoadReport(source="(none)", layout="random initialisation (untrained)", model=model,
                        num_classes=num_classes, aux=False)
    return LoadedModel(net, meta, report)


def save_checkpoint(path: str | Path, model: SegModel, meta: ModelMeta, *,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``model``'s weights and ``meta`` as an rtseg checkpoint, atomically.

    The file is a plain dict (loadable with weights_only=True):
    ``{"format": "rtseg-checkpoint", "version": 1, "meta": meta.to_dict(),
    "aux": model.aux, "state_dict": {...}, "extra": extra}``. ``extra`` is
    optional JSON-able training information (epoch, mIoU, ...).
    """
    if meta.model != model.name:
        raise UserInputError(f"save_checkpoint: metadata is for {meta.model!r} but the model is {model.name!r}")
    if meta.num_classes != model.num_classes:
        raise UserInputError(f"save_checkpoint: metadata has {meta.num_classes} classes but the model has "
                             f"{model.num_classes}")
    if extra is not None:
        try:
            extra = json.loads(json.dumps(extra))
        except (TypeError, ValueError) as e:
            raise UserInputError(f"save_checkpoint: extra must be JSON-able ({e})") from None
    net = model
    obj: dict[str, Any] = {
        "format": RTSEG_FORMAT,
        "version": RTSEG_VERSION,
        "meta": meta.to_dict(),
        "aux": bool(net.aux),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
    }
    if extra is not None:
        obj["extra"] = extra
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path
