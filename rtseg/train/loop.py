"""The training loop: data, losses, SGD with poly LR, checkpoints, resume, validation.

One process, one thread of control: ``Trainer.run`` is called from the main
thread and does everything there. The only other threads/processes are the
DataLoader workers, which build whole batches (decode, augment, normalise) from
nothing but an iteration number, so they share no state with the loop.

Resume is exact: the LR is a function of the iteration, the batch of iteration
``i`` is a function of (seed, i), and the resume state holds model, optimizer
(momentum buffers), AMP scaler and the best validation score so far.
The run's settings are ``rtseg.train.config``; what it logs and plots,
``rtseg.train.logs``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rtseg.core.atomic import atomic_path, atomic_write_text
from rtseg.core.datasets_meta import IMAGENET_MEAN, IMAGENET_STD
from rtseg.core.errors import UserInputError
from rtseg.core.meta import ModelMeta
from rtseg.data.augment import AugmentConfig, TrainAugment, normalize_bgr, resize_for_model
from rtseg.data.datasets import SegDataset, open_dataset, require_nonempty
from rtseg.eval.metrics import ConfusionMatrix, SegMetrics
from rtseg.models.base import SegModel
from rtseg.train.config import (  # noqa: F401  (every name a run writes, for the loop)
    _FIXED_ON_RESUME,
    BEST_FILE,
    CURVES,
    FINAL_FILE,
    RESUME_FILE,
    STATE_FORMAT,
    TRAIN_LOG,
    VAL_LOG,
    TrainConfig,
)
from rtseg.train.detail import DetailLoss
from rtseg.train.logs import CsvLog, Progress, plot_curves
from rtseg.train.losses import OhemCrossEntropy
from rtseg.train.schedule import param_groups, poly_lr, set_lr


def _sample_index(seed: int, g: int, n: int, _cache: dict[tuple[int, int], np.ndarray] = {}) -> int:  # noqa: B006
    """Index of the ``g``-th training sample of the run: epoch-wise shuffles from (seed, epoch).

    The cache is per process (each DataLoader worker has its own); it keeps one permutation.
    """
    epoch, pos = divmod(g, n)
    key = (seed, epoch)
    perm = _cache.get(key)
    if perm is None:
        _cache.clear()
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        _cache[key] = perm
    return int(perm[pos])


class IterationBatches(Dataset):
    """``batches[i]`` = the augmented, normalised batch of iteration ``i`` (deterministic).

    Built in DataLoader workers (or inline with ``workers=0``).
    """

    def __init__(self, ds: SegDataset, augment: TrainAugment, batch_size: int, seed: int,
                 mean: tuple[float, float, float], std: tuple[float, float, float], total: int,
                 limit: int | None = None) -> None:
        self.ds = ds
        self.augment = augment
        self.batch_size = batch_size
        self.seed = seed
        self.mean, self.std = mean, std
        self.total = total
        self.n = min(len(ds), limit) if limit else len(ds)

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, it: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for j in range(self.batch_size):
            idx = _sample_index(self.seed, it * self.batch_size + j, self.n)
            img, lab = self.ds.load(idx)
            rng = np.random.default_rng([self.seed, it, j])
            img, lab = self.augment(img, lab, rng)
            xs.append(normalize_bgr(img, self.mean, self.std))
            ys.append(lab)
        return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys).astype(np.int64))


class _Range(torch.utils.data.Sampler[int]):
    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def dataset_meta(model_name: str, ds: SegDataset, input_size: tuple[int, int],
                 mean: tuple[float, float, float] = IMAGENET_MEAN,
                 std: tuple[float, float, float] = IMAGENET_STD) -> ModelMeta:
    """The metadata a model trained on ``ds`` ships with (RGB; the normalisation its encoder
    expects, ImageNet mean/std by default)."""
    return ModelMeta(model=model_name, class_names=ds.info.class_names, palette=ds.info.palette,
                     mean=mean, std=std, channel_order="RGB",
                     input_size=(int(input_size[0]), int(input_size[1])), dataset=ds.info.name)


@torch.no_grad()
def validate(model: SegModel, ds: SegDataset, meta: ModelMeta, input_size: tuple[int, int],
             device: torch.device, limit: int | None = None, batch: int = 4) -> SegMetrics:
    """mIoU of ``model`` on ``ds`` through the deploy graph (BGR uint8 in, labels out), the
    way every backend runs it: frames resized to ``input_size``, predictions resized back
    (nearest) to the label size. Leaves the model in eval mode."""
    from rtseg.eval.evaluate import labels_to_size
    from rtseg.models.deploy import DeployGraph

    graph = DeployGraph(model, meta).to(device)  # puts the model in eval mode
    cm = ConfusionMatrix(ds.info.num_classes, ds.info.ignore_index)
    n = min(len(ds), limit) if limit else len(ds)
    for s in range(0, n, batch):
        samples = [ds.load(i) for i in range(s, min(n, s + batch))]
        frames = np.stack([resize_for_model(img, input_size) for img, _ in samples])
        labels = graph(torch.from_numpy(frames).to(device)).cpu().numpy()
        for pred, (_, gt) in zip(labels, samples, strict=True):
            cm.update(labels_to_size(pred, gt.shape), gt)
    return cm.result(ds.info.class_names)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"--device {name}: CUDA is not available here; use --device cpu")
    return dev


@dataclass
class TrainResult:
    out_dir: Path
    iteration: int
    best_miou: float | None
    best_iteration: int | None
    last_loss: float | None
    losses: list[float] = field(default_factory=list)  # per iteration run in this call


class Trainer:
    """Train ``cfg.model`` on ``cfg.data``. ``run()`` resumes from ``out_dir/last.pt`` when it
    exists (unless ``restart``), trains to ``cfg.iters`` (or ``stop_at``), and writes
    ``last.pt`` (resume state), ``best.pt`` (best val mIoU, rtseg checkpoint format),
    ``train_log.csv``, ``val_log.csv`` and ``curves.png`` into ``out_dir``.
    """

    def __init__(self, cfg: TrainConfig, *, restart: bool = False, stream=None) -> None:
        cfg.check()
        self.cfg = cfg
        self.out = Path(os.path.expanduser(cfg.out_dir))
        self.restart = restart
        self.stream = stream or sys.stderr
        self._lineage: list[dict[str, Any]] = []  # the --init file's training history (see lineage_of)

    def _log(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    # -- resume state --------------------------------------------------------
    def _load_state(self) -> dict[str, Any] | None:
        path = self.out / RESUME_FILE
        if self.restart or not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # a truncated file cannot happen (atomic writes) but a foreign one can
            raise UserInputError(f"cannot read resume state {path} ({type(e).__name__}); "
                                 f"pass --restart to start over or choose another --out") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise UserInputError(f"{path} is not an rtseg-train resume state; pass --restart or another --out")
        saved = TrainConfig.from_dict(state["config"])
        diffs = [k for k in _FIXED_ON_RESUME if getattr(saved, k) != getattr(self.cfg, k)]
        if diffs:
            what = ", ".join(f"{k}: saved {getattr(saved, k)!r} vs now {getattr(self.cfg, k)!r}" for k in diffs)
            raise UserInputError(f"{path} was trained with different settings ({what}); use the same "
                                 f"settings to resume, --restart to start over, or another --out")
        return state

    def _save_state(self, model, optimizer, scaler, it: int, best: dict[str, Any]) -> None:
        state = {
            "format": STATE_FORMAT,
            "iteration": it,
            "config": self.cfg.to_dict(),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "best": best,
        }
        with atomic_path(self.out / RESUME_FILE) as tmp:
            torch.save(state, tmp)

    # -- the loop ------------------------------------------------------------
    def run(self, stop_at: int | None = None) -> TrainResult:
        """Train until ``cfg.iters`` (or ``stop_at``, for tests and time-boxed runs)."""
        from rtseg.models import create_model
        from rtseg.models.checkpoint import save_checkpoint

        cfg = self.cfg
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = pick_device(cfg.device)
        cuda = device.type == "cuda"
        train_ds = require_nonempty(open_dataset(cfg.data, cfg.train_split, cfg.dataset_kind))
        val_ds = None
        if cfg.val_split:
            val_ds = require_nonempty(open_dataset(cfg.data, cfg.val_split, cfg.dataset_kind))
        info = train_ds.info
        if train_ds.orphan_images or train_ds.orphan_labels:
            self._log(f"warning: {len(train_ds.orphan_images)} images and {len(train_ds.orphan_labels)} labels "
                      f"have no partner and are skipped (rtseg-data-check lists them)")
        input_size = cfg.resolved_input_size()
        # Before the model is built or a resume state read: a bad spec fails at once.
        weights = self._class_weights(train_ds)

        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model, info.num_classes, aux=True)
        meta = dataset_meta(cfg.model, train_ds, input_size, model.input_mean, model.input_std)
        self._encoder_weights(model)
        if cfg.init:
            self._init_from(model, cfg.init)
        model.to(device)
        if cfg.channels_last:
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizer = torch.optim.SGD(param_groups(model, cfg.weight_decay, encoder=model.encoder,
                                                 encoder_lr_mult=cfg.encoder_lr_mult),
                                    lr=cfg.lr, momentum=cfg.momentum)
        scaler = torch.amp.GradScaler("cuda") if (cuda and cfg.amp) else None
        # CUDA: float16 with a loss scaler; CPU: bfloat16, whose float32-sized exponent
        # needs no scaler.
        amp_dtype = torch.float16 if scaler is not None else torch.bfloat16
        amp_on = scaler is not None or (not cuda and cfg.cpu_bf16)

        start = 0
        best: dict[str, Any] = {"miou": None, "iteration": None}
        state = self._load_state()
        if state is not None:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            start = int(state["iteration"])
            best = dict(state["best"])
            saved_iters = state["config"]["iters"]
            note = f" (planned total changed {saved_iters} -> {cfg.iters}: the LR curve follows the new total)" \
                if saved_iters != cfg.iters else ""
            self._log(f"resuming {self.out / RESUME_FILE} at iteration {start}{note}")
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "config.json", json.dumps(self.cfg.to_dict(), indent=2) + "\n")

        end = min(cfg.iters, stop_at) if stop_at is not None else cfg.iters
        names = list(info.class_names)
        train_log = CsvLog(self.out / TRAIN_LOG, ["iteration", "loss", "loss_main", "loss_aux", "loss_detail",
                                                  "lr", "it_per_s", "time"], start)
        val_log = CsvLog(self.out / VAL_LOG, ["iteration", "miou", "pixel_accuracy"] + names, start)
        tb = self._tensorboard() if cfg.tensorboard else None

        ohem = OhemCrossEntropy(info.ignore_index, cfg.ohem_thresh, class_weights=weights).to(device)
        detail_loss = DetailLoss(info.ignore_index)
        augment = TrainAugment(AugmentConfig(crop=cfg.crop, scale=cfg.scale, ignore_index=info.ignore_index))
        batches = IterationBatches(train_ds, augment, cfg.batch_size, cfg.seed, meta.mean, meta.std,
                                   cfg.iters, cfg.limit_train)
        # Workers are spawned, not forked: forking a process that already runs other
        # threads (OpenVINO/ONNX Runtime pools, Qt, a caller's own) can leave the child
        # with locks held by threads that do not exist there, and crashed the test run.
        loader = DataLoader(batches, batch_size=None, sampler=_Range(start, end), num_workers=cfg.workers,
                            pin_memory=cuda, prefetch_factor=2 if cfg.workers else None,
                            multiprocessing_context="spawn" if cfg.workers else None,
                            persistent_workers=False)

        self._log(f"training {cfg.model} on {info.name} ({batches.n} images, {info.num_classes} classes) "
                  f"on {device}: iterations {start} -> {end} of {cfg.iters}, batch {cfg.batch_size}, "
                  f"crop {cfg.crop[0]}x{cfg.crop[1]}, out {self.out}")
        progress = Progress(end, start, cfg.log_every, self.stream)
        result = TrainResult(self.out, start, best["miou"], best["iteration"], None)
        model.train()
        it = start
        ema = None
        try:
            for x, y in loader:
                lr = poly_lr(it, cfg.iters, cfg.lr, warmup_iters=cfg.warmup_iters)
                set_lr(optimizer, lr)
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_on):
                    out = model(x)
                if amp_on:
                    # OHEM sorts per-pixel losses and the detail loss uses Dice: both are
                    # computed in float32 from the half-precision logits.
                    out = {k: v.float() for k, v in out.items()}
                parts = self._losses(out, y, ohem, detail_loss)
                loss = parts["loss_main"] + cfg.aux_weight * parts["loss_aux"] \
                    + cfg.detail_weight * parts["loss_detail"]
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                it += 1
                lv = float(loss.detach())
                if not math.isfinite(lv):
                    raise UserInputError(f"the loss became {lv} at iteration {it}; lower --lr (now {cfg.lr}) "
                                         f"and resume from the last checkpoint")
                result.losses.append(lv)
                ema = lv if ema is None else 0.9 * ema + 0.1 * lv
                rate = progress.update(it, ema, lr)
                if it % cfg.log_every == 0 or it == end:
                    row = {"iteration": it, "loss": f"{lv:.5f}", "lr": f"{lr:.6g}", "it_per_s": f"{rate:.4f}",
                           "time": f"{time.time():.0f}"}
                    row.update({k: f"{float(v.detach()):.5f}" for k, v in parts.items()})
                    train_log.append(row)
                    if tb is not None:
                        tb.add_scalar("loss/total", lv, it)
                        tb.add_scalar("lr", lr, it)
                if val_ds is not None and (it % cfg.eval_every == 0 or it == cfg.iters):
                    best = self._evaluate(model, val_ds, meta, input_size, device, it, best, val_log, tb,
                                          progress, save_checkpoint)
                    model.train()
                if it % cfg.checkpoint_every == 0 or it == end:
                    self._save_state(model, optimizer, scaler, it, best)
                if it == cfg.iters:
                    self._save_final(model, meta, it, train_ds, save_checkpoint)
        except KeyboardInterrupt:
            # Keep what finished: the next run resumes from here.
            if it > start:
                self._save_state(model, optimizer, scaler, it, best)
                progress.message(f"interrupted: state saved at iteration {it} in {self.out / RESUME_FILE}")
            raise
        finally:
            if tb is not None:
                tb.close()
        if it > start or not (self.out / CURVES).exists():
            try:
                plot_curves(self.out / TRAIN_LOG, self.out / VAL_LOG, self.out / CURVES)
            except Exception as e:  # a plot must never cost a finished run
                progress.message(f"could not draw the curves ({e})")
        best_txt = "-" if best["miou"] is None else f"{100 * best['miou']:.2f}% at iteration {best['iteration']}"
        progress.message(f"done: iteration {it} of {cfg.iters}; best val mIoU {best_txt}; "
                         f"logs and checkpoints in {self.out}")
        result.iteration = it
        result.best_miou, result.best_iteration = best["miou"], best["iteration"]
        result.last_loss = result.losses[-1] if result.losses else None
        return result

    def _class_weights(self, train_ds) -> list[float] | None:
        """The per-class loss weights of ``cfg.class_weights`` (None for unweighted), logged."""
        from rtseg.data.check import class_frequencies
        from rtseg.train.losses import median_frequency_weights, parse_class_weights

        spec, info = self.cfg.class_weights, train_ds.info
        if spec == "none":
            return None
        try:
            weights = parse_class_weights(spec, info.num_classes)
            if weights is None:
                class_px, image_px = class_frequencies(train_ds, self.cfg.limit_train)
                weights = median_frequency_weights(class_px, image_px,
                                                   power=0.5 if spec == "sqrt-median-freq" else 1.0)
        except ValueError as e:
            raise UserInputError(str(e)) from None
        self._log("class weights (" + spec + "): "
                  + ", ".join(f"{n} {w:.2f}" for n, w in zip(info.class_names, weights, strict=True)))
        return weights

    @staticmethod
    def _losses(out: dict[str, torch.Tensor], y: torch.Tensor, ohem: OhemCrossEntropy,
                detail_loss: DetailLoss) -> dict[str, torch.Tensor]:
        zero = out["out"].new_zeros(()).float()
        parts = {"loss_main": ohem(out["out"], y), "loss_aux": zero, "loss_detail": zero}
        for key, value in out.items():
            if key == "out":
                continue
            if key.startswith("detail"):
                parts["loss_detail"] = parts["loss_detail"] + detail_loss(value, y)
            else:
                parts["loss_aux"] = parts["loss_aux"] + ohem(value, y)
        return parts

    def _evaluate(self, model, val_ds, meta, input_size, device, it, best, val_log, tb, progress,
                  save_checkpoint) -> dict[str, Any]:
        t0 = time.perf_counter()
        metrics = validate(model, val_ds, meta, input_size, device, self.cfg.limit_val)
        row = {"iteration": it, "miou": f"{metrics.miou:.5f}", "pixel_accuracy": f"{metrics.pixel_accuracy:.5f}"}
        row.update({n: ("" if v is None else f"{v:.5f}") for n, v in metrics.per_class().items()})
        val_log.append(row)
        if tb is not None:
            tb.add_scalar("val/miou", metrics.miou, it)
        improved = best["miou"] is None or metrics.miou > best["miou"]
        progress.message(f"val @ {it}: mIoU {100 * metrics.miou:.2f}%, pixel acc "
                         f"{100 * metrics.pixel_accuracy:.2f}% ({time.perf_counter() - t0:.0f}s)"
                         f"{' - new best' if improved else ''}")
        if improved:
            best = {"miou": metrics.miou, "iteration": it}
            extra = {"iteration": it, "val_split": self.cfg.val_split, "val_miou": metrics.miou,
                     "val_pixel_accuracy": metrics.pixel_accuracy, "val_per_class_iou": metrics.per_class(),
                     "train_config": self.cfg.to_dict()}
            if self._lineage:
                extra["lineage"] = self._lineage
            bmeta = meta.with_(weights=f"rtseg-train {self.cfg.model} on {val_ds.info.name}, iteration {it}",
                               extra={"val_miou": metrics.miou})
            save_checkpoint(self.out / BEST_FILE, model, bmeta, extra=extra)
        return best

    def _save_final(self, model, meta: ModelMeta, it: int, train_ds: SegDataset, save_checkpoint) -> None:
        """``final.pt``: the end of the schedule, chosen by no evaluation (a fixed schedule)."""
        extra: dict[str, Any] = {"iteration": it, "selection": "none (end of a fixed schedule)",
                                 "train_split": self.cfg.train_split, "train_frames": len(train_ds),
                                 "train_config": self.cfg.to_dict()}
        if self._lineage:
            extra["lineage"] = self._lineage
        fmeta = meta.with_(weights=f"rtseg-train {self.cfg.model} on {train_ds.info.name} {self.cfg.train_split}, "
                                   f"{it} iterations (fixed schedule)")
        save_checkpoint(self.out / FINAL_FILE, model, fmeta, extra=extra)

    def _encoder_weights(self, model: SegModel) -> None:
        """Initialise the encoder from ImageNet weights as ``cfg.backbone_weights`` says, logged."""
        from rtseg.models.backbone_weights import load_encoder_weights, packaged_imagenet_file

        spec = self.cfg.backbone_weights
        if spec == "none":
            return
        if spec in ("auto", "imagenet"):
            path = packaged_imagenet_file(model, required=spec == "imagenet")
            if path is None:
                return
        else:
            path = Path(os.path.expanduser(spec))
        self._log(load_encoder_weights(model, path).summary())

    def _init_from(self, model, path: str) -> None:
        from rtseg.models.checkpoint import load_model

        loaded = load_model(path)
        src = loaded.model.state_dict()
        dst = model.state_dict()
        # Take every tensor whose name and shape match (a backbone, or a model
        # trained on another dataset minus its classifiers); report the rest.
        take = {k: v for k, v in src.items() if k in dst and dst[k].shape == v.shape}
        model.load_state_dict(take, strict=False)
        from rtseg.train.export import lineage_of

        self._lineage = lineage_of(path)
        self._log(f"initialised {len(take)}/{len(dst)} tensors from {path} "
                  f"({len(dst) - len(take)} keep their random initialisation)")

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserInputError("--tensorboard needs the tensorboard package: pip install tensorboard "
                                 "(or pip install 'rtseg[train]'); the CSV logs work without it") from None
        return SummaryWriter(str(self.out / "tensorboard"))
