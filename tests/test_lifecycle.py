"""The run lifecycle (issue 12, point 5): a pre-flight pass names every bad input file before
anything is written; a run that fails before its first checkpoint leaves no fold folder (a resumed
one is never removed); ``--resume --overwrite`` is refused; SIGINT / SIGTERM stop with one line
(exit 130 / 143), the checkpoint already written stays valid and ``--resume`` continues."""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import sets
from kagglekit import cli
from kagglekit.experiment import runner
from kagglekit.config import ConfigError, ExperimentConfig
from kagglekit.engine.checkpoint import load_checkpoint
from kagglekit.engine.fit import FitSettings, fit
from kagglekit.engine.seed import seed_everything
from kagglekit.engine.stop import Interrupted
from kagglekit.experiment.contract import MetricSpec

sys.path.insert(0, str(Path(__file__).parent))
from toy import ToyDataset, ToyEvaluator, ToyModel, killer_evaluator  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------- pre-flight
def corrupt(path: Path) -> Path:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really an image")
    return path


def _segmentation(root: Path):
    from kagglekit.demo.nyuv2 import generate_nyuv2
    from kagglekit.tasks.segmentation.config import SegmentationConfig
    generate_nyuv2(root, n_train=4, n_test=2, seed=0)
    deleted, damaged = root / "train/image/0002.png", root / "train/label/0003.png"
    return SegmentationConfig(name="pf", data_dir=str(root)), deleted, damaged


def _behaviour(root: Path):
    from kagglekit.demo.mabe import generate_mabe
    from kagglekit.tasks.behavior.config import BehaviorConfig
    generate_mabe(root, n_videos=4, n_frames=120, seed=0)
    deleted = sorted(root.glob("train_tracking/*/*.parquet"))[0]
    damaged = sorted(root.glob("train_annotation/*/*.parquet"))[-1]
    damaged.write_bytes(damaged.read_bytes()[:64])  # truncated: no parquet footer
    return BehaviorConfig(name="pf", data_dir=str(root), view="pairs"), deleted, damaged


def _multilabel(root: Path):
    from kagglekit.demo.doors import generate_doors
    from kagglekit.tasks.multilabel.config import MultiLabelConfig
    generate_doors(root, n=24)
    return MultiLabelConfig(name="pf", data_dir=str(root), comp="pf"), root / "images/1.jpg", root / "images/2.jpg"


def _detection(root: Path):
    from kagglekit.demo.shapes import make_shapes_dataset
    from kagglekit.tasks.detection.config import DetectionConfig
    make_shapes_dataset(root, n_train=8, n_val=4, n_test=4)
    deleted, damaged = sorted(root.glob("images/train/*"))[0], sorted(root.glob("images/val/*"))[0]
    return DetectionConfig(name="pf", comp="pf", data_dir=str(root), data_format="yolo", n_folds=1), deleted, damaged


def _keypoints(root: Path):
    from kagglekit.demo.keypoints import prepare_keypoint_demo
    from kagglekit.io import load_json
    from kagglekit.tasks.keypoints.config import KeypointConfig
    prepare_keypoint_demo(root, n_synthetic=4)
    train, test = (load_json(root / f"real_{s}.json")["images"][0]["file_name"] for s in ("train", "test"))
    cfg = KeypointConfig(name="pf", data_dir=str(root), n_folds=1, real_train_json="real_train.json",
                         real_val_json="real_test.json", real_test_json="real_test.json", real_image_dir="real/images",
                         use_synthetic=True, synthetic_json="synthetic/annotations.json",
                         synthetic_image_dir="synthetic/images")
    return cfg, root / "real/images" / train, root / "real/images" / test


DATASETS = {"segmentation": _segmentation, "behaviour": _behaviour, "multilabel": _multilabel,
            "detection": _detection, "keypoints": _keypoints}


@pytest.mark.parametrize("task", sorted(DATASETS))
def test_preflight_names_every_bad_file_of_each_task(in_tmp, monkeypatch, task):
    monkeypatch.setenv("KAGGLEKIT_SHARED", "/nonexistent")  # generated stand-ins only; shared data stay untouched
    cfg, deleted, damaged = DATASETS[task](in_tmp / "data")
    if task != "behaviour":  # (its damage is done by the maker: a truncated parquet)
        assert runner.build_task(cfg).preflight(0) == []
        corrupt(damaged)
    deleted.unlink()
    start = time.perf_counter()
    problems = runner.build_task(cfg).preflight(0)
    assert time.perf_counter() - start < 5
    assert len(problems) == 2, problems
    assert str(deleted) in problems[0] + problems[1] and str(damaged) in problems[0] + problems[1]
    assert any("not found" in p for p in problems) and any("corrupt" in p for p in problems)


TINY_SEG = ["n_folds=2", "demo_train=8", "demo_test=2", "input_h=64", "input_w=96", "crop_h=64", "crop_w=96",
            "infer_h=64", "infer_w=96", "tta_scales=1.0", "tta_flip=false", "temperatures=1.0", "batch_size=4",
            "valid_batch_size=2", "num_workers=0"]


def test_failed_preflight_is_one_error_naming_both_files_and_writes_no_fold(in_tmp, capsys):
    """Through the experiment CLI: one image deleted, one label corrupted → exit 2, one error
    listing both (count first), and nothing under output/ (the fold was never claimed)."""
    from kagglekit.tasks.segmentation.config import SegmentationConfig
    cfg, argv = SegmentationConfig(name="seg_pf"), ["--demo", "--fold", "1", *sets(TINY_SEG + ["epochs=1"])]
    runner.build_task(cli.resolve_config(cfg, argv)[0]).prepare_demo()
    root = in_tmp / "input/nyuv2_demo"
    (root / "train/image/0004.png").unlink()
    corrupt(root / "train/label/0006.png")
    assert cli.main(cfg, argv) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 1
    message = err[err.index("error: "):]
    assert "pre-flight check of seg_pf fold 1 found 2 problem(s)" in message
    assert "train/image/0004.png: image file not found" in message
    assert "train/label/0006.png: cannot decode label PNG" in message
    assert not (in_tmp / "output").exists()


# ------------------------------------------------------------------------ no fold left by an early failure
class ToyTask:
    """tests/toy.py's regression problem as a runner task, with one injectable failure."""

    metric = MetricSpec("rmse", "min", fold_key="best_valid_rmse")

    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.evaluator = {"first_eval": killer_evaluator(0), "second_eval": killer_evaluator(1)}.get(fail, ToyEvaluator)

    def preflight(self, fold: int) -> list[str]:
        return []

    def fold_datasets(self, fold: int):
        return ToyDataset(64, 0), ToyDataset(32, 1)

    def build_model(self, initial_weights: bool = True):  # the Task contract's signature
        if self.fail == "build_model":
            raise RuntimeError("injected failure in build_model")
        return ToyModel()

    def make_evaluator(self, valid_ds=None):
        return self.evaluator()

    def finalize(self, model, fold, fold_dir):
        if self.fail == "finalize":
            raise RuntimeError("injected failure in finalize")
        return {}

    def report_fold(self, fold_dir, history, metrics) -> None:
        pass


def toy_cfg(tmp_path: Path) -> ExperimentConfig:
    return ExperimentConfig(name="toy", output_dir=str(tmp_path / "out"), n_folds=2, epochs=3, batch_size=8, lr=0.05,
                            monitor="valid_rmse", monitor_mode="min", num_workers=0, seed=3)


def run_toy(monkeypatch, cfg: ExperimentConfig, fail: str = "", **flags):
    monkeypatch.setattr(runner, "build_task", lambda c: ToyTask(fail))
    return runner.run_fold(cfg, 0, **flags)


@pytest.mark.parametrize("fail, error", [("build_model", RuntimeError), ("first_eval", KeyboardInterrupt)])
def test_failure_before_first_checkpoint_removes_only_the_fold(tmp_path, monkeypatch, fail, error):
    cfg = toy_cfg(tmp_path)
    other = runner.exp_dir(cfg) / "fold1" / "keep.txt"  # another fold's file: left alone
    other.parent.mkdir(parents=True)
    other.write_text("x")
    with pytest.raises(error):
        run_toy(monkeypatch, cfg, fail)
    assert not (runner.exp_dir(cfg) / "fold0").exists()
    assert other.read_text() == "x"
    run_toy(monkeypatch, cfg)  # the next plain run is not refused
    assert (runner.exp_dir(cfg) / "fold0" / "metrics.json").exists()


def test_failure_after_a_checkpoint_keeps_the_fold_and_a_resumed_fold_is_never_removed(tmp_path, monkeypatch):
    cfg = toy_cfg(tmp_path)
    fold = runner.exp_dir(cfg) / "fold0"
    with pytest.raises(KeyboardInterrupt):
        run_toy(monkeypatch, cfg, "second_eval")  # epoch 1 written, killed in epoch 2's evaluation
    assert load_checkpoint(fold / "checkpoints" / "last.pt")["epoch"] == 1
    (fold / "checkpoints" / "last.pt").unlink()  # even with no resume point of its own ...
    for name in ("last_prev.pt", "best.pt"):
        (fold / "checkpoints" / name).unlink(missing_ok=True)
    with pytest.raises(RuntimeError, match="build_model"):
        run_toy(monkeypatch, cfg, "build_model", resume=True)  # ... a resumed fold stays
    assert (fold / "config.json").exists() and (fold / "history.csv").exists()
    with pytest.raises(RuntimeError, match="finalize"):
        run_toy(monkeypatch, cfg, "finalize", overwrite=True)  # checkpoints written, then a failure: kept
    assert (fold / "checkpoints" / "last.pt").exists()
    with pytest.raises(RuntimeError, match="build_model"):
        run_toy(monkeypatch, cfg, "build_model", overwrite=True)  # overwritten, failed before a checkpoint
    assert not fold.exists()


# ---------------------------------------------------------------------------------- conflicting flags
def test_resume_with_overwrite_is_refused_everywhere(tmp_path, monkeypatch, capsys):
    cfg = toy_cfg(tmp_path)
    fold = runner.exp_dir(cfg) / "fold0"
    with pytest.raises(ConfigError, match="--resume and --overwrite conflict"):
        runner.claim_fold_dir(fold, cfg, resume=True, overwrite=True)
    with pytest.raises(ConfigError, match="conflict"):
        run_toy(monkeypatch, cfg, resume=True, overwrite=True)
    assert not fold.exists()
    run_toy(monkeypatch, cfg)
    before = {p: p.stat().st_mtime_ns for p in fold.rglob("*")}
    with pytest.raises(ConfigError, match="conflict"):
        run_toy(monkeypatch, cfg, resume=True, overwrite=True)
    assert {p: p.stat().st_mtime_ns for p in fold.rglob("*")} == before  # an existing fold: untouched
    with pytest.raises(SystemExit) as exit_info:
        cli.resolve_config(cfg, ["--fold", "0", "--resume", "--overwrite"])
    assert exit_info.value.code == 2 and "conflict" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ SIGINT / SIGTERM
SETTINGS = FitSettings(epochs=3, batch_size=8, lr=0.05, monitor="valid_rmse", monitor_mode="min", num_workers=0, seed=3)


def test_signal_during_a_checkpoint_write_waits_for_the_write(tmp_path, monkeypatch):
    """SIGINT arrives while epoch 1's last.pt is being written: the write completes (verified load),
    the loop stops at the next step (epoch 2) with exit code 130, the old handler is back."""
    import kagglekit.engine.fit as fit_module
    real_save, calls = fit_module.save_checkpoint, []

    def save_with_signal(path, state):
        if path.name == "last.pt" and not calls:
            calls.append(path)
            os.kill(os.getpid(), signal.SIGINT)  # handled synchronously, before the write below
        return real_save(path, state)
    monkeypatch.setattr(fit_module, "save_checkpoint", save_with_signal)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    seed_everything(3)
    with pytest.raises(Interrupted) as info:
        fit(ToyModel(), ToyDataset(64, 0), ToyDataset(32, 1), ToyEvaluator, SETTINGS, tmp_path / "ckpt",
            tmp_path / "history.csv")
    # the write runs in the background while the next epoch trains: the stop lands at the first step
    # boundary after the signal (epoch 2, or 3 when epoch 2 finished before the slow write reached
    # last.pt), and fit drains the pending write first: last.pt verifies and matches the history
    e = info.value.epoch
    assert (info.value.signum, info.value.exit_code) == (signal.SIGINT, 130) and e in (2, 3)
    assert 8 * (e - 1) <= info.value.step < 8 * e and str(info.value) == f"interrupted at epoch {e} step {info.value.step}"
    assert load_checkpoint(tmp_path / "ckpt" / "last.pt")["epoch"] == e - 1
    assert len(pd.read_csv(tmp_path / "history.csv")) == e - 1
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_sigterm_mid_epoch_stops_at_the_step_boundary_and_resume_finishes(tmp_path):
    before = signal.getsignal(signal.SIGTERM)

    class Terminating(ToyDataset):
        def __getitem__(self, i):
            if i == 5:
                os.kill(os.getpid(), signal.SIGTERM)
            return super().__getitem__(i)
    seed_everything(3)
    with pytest.raises(Interrupted) as info:
        fit(ToyModel(), Terminating(64, 0), ToyDataset(32, 1), ToyEvaluator, SETTINGS, tmp_path / "ckpt",
            tmp_path / "history.csv")
    assert (info.value.signum, info.value.epoch, info.value.exit_code) == (signal.SIGTERM, 1, 143)
    assert not (tmp_path / "ckpt").exists()  # nothing of the unfinished epoch was written
    assert signal.getsignal(signal.SIGTERM) == before
    seed_everything(3)
    fit(ToyModel(), ToyDataset(64, 0), ToyDataset(32, 1), ToyEvaluator, SETTINGS, tmp_path / "ckpt",
        tmp_path / "history.csv", resume=True)
    assert len(pd.read_csv(tmp_path / "history.csv")) == 3


def test_cli_turns_an_interrupt_into_one_line_and_the_exit_code(monkeypatch, capsys):
    from kagglekit.tasks.segmentation.config import SegmentationConfig

    def run_fold(cfg, fold, resume=False, overwrite=False):
        if fold == 2:
            raise Interrupted(signal.SIGTERM, 3, 17)
        return {}
    monkeypatch.setattr(runner, "build_task", lambda cfg: object())
    monkeypatch.setattr(runner, "run_fold", run_fold)
    monkeypatch.setattr(runner, "finish_experiment", lambda cfg: None)
    cfg = SegmentationConfig(name="exp093_x", n_folds=4)
    assert cli.main(cfg, ["--set", "epochs=2", "--overwrite"]) == 143
    lines = [line for line in capsys.readouterr().err.splitlines() if "interrupted" in line]
    assert lines == ["interrupted at epoch 3 step 17; continue with python exp/exp093_x.py --set epochs=2 --fold 2,3 --resume"]


REAL_RUN_EPOCHS = 8
TINY_SEG_RUN = TINY_SEG + [f"epochs={REAL_RUN_EPOCHS}", "batch_size=2", "deterministic=true"]
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("sig", list(SIGNALS.values()), ids=list(SIGNALS))
def test_signal_to_a_real_run_after_its_first_checkpoint(tmp_path, sig):
    """``exp/exp093_5.py --demo`` signalled once epoch 1's checkpoint exists: exit 130 / 143, one
    ``interrupted at epoch`` line naming the resume command, no traceback, a valid last.pt; then
    the printed command (``--resume``) finishes the fold."""
    cmd = [sys.executable, str(REPO / "exp" / "exp093_5.py"), "--demo", "--fold", "0", *sets(TINY_SEG_RUN)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    fold = tmp_path / "output/demo/exp093_5/fold0"
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (fold / "checkpoints" / "last.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err[-3000:]
    lines = [line.split("\r")[-1] for line in err.split("\n") if "interrupted at epoch" in line]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    own_line = rf"interrupted at epoch [2-{REAL_RUN_EPOCHS}] step \d+; continue with python "  # bar cleared first
    assert re.match(own_line, lines[0]), lines[0]
    hint = shlex.split(lines[0].split("continue with ")[1])
    assert hint == ["python", cmd[1], "--demo", *sets(TINY_SEG_RUN), "--fold", "0", "--resume"], hint
    assert load_checkpoint(fold / "checkpoints" / "last.pt")["epoch"] >= 1
    assert not (fold / "metrics.json").exists()
    resumed = subprocess.run([sys.executable, *hint[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (fold / "metrics.json").exists()
    assert len(pd.read_csv(fold / "history.csv")) == REAL_RUN_EPOCHS
