"""Checkpoints written off the training path (engine/background.py and fit's epoch outputs):
snapshots isolated from the live model, writer errors surfacing on the training thread, jobs in
order without overlap, fit() files equal to the synchronous writes', and interrupts / exceptions
leaving fit only after a pending write completed."""
from __future__ import annotations

import collections
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from torch import nn

import kagglekit.engine.fit as fit_module
from kagglekit.engine.background import BackgroundWriter, snapshot_to_cpu
from kagglekit.engine.checkpoint import (load_checkpoint, remove_checkpoint, rotate_checkpoint, save_checkpoint,
                                         verify_checkpoint)
from kagglekit.engine.fit import RESUME_POINTS, FitSettings, Trainer, fit
from kagglekit.engine.seed import seed_everything
from kagglekit.engine.stop import Interrupted
from kagglekit.io import DiskFullError, save_csv

sys.path.insert(0, str(Path(__file__).parent))
from toy import ToyDataset, ToyEvaluator, ToyModel  # noqa: E402

SETTINGS = FitSettings(epochs=4, batch_size=8, lr=0.05, weight_decay=0.01, scheduler="cosine", warmup_epochs=1,
                       ema_decay=0.9, monitor="valid_rmse", monitor_mode="min", num_workers=0, seed=3,
                       keep_epoch_checkpoints=2)


def run_fit(out: Path, settings: FitSettings = SETTINGS, evaluator=ToyEvaluator):
    seed_everything(settings.seed)
    return fit(ToyModel(), ToyDataset(64, 0), ToyDataset(32, 1), evaluator, settings, out / "ckpt",
               out / "history.csv")


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Equal nested states: tensors by dtype, shape and value; history rows minus wall time."""
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            if key != "seconds":
                assert_same(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where  # NaN == NaN here


def clone_state(sd: dict[str, torch.Tensor]) -> collections.OrderedDict:
    return collections.OrderedDict((k, v.clone()) for k, v in sd.items())


# ------------------------------------------------------------------------------------- snapshot
def test_snapshot_copies_tensors_and_containers_and_keeps_types():
    shared = torch.arange(6.0)
    sd = nn.BatchNorm1d(3).state_dict()  # an OrderedDict with _metadata (BN version for old files)
    state = {"sd": sd, "a": shared, "again": shared.view(6), "hist": [{"x": 1.0}], "betas": (0.9, 0.99),
             "none": None, "name": "adamw", "n": 3, "t": torch.tensor(5)}
    snap = snapshot_to_cpu(state)
    assert type(snap["sd"]) is collections.OrderedDict and snap["sd"]._metadata == sd._metadata
    assert snap["betas"] == (0.9, 0.99) and snap["none"] is None and snap["name"] == "adamw" and snap["n"] == 3
    assert snap["a"] is snap["again"]  # same memory, one copy: torch.save stores it once, as before
    assert snap["a"].untyped_storage().data_ptr() != shared.untyped_storage().data_ptr()
    shared.add_(100)
    state["hist"][0]["x"] = 2.0
    state["hist"].append({"x": 3.0})
    sd["running_mean"].fill_(7.0)
    assert torch.equal(snap["a"], torch.arange(6.0)) and snap["hist"] == [{"x": 1.0}]
    assert torch.equal(snap["sd"]["running_mean"], torch.zeros(3))


def test_snapshot_keeps_strides_of_channels_last_and_views():
    x = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)
    view = torch.randn(8, 8)[:, 2:5]  # non-contiguous view of a larger storage
    snap = snapshot_to_cpu({"x": x, "v": view})
    assert snap["x"].stride() == x.stride() and torch.equal(snap["x"], x)
    assert torch.equal(snap["v"], view)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_snapshot_of_cuda_tensors_is_pinned_cpu_and_complete():
    live = torch.randn(1 << 20, device="cuda")
    snap = snapshot_to_cpu({"w": live, "steps": [torch.tensor(3.0, device="cuda")]})
    expected = live.cpu()
    live.add_(1.0)
    assert snap["w"].device.type == "cpu" and snap["w"].is_pinned()
    assert torch.equal(snap["w"], expected) and float(snap["steps"][0]) == 3.0


def test_values_at_submit_time_are_what_lands_on_disk(tmp_path):
    """The job is held back until the model, optimiser state and history have all moved on."""
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    history = [{"epoch": 1}]
    expected = clone_state(model.state_dict())
    expected_avg = opt.state[model[0].weight]["exp_avg"].clone()
    gate = threading.Event()
    snap = snapshot_to_cpu({"model": model.state_dict(), "optimizer": opt.state_dict(), "history": history})

    def job() -> None:
        assert gate.wait(10)
        save_checkpoint(tmp_path / "c.pt", snap)
    with BackgroundWriter() as writer:
        writer.submit(job)
        model(torch.randn(5, 4)).sum().backward()  # right after submit: BN stats, weights, Adam moments move
        opt.step()
        history.append({"epoch": 2})
        gate.set()
    saved = load_checkpoint(tmp_path / "c.pt")
    assert_same(saved["model"], expected)
    assert torch.equal(saved["optimizer"]["state"][0]["exp_avg"], expected_avg)
    assert not torch.equal(saved["optimizer"]["state"][0]["exp_avg"], opt.state[model[0].weight]["exp_avg"])
    assert saved["history"] == [{"epoch": 1}]


def test_epoch_outputs_capture_the_trainer_at_submit_time(tmp_path, monkeypatch):
    """fit's job reads only its snapshot: a trainer that trains on (weights, epoch, history,
    best score) before the held-back job runs does not leak into best.pt / last.pt / history."""
    gate, real_save = threading.Event(), fit_module.save_checkpoint

    def held_save(path, state):
        assert gate.wait(10)
        return real_save(path, state)
    monkeypatch.setattr(fit_module, "save_checkpoint", held_save)
    seed_everything(0)
    trainer = Trainer(ToyModel(), SETTINGS, steps_per_epoch=8)
    trainer.epoch, trainer.best_score, trainer.history = 1, 0.5, [{"epoch": 1, "valid_rmse": 0.5}]
    weights = clone_state(trainer.model.state_dict())
    ema = clone_state(trainer.ema.state_dict())
    with BackgroundWriter() as writer:
        fit_module._write_epoch_outputs(trainer, True, tmp_path, tmp_path / "history.csv", writer)
        with torch.no_grad():
            for p in list(trainer.model.parameters()) + list(trainer.ema.module.parameters()):
                p.add_(1.0)
        trainer.epoch, trainer.best_score = 2, 0.1
        trainer.history.append({"epoch": 2, "valid_rmse": 0.1})
        gate.set()
    last, best = load_checkpoint(tmp_path / "last.pt"), load_checkpoint(tmp_path / "best.pt")
    assert (last["epoch"], last["best_score"], len(last["history"])) == (1, 0.5, 1)
    assert (best["epoch"], best["score"]) == (1, 0.5)
    assert_same(last["model"], weights)
    assert_same(last["ema"], ema)
    assert_same(best["model"], ema)  # eval_ema: the evaluated weights
    assert_same(load_checkpoint(tmp_path / "epoch001.pt")["model"], weights)
    assert len(pd.read_csv(tmp_path / "history.csv")) == 1


# -------------------------------------------------------------------------------------- writer
def test_a_failed_job_raises_its_own_error_at_the_next_submit_and_once(tmp_path):
    ran = []
    writer = BackgroundWriter()

    def full() -> None:
        raise DiskFullError(28, "while writing last.pt: disk full")
    writer.submit(full)
    with pytest.raises(DiskFullError, match="disk full"):
        writer.submit(lambda: ran.append(1))
    assert ran == []  # the job after a failure is not queued
    writer.submit(lambda: ran.append(2))  # reported once; the writer still works
    writer.close()
    assert ran == [2]


def test_a_failed_job_raises_at_wait_check_and_close():
    writer = BackgroundWriter()
    writer.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        writer.wait()
    writer.wait()  # once
    writer.submit(lambda: 1 / 0)
    while writer.busy:
        time.sleep(0.001)
    with pytest.raises(ZeroDivisionError):
        writer.check()
    writer.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        writer.close()
    with pytest.raises(RuntimeError, match="after close"):
        writer.submit(lambda: None)


def test_jobs_run_in_order_one_at_a_time_on_the_worker_thread():
    events, active, peak = [], [0], [0]
    lock = threading.Lock()

    def job(i: int) -> None:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        events.append((i, threading.current_thread().name))
        time.sleep(0.002)
        with lock:
            active[0] -= 1
    with BackgroundWriter("test-writer") as writer:
        for i in range(20):
            writer.submit(lambda i=i: job(i))
            assert peak[0] <= 1
    assert [i for i, _ in events] == list(range(20)) and peak[0] == 1
    assert {name for _, name in events} == {"test-writer"}


def test_leaving_the_block_waits_for_the_pending_job_then_propagates():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with BackgroundWriter() as writer:
            writer.submit(lambda: (time.sleep(0.2), done.append(1)))
            raise KeyboardInterrupt
    assert done == [1]


def test_a_write_error_does_not_mask_the_error_leaving_the_block():
    with pytest.raises(ValueError, match="training failed") as info:
        with BackgroundWriter() as writer:
            writer.submit(lambda: 1 / 0)
            raise ValueError("training failed")
    if sys.version_info >= (3, 11):
        assert "ZeroDivisionError" in "".join(info.value.__notes__)


# ------------------------------------------------------------------------------------------ fit
def old_write_epoch_outputs(trainer, improved, ckpt_dir, history_path, writer=None) -> None:
    """The synchronous writes before the background writer (fit.py up to this change), verbatim."""
    if improved:
        save_checkpoint(ckpt_dir / "best.pt", {"model": trainer.eval_model.state_dict(),
                                                "epoch": trainer.epoch, "score": trainer.best_score})
    save_csv(history_path, pd.DataFrame(trainer.history))
    if trainer.s.keep_epoch_checkpoints > 0:
        save_checkpoint(ckpt_dir / f"epoch{trainer.epoch:03d}.pt", {"model": trainer.model.state_dict(), "epoch": trainer.epoch})
        for old in sorted(ckpt_dir.glob("epoch[0-9][0-9][0-9].pt"))[:-trainer.s.keep_epoch_checkpoints]:
            remove_checkpoint(old)
    rotate_checkpoint(ckpt_dir / RESUME_POINTS[0], ckpt_dir / RESUME_POINTS[1])
    save_checkpoint(ckpt_dir / RESUME_POINTS[0], trainer.state_dict())


def test_fit_files_equal_the_synchronous_writes(tmp_path, monkeypatch):
    run_fit(tmp_path / "background")
    with monkeypatch.context() as m:
        m.setattr(fit_module, "_write_epoch_outputs", old_write_epoch_outputs)
        run_fit(tmp_path / "sync")
    a, b = tmp_path / "background" / "ckpt", tmp_path / "sync" / "ckpt"
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert {"best.pt", "last.pt", "last_prev.pt", "epoch003.pt", "epoch004.pt"} <= set(names)
    assert "epoch002.pt" not in names
    for name in names:
        if name.endswith(".pt"):
            assert verify_checkpoint(a / name) is not None
            assert_same(load_checkpoint(a / name), load_checkpoint(b / name), name)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "background" / "history.csv").drop(columns="seconds"),
                                  pd.read_csv(tmp_path / "sync" / "history.csv").drop(columns="seconds"))


def slow_last_save(monkeypatch, started: threading.Event, finished: threading.Event, delay: float = 0.5):
    """``save_checkpoint`` whose first write of last.pt signals ``started``, sleeps, then writes."""
    real_save = fit_module.save_checkpoint

    def save(path, state):
        if path.name == "last.pt" and not started.is_set():
            started.set()
            time.sleep(delay)
            out = real_save(path, state)
            finished.set()
            return out
        return real_save(path, state)
    monkeypatch.setattr(fit_module, "save_checkpoint", save)


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_an_error_leaving_fit_waits_for_the_slow_write(tmp_path, monkeypatch, error):
    """Epoch 2's evaluation raises while epoch 1's last.pt is still being written: fit re-raises
    only after that write completed, and last.pt (epoch 1) verifies."""
    started, finished, raised_while_writing = threading.Event(), threading.Event(), []
    slow_last_save(monkeypatch, started, finished)

    class Failing(ToyEvaluator):
        calls = 0

        def compute(self):
            Failing.calls += 1
            if Failing.calls == 2:
                assert started.wait(10)
                raised_while_writing.append(not finished.is_set())
                raise error("stop")
            return super().compute()
    with pytest.raises(error):
        run_fit(tmp_path, evaluator=Failing)
    assert raised_while_writing == [True] and finished.is_set()
    assert verify_checkpoint(tmp_path / "ckpt" / "last.pt") is not None
    assert load_checkpoint(tmp_path / "ckpt" / "last.pt")["epoch"] == 1
    assert not list((tmp_path / "ckpt").glob("*.tmp")) and not list((tmp_path / "ckpt").glob(".*.tmp"))


def test_sigint_during_a_slow_background_write_leaves_a_verified_last_pt(tmp_path, monkeypatch):
    """SIGINT sent while epoch 1's last.pt is being written in the background: fit stops at a step
    boundary of a later epoch with Interrupted, after the write finished; the resume point verifies
    and matches the history; the old handler is back."""
    started, finished = threading.Event(), threading.Event()
    real_save = fit_module.save_checkpoint

    def save(path, state):
        if path.name == "last.pt" and not started.is_set():
            started.set()
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            time.sleep(0.3)
            out = real_save(path, state)
            finished.set()
            return out
        return real_save(path, state)
    monkeypatch.setattr(fit_module, "save_checkpoint", save)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as info:
        run_fit(tmp_path, FitSettings(**{**SETTINGS.__dict__, "epochs": 3}))
    assert finished.is_set() and info.value.signum == signal.SIGINT and info.value.epoch >= 2
    last = load_checkpoint(tmp_path / "ckpt" / "last.pt")  # verifies against its manifest
    assert last["epoch"] == info.value.epoch - 1
    assert len(pd.read_csv(tmp_path / "history.csv")) == last["epoch"]
    assert signal.getsignal(signal.SIGINT) == before


def test_a_failed_background_write_fails_fit_with_its_own_error(tmp_path, monkeypatch):
    real_save = fit_module.save_checkpoint

    def save(path, state):
        if path.name == "last.pt" and state["epoch"] == 2:
            raise DiskFullError(28, f"while writing {path}: disk full")
        return real_save(path, state)
    monkeypatch.setattr(fit_module, "save_checkpoint", save)
    with pytest.raises(DiskFullError, match="disk full"):
        run_fit(tmp_path)
    # epoch 1's last.pt was rotated to last_prev.pt before the failed write: the resume point
    assert not (tmp_path / "ckpt" / "last.pt").exists()
    state, source = fit_module._load_resume_point(tmp_path / "ckpt", torch.device("cpu"))
    assert source.name == "last_prev.pt" and state["epoch"] == 1
    assert len(pd.read_csv(tmp_path / "history.csv")) == 2  # written before last.pt; cut back on resume
