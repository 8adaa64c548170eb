"""Multi-GPU / multi-machine workflow on CPU: torchrun (2 gloo processes) on a real experiment
file, and folds run as separate processes sharing one output/ folder, then the experiment summary
and an ensemble check that every fold is present."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TINY = ["n_folds=2", "epochs=1", "demo_train=8", "demo_test=2", "input_h=64", "input_w=96", "crop_h=64", "crop_w=96",
        "infer_h=64", "infer_w=96", "tta_scales=1.0", "tta_flip=false", "temperatures=1.0", "batch_size=4",
        "valid_batch_size=2"]


def args(*extra: str) -> list[str]:
    return ["--demo", *[a for s in TINY for a in ("--set", s)], *extra]


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(900)
def test_torchrun_and_folds_on_separate_processes(tmp_path):
    exp = str(REPO / "exp" / "exp093_5.py")
    ddp = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               exp, *args("--fold", "0")], tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    fold0 = tmp_path / "output/demo/exp093_5/fold0"
    assert (fold0 / "oof/manifest.json").exists() and (fold0 / "report.md").exists()
    # fold 1 on "another machine": a separate process writing to the same output/
    other = run([sys.executable, exp, *args("--fold", "1")], tmp_path)
    assert other.returncode == 0, other.stderr[-3000:]
    assert (tmp_path / "output/demo/exp093_5/metrics.json").exists()  # the last fold finished the experiment
    missing = run([sys.executable, str(REPO / "ensemble.py"), "--demo", "--exps", "exp093_5", "exp093_4"], tmp_path)
    assert missing.returncode == 2 and "exp093_4" in missing.stderr


def test_ensemble_waits_for_members_then_gives_up(tmp_path):
    import threading
    import time

    from kagglekit.blend import wait_for_members
    from kagglekit.oof import OOFError
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "metrics.json").write_text("{}")
    threading.Timer(0.3, lambda: ((tmp_path / "b").mkdir(), (tmp_path / "b" / "metrics.json").write_text("{}"))).start()
    start = time.monotonic()
    wait_for_members(tmp_path, ["a", "b"], seconds=10, poll=0.1)
    assert 0.2 < time.monotonic() - start < 5
    with pytest.raises(OOFError, match=r"\['c'\]"):
        wait_for_members(tmp_path, ["a", "c"], seconds=1, poll=0.1)
