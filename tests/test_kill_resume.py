"""Real training runs killed with SIGKILL mid-epoch (or mid-period), then ``--resume``d, end
bit-identical (weights, history, OOF) to an uninterrupted run with the same seed. Segmentation,
behaviour and multi-label run in CI; detection (iteration-based, killed mid data pass) and
keypoints (arm A of the gate experiment) in the slow suite (``make test-slow``)."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
RUNS = {  # task → (experiment, --set items, history rows of a full run)
    "segmentation": ("exp093_5", ["n_folds=2", "epochs=4", "demo_train=10", "demo_test=2", "input_h=64", "input_w=96",
                                  "crop_h=64", "crop_w=96", "infer_h=64", "infer_w=96", "tta_scales=1.0",
                                  "temperatures=1.0", "batch_size=2", "valid_batch_size=2", "deterministic=true"], 4),
    "behaviour": ("mabe_v6", ["n_folds=2", "epochs=12", "demo_videos=12", "demo_frames=900", "batch_size=8",
                              "conv_channels=32,64", "lstm_hidden=64", "deterministic=true"], 12),
    "multilabel": ("door_v20260515", ["n_folds=4", "epochs=5", "image_size=64", "batch_size=16", "swa_n=2",
                                      "keep_epoch_checkpoints=2", "deterministic=true"], 5),
}
SLOW_RUNS = {
    "detection": ("frcnn_run1", ["max_iters=24", "eval_period=4", "warmup_iters=4", "lr_milestones=16",
                                 "train_min_sizes=96,128", "test_min_size=128", "tta_sizes=96,128", "max_size=192",
                                 "batch_size=2", "deterministic=true"], 6),
    "keypoints": ("vk_phase0_v4", ["epochs=4", "image_size=96", "max_size=160", "deterministic=true"], 4),
}


def command(exp: str, items: list[str], *extra: str) -> list[str]:
    sets = [a for s in items for a in ("--set", s)]
    fold = [] if exp.startswith("vk_") else ["--fold", "0"]  # the gate experiment runs its arms' single fold
    return [sys.executable, str(REPO / "exp" / f"{exp}.py"), "--demo", *fold, *sets, *extra]


def env(task: str = "") -> dict[str, str]:
    extra = {"KAGGLEKIT_SHARED": "/nonexistent"} if task == "detection" else {}  # generated shapes: fast
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"), **extra}


def fold_dir(root: Path, exp: str) -> Path:
    return root / "output/demo" / (f"{exp}_A" if exp.startswith("vk_") else exp) / "fold0"


def assert_same_outputs(a: Path, b: Path) -> None:
    """Weights of best/last, history (minus wall time) and every OOF/evaluation array or JSON."""
    for name in ("best.pt", "last.pt"):
        wa = torch.load(a / "checkpoints" / name, weights_only=True)["model"]
        wb = torch.load(b / "checkpoints" / name, weights_only=True)["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    ha = pd.read_csv(a / "history.csv").drop(columns="seconds")
    hb = pd.read_csv(b / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(ha, hb)
    files = sorted(p.relative_to(a) for p in list(a.glob("oof/*.npy")) + list(a.glob("oof/*.json"))
                   + list(a.glob("evaluation/*/*.json")))
    assert files, f"{a}: no OOF / evaluation files to compare"
    for rel in files:
        if rel.suffix == ".npy":
            np.testing.assert_array_equal(np.load(a / rel), np.load(b / rel), err_msg=str(rel))
        else:
            assert (a / rel).read_text() == (b / rel).read_text(), rel


def history_rows(fold: Path) -> int:
    try:
        return len(pd.read_csv(fold / "history.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def kill_and_resume(tmp_path: Path, task: str, exp: str, items: list[str], full_rows: int) -> None:
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    for d in (ref, killed):
        d.mkdir()
    done = subprocess.run(command(exp, items), cwd=ref, env=env(task), capture_output=True, timeout=900)
    assert done.returncode in (0, 10, 20), done.stderr[-2000:]  # the gate experiment exits with its verdict
    fold = fold_dir(killed, exp)
    proc = subprocess.Popen(command(exp, items), cwd=killed, env=env(task), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while history_rows(fold) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random(0).uniform(0.0, 0.5))  # somewhere inside a later epoch (or a checkpoint write)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed; make it longer"
    assert history_rows(fold) < full_rows
    resumed = subprocess.run(command(exp, items, "--resume"), cwd=killed, env=env(task), capture_output=True, timeout=900)
    assert resumed.returncode in (0, 10, 20), resumed.stderr[-2000:]
    assert_same_outputs(fold_dir(ref, exp), fold)
    assert not list(fold.rglob("*.tmp")), "a temp file from the killed write was left behind"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("task", sorted(RUNS))
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, task):
    kill_and_resume(tmp_path, task, *RUNS[task])


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("task", sorted(SLOW_RUNS))
def test_slow_sigkill_then_resume_is_bit_identical(tmp_path, task):
    kill_and_resume(tmp_path, task, *SLOW_RUNS[task])
