"""Real training runs (segmentation and behaviour) killed with SIGKILL mid-epoch, then
``--resume``d, end bit-identical (weights, history, OOF) to an uninterrupted run with the same seed."""
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
RUNS = {
    "segmentation": ("exp093_5", ["n_folds=2", "epochs=4", "demo_train=10", "demo_test=2", "input_h=64", "input_w=96",
                                  "crop_h=64", "crop_w=96", "infer_h=64", "infer_w=96", "tta_scales=1.0",
                                  "temperatures=1.0", "batch_size=2", "valid_batch_size=2", "deterministic=true"]),
    "behaviour": ("mabe_v6", ["n_folds=2", "epochs=12", "demo_videos=12", "demo_frames=900", "batch_size=8",
                              "conv_channels=32,64", "lstm_hidden=64", "deterministic=true"]),
}


def command(exp: str, items: list[str], *extra: str) -> list[str]:
    sets = [a for s in items for a in ("--set", s)]
    return [sys.executable, str(REPO / "exp" / f"{exp}.py"), "--demo", "--fold", "0", *sets, *extra]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


def history_rows(fold: Path) -> int:
    try:
        return len(pd.read_csv(fold / "history.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


@pytest.mark.timeout(900)
@pytest.mark.parametrize("task", sorted(RUNS))
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, task):
    exp, items = RUNS[task]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    for d in (ref, killed):
        d.mkdir()
    assert subprocess.run(command(exp, items), cwd=ref, env=env(), capture_output=True, timeout=600).returncode == 0
    fold = killed / "output/demo" / exp / "fold0"
    proc = subprocess.Popen(command(exp, items), cwd=killed, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while history_rows(fold) < 1 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(random.Random(0).uniform(0.0, 0.5))  # somewhere inside a later epoch (or a checkpoint write)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed; make it longer"
    epochs = int(next(i for i in items if i.startswith("epochs=")).split("=")[1])
    assert history_rows(fold) < epochs
    resumed = subprocess.run(command(exp, items, "--resume"), cwd=killed, env=env(), capture_output=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = ref / "output/demo" / exp / "fold0", fold
    for name in ("best.pt", "last.pt"):
        wa = torch.load(a / "checkpoints" / name, weights_only=True)["model"]
        wb = torch.load(b / "checkpoints" / name, weights_only=True)["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    ha = pd.read_csv(a / "history.csv").drop(columns="seconds")
    hb = pd.read_csv(b / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(ha, hb)
    np.testing.assert_array_equal(np.load(a / "oof/probs.npy"), np.load(b / "oof/probs.npy"))
    assert not list(b.rglob("*.tmp")), "a temp file from the killed write was left behind"
