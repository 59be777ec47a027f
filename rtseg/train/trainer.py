"""``rtseg.train.trainer``: the names ``rtseg-train`` and scripts use, re-exported from where they live.

The trainer is split by role: ``rtseg.train.config`` (``TrainConfig`` and the
run's file names), ``rtseg.train.loop`` (``Trainer``, data, validation) and
``rtseg.train.logs`` (progress line, CSV logs, curves). Behaviour and the
resume-state format (``last.pt``: format tag, iteration, ``TrainConfig.to_dict()``,
model, optimizer, scaler, best) are those of the single module this was.
"""

from __future__ import annotations

from rtseg.train.config import (
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
from rtseg.train.logs import CsvLog, Progress, plot_curves
from rtseg.train.loop import (
    IterationBatches,
    Trainer,
    TrainResult,
    dataset_meta,
    pick_device,
    validate,
)

__all__ = ["BEST_FILE", "CURVES", "FINAL_FILE", "RESUME_FILE", "STATE_FORMAT", "TRAIN_LOG", "VAL_LOG", "_FIXED_ON_RESUME",
           "CsvLog", "IterationBatches", "Progress", "TrainConfig", "TrainResult", "Trainer", "dataset_meta",
           "pick_device", "plot_curves", "validate"]
