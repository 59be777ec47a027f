"""The trainer on a tiny synthetic dataset (real PNG files), on the CPU: the loss goes
down, resume continues exactly, best checkpoints load, the CLI works end to end."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch

from rtseg.core.errors import UserInputError
from rtseg.data.synth import write_synthetic_dataset
from rtseg.train.trainer import BEST_FILE, CURVES, RESUME_FILE, TRAIN_LOG, VAL_LOG, TrainConfig, Trainer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("synth"), splits={"train": 4, "val": 2},
                                   size=(64, 80), num_classes=4)


def _cfg(data, out, **kw) -> TrainConfig:
    base = dict(model="stdc1", data=str(data), out_dir=str(out), crop=(64, 64), input_size=(64, 80),
                batch_size=4, iters=16, lr=0.003, warmup_iters=0, scale=(1.0, 1.0), eval_every=100,
                checkpoint_every=100, log_every=1, workers=0, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def _quiet() -> io.StringIO:
    return io.StringIO()


def test_a_few_cpu_iterations_reduce_the_loss(tiny, tmp_path):
    res = Trainer(_cfg(tiny, tmp_path / "run", eval_every=16), stream=_quiet()).run()
    assert res.iteration == 16 and len(res.losses) == 16
    first, last = np.mean(res.losses[:4]), np.mean(res.losses[-4:])
    assert last < 0.85 * first, res.losses
    # Logs, best checkpoint and curves were written.
    rows = list(csv.DictReader((tmp_path / "run" / TRAIN_LOG).open()))
    assert [int(r["iteration"]) for r in rows] == list(range(1, 17))
    assert all(float(r["loss_detail"]) > 0 and float(r["loss_aux"]) > 0 for r in rows)  # STDC heads trained
    val = list(csv.DictReader((tmp_path / "run" / VAL_LOG).open()))
    assert len(val) == 1 and 0 <= float(val[0]["miou"]) <= 1
    assert (tmp_path / "run" / CURVES).stat().st_size > 1000
    from rtseg.models.checkpoint import load_model

    loaded = load_model(tmp_path / "run" / BEST_FILE)
    assert loaded.meta.model == "stdc1" and loaded.meta.input_size == (64, 80)
    assert loaded.meta.class_names == ("class 0", "class 1", "class 2", "class 3")
    assert loaded.meta.extra["val_miou"] == pytest.approx(float(val[0]["miou"]), abs=1e-5)
    assert loaded.extra["iteration"] == 16 and set(loaded.extra["val_per_class_iou"]) == set(
        loaded.meta.class_names)


def test_cpu_bf16_autocast_trains_in_bf16_and_keeps_float32_weights(tiny, tmp_path):
    """--cpu-bf16: the convolutions run in bfloat16 (seen by a global forward hook), the loss still
    falls, the weights stay float32 and the setting is recorded in the run's config."""
    import json

    seen: set[torch.dtype] = set()

    def hook(module, args, output):
        if isinstance(module, torch.nn.Conv2d) and module.training:
            seen.add(output.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        res = Trainer(_cfg(tiny, tmp_path / "run", cpu_bf16=True, val_split=None), stream=_quiet()).run()
    finally:
        handle.remove()
    assert seen == {torch.bfloat16}
    assert np.mean(res.losses[-4:]) < 0.85 * np.mean(res.losses[:4]), res.losses
    assert json.loads((tmp_path / "run" / "config.json").read_text())["cpu_bf16"] is True
    state = torch.load(tmp_path / "run" / RESUME_FILE, weights_only=True)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())


def test_resume_continues_from_the_same_iteration(tiny, tmp_path):
    cfg_a = _cfg(tiny, tmp_path / "a", iters=6, checkpoint_every=3)
    Trainer(cfg_a, stream=_quiet()).run()
    cfg_b = _cfg(tiny, tmp_path / "b", iters=6, checkpoint_every=3)
    first = Trainer(cfg_b, stream=_quiet()).run(stop_at=3)
    assert first.iteration == 3
    state = torch.load(tmp_path / "b" / RESUME_FILE, map_location="cpu", weights_only=True)
    assert state["iteration"] == 3
    log = _quiet()
    second = Trainer(cfg_b, stream=log).run()
    assert "resuming" in log.getvalue() and "at iteration 3" in log.getvalue()
    assert second.iteration == 6 and len(second.losses) == 3
    # Same batches, same LR, same momentum: the interrupted run ends where the straight one does.
    a = torch.load(tmp_path / "a" / RESUME_FILE, map_location="cpu", weights_only=True)
    b = torch.load(tmp_path / "b" / RESUME_FILE, map_location="cpu", weights_only=True)
    assert a["iteration"] == b["iteration"] == 6
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-4, atol=1e-5, msg=k)
    rows = list(csv.DictReader((tmp_path / "b" / TRAIN_LOG).open()))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    # Nothing left to do: a third run trains nothing.
    assert Trainer(cfg_b, stream=_quiet()).run().losses == []


def test_resume_refuses_changed_settings(tiny, tmp_path):
    Trainer(_cfg(tiny, tmp_path / "r", iters=4, val_split=None), stream=_quiet()).run(stop_at=1)
    with pytest.raises(UserInputError, match="lr: saved 0.003 vs now 0.01"):
        Trainer(_cfg(tiny, tmp_path / "r", iters=4, lr=0.01, val_split=None), stream=_quiet()).run()
    # --restart starts over with the new settings.
    res = Trainer(_cfg(tiny, tmp_path / "r", iters=4, lr=0.01, val_split=None), restart=True,
                  stream=_quiet()).run(stop_at=1)
    assert res.iteration == 1


def test_class_weights_are_computed_logged_and_fixed_on_resume(tiny, tmp_path):
    log = io.StringIO()
    res = Trainer(_cfg(tiny, tmp_path / "w", iters=4, val_split=None, class_weights="median-freq"),
                  stream=log).run(stop_at=1)
    assert res.iteration == 1 and np.isfinite(res.losses[0])
    line = next(ln for ln in log.getvalue().splitlines() if ln.startswith("class weights (median-freq):"))
    weights = [float(part.rsplit(" ", 1)[1]) for part in line.split(": ", 1)[1].split(", ")]
    mid = sorted(weights)[1:3]
    assert len(weights) == 4 and all(w > 0 for w in weights) and mid[0] <= 1.0 <= mid[1]  # 1 at the median
    with pytest.raises(UserInputError, match="class_weights: saved 'median-freq' vs now 'none'"):
        Trainer(_cfg(tiny, tmp_path / "w", iters=4, val_split=None), stream=_quiet()).run()
    with pytest.raises(UserInputError, match="one per class"):
        Trainer(_cfg(tiny, tmp_path / "w2", iters=4, val_split=None, class_weights="1,2"),
                stream=_quiet()).run()


def test_bad_configs_are_user_errors(tiny, tmp_path):
    with pytest.raises(UserInputError, match="multiple of 8"):
        Trainer(_cfg(tiny, tmp_path, crop=(60, 64)))
    with pytest.raises(UserInputError, match="batch-size"):
        Trainer(_cfg(tiny, tmp_path, batch_size=1))
    with pytest.raises(UserInputError, match="does not exist"):
        Trainer(_cfg(tmp_path / "missing", tmp_path / "o"), stream=_quiet()).run()


def test_cli_train_then_export_best(tiny, tmp_path, capsys):
    from rtseg.cli.train import main

    out = tmp_path / "cli"
    rc = main(["--model", "stdc1", "--data", str(tiny), "--out", str(out), "--crop", "64x64",
               "--input-size", "64x80", "--batch-size", "2", "--iters", "3", "--warmup-iters", "1",
               "--eval-every", "3", "--workers", "1", "--threads", "1", "--lr", "0.003"])
    assert rc == 0
    assert (out / BEST_FILE).is_file() and (out / RESUME_FILE).is_file()
    dest = tmp_path / "assets" / "m.pt"
    assert main(["--out", str(out), "--export-best", str(dest)]) == 0
    printed = capsys.readouterr().out
    assert "fp16" in printed and "| class | val IoU % |" in printed and "| class 3 |" in printed
    assert "command: `rtseg-train --model stdc1" in printed
    from rtseg.models.checkpoint import load_model

    loaded = load_model(dest)
    assert all(p.dtype == torch.float32 for p in loaded.model.parameters())  # FP16 file, float32 model
    assert not loaded.model.aux  # training-only heads are not shipped
    # The shipped weights are exactly the selected checkpoint's, rounded to FP16. (Labels are not
    # compared: after three iterations the BatchNorm statistics are barely estimated and the
    # logits reach ~1e5, so any rounding flips near-ties; the bundled model's FP16 storage is
    # measured on CamVid val in assets/README.md.)
    full = load_model(out / BEST_FILE)
    ref = full.model.state_dict()
    for k, v in loaded.model.state_dict().items():
        if v.is_floating_point():
            assert torch.equal(v, ref[k].half().float()), k
        else:
            assert torch.equal(v, ref[k]), k
    assert main(["--out", str(tmp_path / "none"), "--export-best", str(dest)]) != 0


def test_sigterm_saves_the_resume_state(tiny, tmp_path):
    """`kill PID` on a background run (which ignores SIGINT) saves last.pt and exits 130."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "bg"
    cmd = [sys.executable, "-m", "rtseg.cli.train", "--data", str(tiny), "--out", str(out), "--crop", "64x64",
           "--batch-size", "2", "--iters", "100000", "--warmup-iters", "1", "--workers", "0", "--threads", "1",
           "--checkpoint-every", "100000", "--eval-every", "100000", "--log-every", "1"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:  # wait until at least one iteration finished
            if "/100000 loss" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 130
    state = torch.load(out / RESUME_FILE, map_location="cpu", weights_only=True)
    assert state["iteration"] >= 1


def test_a_run_from_init_records_the_history_of_its_start_weights(tiny, tmp_path, capsys):
    """Fine-tuning phases chain: the shipped file names every earlier phase's command and file hash."""
    from rtseg.cli.train import main
    from rtseg.core.hashing import file_sha256
    from rtseg.models.checkpoint import load_model

    common = ["--model", "stdc1", "--data", str(tiny), "--crop", "64x64", "--input-size", "64x80",
              "--batch-size", "2", "--warmup-iters", "1", "--eval-every", "2", "--workers", "0",
              "--threads", "1", "--lr", "0.003"]
    assert main(common + ["--out", str(tmp_path / "p1"), "--iters", "2"]) == 0
    first = tmp_path / "first.pt"
    assert main(["--out", str(tmp_path / "p1"), "--export-best", str(first)]) == 0
    assert main(common + ["--out", str(tmp_path / "p2"), "--iters", "2", "--init", str(first)]) == 0
    second = tmp_path / "second.pt"
    assert main(["--out", str(tmp_path / "p2"), "--export-best", str(second)]) == 0
    assert main(common + ["--out", str(tmp_path / "p3"), "--iters", "2", "--init", str(second)]) == 0
    third = tmp_path / "third.pt"
    capsys.readouterr()
    assert main(["--out", str(tmp_path / "p3"), "--export-best", str(third)]) == 0
    card = capsys.readouterr().out

    lineage = load_model(third).extra["lineage"]
    assert [e["file"] for e in lineage] == ["first.pt", "second.pt"]
    assert [e["sha256"] for e in lineage] == [file_sha256(first), file_sha256(second)]
    assert str(tmp_path / "p1") in lineage[0]["command"] and "--init" not in lineage[0]["command"]
    assert f"--init {second}" not in lineage[1]["command"] and f"--init {first}" in lineage[1]["command"]
    assert all(e["iteration"] == 2 and e["iters"] == 2 and 0 <= e["val_miou"] <= 1 for e in lineage)
    assert "the training phases before this one, oldest first:" in card
    assert f"1. `first.pt` (sha256 {file_sha256(first)[:12]}" in card and str(tmp_path / "p1") in card
    # A run from before lineage was recorded: export reads the --init file if it is still there.
    best = torch.load(tmp_path / "p3" / BEST_FILE, weights_only=True)
    del best["extra"]["lineage"]
    torch.save(best, tmp_path / "p3" / BEST_FILE)
    assert main(["--out", str(tmp_path / "p3"), "--export-best", str(third)]) == 0
    assert [e["sha256"] for e in load_model(third).extra["lineage"]] == [file_sha256(first), file_sha256(second)]
    second.unlink()
    capsys.readouterr()
    assert main(["--out", str(tmp_path / "p3"), "--export-best", str(third)]) == 0
    assert "its history was not recorded" in capsys.readouterr().out


def test_fixed_schedule_without_val_ships_final(tiny, tmp_path, capsys):
    from rtseg.cli.train import main
    from rtseg.models.checkpoint import load_model
    from rtseg.train.trainer import FINAL_FILE

    out = tmp_path / "fixed"
    args = ["--model", "stdc1", "--data", str(tiny), "--out", str(out), "--crop", "64x64", "--input-size", "64x80",
            "--iters", "3", "--batch-size", "2", "--warmup-iters", "0", "--workers", "0", "--val-split", "none",
            "--scale", "1", "1"]
    dest = tmp_path / "shipped.pt"
    assert main(["--out", str(out), "--export-final", str(dest)]) != 0  # nothing trained yet
    assert "has not finished" in capsys.readouterr().err
    assert main(args + ["--stop-at", "2"]) == 0
    assert not (out / FINAL_FILE).exists() and not (out / BEST_FILE).exists()
    assert main(args) == 0  # resumes to the end of the schedule
    assert (out / FINAL_FILE).is_file() and not (out / BEST_FILE).exists()
    assert main(["--out", str(out), "--export-final", str(dest)]) == 0
    card = capsys.readouterr().out
    assert "fixed 3-iteration schedule" in card and "no checkpoint selection" in card
    loaded = load_model(dest)
    assert loaded.extra["iteration"] == 3 and loaded.extra["selection"].startswith("none")
    assert "fixed schedule" in loaded.meta.weights


def test_the_split_trainer_keeps_its_names_and_its_config_needs_no_torch():
    """rtseg.train.trainer was split into config / loop / logs: every name scripts and rtseg-train
    used is still importable from it, and a run's config round-trips as in the resume state."""
    import subprocess
    import sys

    import rtseg.train.trainer as t

    for name in ("TrainConfig", "Trainer", "TrainResult", "RESUME_FILE", "BEST_FILE", "FINAL_FILE", "TRAIN_LOG",
                 "VAL_LOG", "CURVES", "STATE_FORMAT", "CsvLog", "Progress", "plot_curves", "validate",
                 "dataset_meta", "pick_device", "IterationBatches", "_FIXED_ON_RESUME"):
        assert hasattr(t, name), name
    cfg = t.TrainConfig(crop=(64, 96), scale=(0.75, 1.5), input_size=(72, 96))
    assert t.TrainConfig.from_dict(cfg.to_dict()) == cfg
    assert t.IterationBatches.__module__ == "rtseg.train.loop"  # what DataLoader workers unpickle
    subprocess.run([sys.executable, "-c", "import sys, rtseg.train.config as c; c.TrainConfig().check; "
                    "assert 'torch' not in sys.modules"], check=True)
