"""The training loop, EMA, schedules, checkpoints: resume exactness, NaN stop, DDP equivalence."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from kagglekit.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from kagglekit.engine.ema import ModelEma
from kagglekit.engine.fit import FitSettings, NonFiniteLossError, fit
from kagglekit.engine.schedule import LrSchedule, Plateau
from kagglekit.engine.seed import seed_everything

sys.path.insert(0, str(Path(__file__).parent))
from toy import ToyDataset, ToyEvaluator, ToyModel, assert_same_run, killer_evaluator  # noqa: E402

SETTINGS = FitSettings(epochs=4, batch_size=8, lr=0.05, weight_decay=0.01, scheduler="cosine", warmup_epochs=1,
                       ema_decay=0.9, monitor="valid_rmse", monitor_mode="min", num_workers=0, seed=3, grad_clip=1.0)


def run_fit(out: Path, settings: FitSettings = SETTINGS, resume: bool = False, model: nn.Module | None = None):
    seed_everything(settings.seed)
    model = model or ToyModel()
    return fit(model, ToyDataset(64, 0), ToyDataset(32, 1), ToyEvaluator, settings, out / "ckpt", out / "history.csv", resume)


def test_fit_learns_and_writes_history(tmp_path):
    result = run_fit(tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist["epoch"]) == [1, 2, 3, 4]
    assert {"train_loss", "valid_loss", "valid_rmse", "lr", "seconds"} <= set(hist.columns)
    assert hist["valid_rmse"].iloc[-1] < 0.6 * hist["valid_rmse"].iloc[0]
    assert result.best_score == hist["valid_rmse"].min()
    assert (tmp_path / "ckpt" / "best.pt").exists() and (tmp_path / "ckpt" / "last.pt").exists()


def test_resume_is_exact(tmp_path):
    full = run_fit(tmp_path / "full")
    short = FitSettings(**{**SETTINGS.__dict__, "epochs": 4})
    # interrupted run: stop after 2 epochs by training a copy with epochs=4 but killing via a 2-epoch run
    two = FitSettings(**{**SETTINGS.__dict__})
    run_partial(tmp_path / "part", two, stop_after=2)
    resumed = run_fit(tmp_path / "part", short, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "part", full.eval_model, resumed.eval_model)


def run_partial(out: Path, settings: FitSettings, stop_after: int) -> None:
    """Simulate a kill after ``stop_after`` epochs: the loop raises from the evaluator afterwards."""
    seed_everything(settings.seed)
    with pytest.raises(KeyboardInterrupt):
        fit(ToyModel(), ToyDataset(64, 0), ToyDataset(32, 1), killer_evaluator(stop_after), settings, out / "ckpt",
            out / "history.csv")
    assert len(pd.read_csv(out / "history.csv")) == stop_after


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
    run_fit(tmp_path, FitSettings(**{**SETTINGS.__dict__, "epochs": 1}))
    before = (tmp_path / "ckpt" / "last.pt").read_bytes()
    with pytest.raises(NonFiniteLossError, match=r"at step \d+"):
        run_fit(tmp_path / "b", model=ToyModel(nan_at_step=10))
    with pytest.raises(NonFiniteLossError, match="step"):
        run_fit(tmp_path, FitSettings(**{**SETTINGS.__dict__, "epochs": 3}), resume=True, model=ToyModel(nan_at_step=3))
    assert (tmp_path / "ckpt" / "last.pt").read_bytes() == before


def test_ema_matches_manual_average():
    model = nn.Linear(3, 2)
    ema = ModelEma(model, decay=0.9, warmup=False)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        ema.update(model, step)
        expected = {k: 0.9 * expected[k] + 0.1 * v for k, v in model.state_dict().items()}
    for k, v in ema.state_dict().items():
        torch.testing.assert_close(v, expected[k])


def test_ema_handles_batchnorm_buffers():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    ema = ModelEma(model, decay=0.5, warmup=False)
    model.train()
    model(torch.randn(4, 1, 3, 3) * 5 + 3)
    ema.update(model, 0)
    bn_live, bn_ema = model[1], ema.module[1]
    torch.testing.assert_close(bn_ema.running_mean, 0.5 * bn_live.running_mean)  # init mean 0
    assert int(bn_ema.num_batches_tracked) == int(bn_live.num_batches_tracked) == 1


def test_ema_warmup_decay():
    ema = ModelEma(nn.Linear(1, 1), decay=0.999)
    assert ema.decay_at(0) == pytest.approx(0.1)
    assert ema.decay_at(10**6) == 0.999


def test_cosine_schedule_with_warmup():
    s = LrSchedule("cosine", 1e-3, total_steps=110, warmup_steps=10, warmup_factor=0.001)
    assert s.lr_at(0) == pytest.approx(1e-6)
    assert s.lr_at(10) == pytest.approx(1e-3)
    assert s.lr_at(60) == pytest.approx(0.5e-3)
    assert s.lr_at(110) == pytest.approx(0.0, abs=1e-12)


def test_plateau_reduces_after_patience():
    s = LrSchedule("plateau", 4e-4, total_steps=100, min_lr=1e-5, plateau=Plateau(patience=2, factor=0.5, mode="max"))
    for metric in [0.5, 0.6, 0.6, 0.6]:
        s.end_of_epoch(metric)
    assert s.lr_at(50) == pytest.approx(4e-4)
    s.end_of_epoch(0.6)
    assert s.lr_at(50) == pytest.approx(2e-4)


def test_step_schedule():
    s = LrSchedule("step", 1e-3, total_steps=25000, warmup_steps=1000, milestones=(15000, 20000))
    assert s.lr_at(14999) == pytest.approx(1e-3) and s.lr_at(15000) == pytest.approx(1e-4)
    assert s.lr_at(20000) == pytest.approx(1e-5)


def test_checkpoint_roundtrip_and_corruption(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"w": torch.arange(5), "epoch": 3})
    assert load_checkpoint(path)["epoch"] == 3
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(CheckpointError, match="c.pt"):
        load_checkpoint(path)


def test_malicious_checkpoint_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


DDP_SCRIPT = r"""
import sys, torch
sys.path.insert(0, {tests!r})
from toy import ToyDataset, ToyEvaluator, ToyModel
from kagglekit.engine import distributed as d
from kagglekit.engine.fit import FitSettings, fit
from kagglekit.engine.seed import seed_everything
d.init_from_env()
s = FitSettings(epochs=2, batch_size=8, lr=0.05, monitor="valid_rmse", num_workers=0, seed=3)
seed_everything(3)
ds = ToyDataset(64, 0); ds.__class__.__getitem__ = lambda self, i: {{"x": self.x[i], "y": self.y[i]}}
r = fit(ToyModel(), ds, ToyDataset(32, 1), ToyEvaluator, s, __import__("pathlib").Path({out!r}) / "ck", __import__("pathlib").Path({out!r}) / "h.csv")
if d.is_main():
    torch.save(r.eval_model.state_dict(), {out!r} + "/final.pt")
d.cleanup()
"""


@pytest.mark.timeout(300)
def test_ddp_two_processes_match_single_process(tmp_path):
    tests = str(Path(__file__).parent)
    outs = {}
    for nproc in (1, 2):
        out = tmp_path / f"n{nproc}"
        out.mkdir()
        script = out / "run.py"
        script.write_text(DDP_SCRIPT.format(tests=tests, out=str(out)))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
               str(29500 + nproc), str(script)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[nproc] = torch.load(out / "final.pt", weights_only=True)
    for k in outs[1]:
        torch.testing.assert_close(outs[1][k], outs[2][k], rtol=1e-5, atol=1e-6)


def test_keep_last_epoch_checkpoints_for_swa(tmp_path):
    settings = FitSettings(**{**SETTINGS.__dict__, "keep_epoch_checkpoints": 2})
    run_fit(tmp_path, settings)
    kept = sorted(p.name for p in (tmp_path / "ckpt").glob("epoch*.pt"))
    assert kept == ["epoch003.pt", "epoch004.pt"]
    last = load_checkpoint(tmp_path / "ckpt" / "last.pt")["model"]
    final = load_checkpoint(tmp_path / "ckpt" / "epoch004.pt")["model"]
    assert all(torch.equal(last[k], final[k]) for k in last)


def test_weighted_sampler_follows_dataset_weights():
    from kagglekit.engine.data import make_loader
    ds = ToyDataset(40, 0)
    ds.sample_weights = [100.0 if i < 4 else 1.0 for i in range(40)]
    seen = []
    for epoch in range(3):
        loader = make_loader(ds, 8, train=True, seed=1, epoch=epoch)
        seen += [i for _, i in loader.sampler]
    heavy = sum(i < 4 for i in seen) / len(seen)
    assert heavy > 0.8  # 400 / 436 of the mass
    again = [i for _, i in make_loader(ds, 8, train=True, seed=1, epoch=0).sampler]
    assert again == seen[:40]  # seeded per epoch: resume-exact


ITER_SETTINGS = FitSettings(**{**SETTINGS.__dict__, "max_iters": 22, "eval_period": 5, "scheduler": "step",
                               "warmup_iters": 6, "warmup_epochs": 0.0, "lr_milestones": (12, 18), "lr_gamma": 0.1,
                               "optimizer": "sgd", "momentum": 0.9})


def test_iteration_based_run_evaluates_every_period(tmp_path):
    """22 iterations over a 64-item set with batch 8 cross 2 data passes; 5 periods (5,10,15,20,22)."""
    run_fit(tmp_path, ITER_SETTINGS)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist["iter"]) == [5, 10, 15, 20, 22] and list(hist["epoch"]) == [1, 2, 3, 4, 5]
    last = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert last["step"] == 22 and (last["data_epoch"], last["data_offset"]) == (2, 6)  # 22 = 8 + 8 + 6 batches
    # detectron2 WarmupMultiStepLR: lr at the last step taken (21) is base * 0.1^2
    assert hist["lr"].iloc[-1] == pytest.approx(0.05 * 0.01)
    # linear warmup from 0.001·lr over 6 iterations: the lr of step 4 (the period's last)
    assert hist["lr"].iloc[0] == pytest.approx(0.05 * (0.001 * (1 - 4 / 6) + 4 / 6))


def test_iteration_run_resumes_exactly_mid_data_pass(tmp_path):
    """Killed after period 2 (step 10: mid-way through the second pass) and resumed: same history
    and weights as the uninterrupted run (the data position is part of the checkpoint)."""
    full = run_fit(tmp_path / "full", ITER_SETTINGS)
    run_partial(tmp_path / "part", ITER_SETTINGS, stop_after=2)
    resumed = run_fit(tmp_path / "part", ITER_SETTINGS, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "part", full.eval_model, resumed.eval_model)


def test_skip_batches_continues_the_same_pass():
    from kagglekit.engine.data import make_loader
    ds = ToyDataset(40, 0)
    whole = [i for _, i in make_loader(ds, 8, train=True, seed=2, epoch=1).sampler]
    rest = [i for _, i in make_loader(ds, 8, train=True, seed=2, epoch=1, skip_batches=3).sampler]
    assert rest == whole[24:] and len(set(whole)) == 40


def test_repeat_factor_sampler_matches_lvis_rule():
    """r_i = 2.5 → 2 or 3 copies (mean 2.5); r_i = 1 → exactly once; reproducible per (seed, epoch)."""
    import numpy as np
    from kagglekit.engine.data import RepeatFactorSampler, make_loader
    factors = np.array([1.0] * 30 + [2.5] * 10)
    counts = np.zeros(40)
    for epoch in range(200):
        idx = np.array(list(RepeatFactorSampler(factors, seed=1, epoch=epoch)))
        c = np.bincount(idx, minlength=40)
        assert (c[:30] == 1).all() and set(c[30:]) <= {2, 3}
        counts += c
    assert counts[30:].mean() / 200 == pytest.approx(2.5, abs=0.05)
    ds = ToyDataset(40, 0)
    ds.repeat_factors = factors
    a = [i for _, i in make_loader(ds, 8, train=True, seed=1, epoch=3).sampler]
    assert a == list(RepeatFactorSampler(factors, seed=1, epoch=3)) != list(RepeatFactorSampler(factors, seed=1, epoch=4))
