"""The loop's GPU options, tested on CPU: persistent loaders with per-item seeding, the worker count
from the machine, no per-step host sync, gradient checkpointing, torch.compile, runtime settings
that a resume may change."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from kagglekit.engine import fit as fit_module
from kagglekit.engine.data import EpochLoader, item_seed, resolve_num_workers
from kagglekit.engine.fit import FitSettings, NonFiniteLossError, enable_grad_checkpointing, fit
from kagglekit.engine.seed import seed_everything

sys.path.insert(0, str(Path(__file__).parent))
from toy import ToyDataset, ToyEvaluator, ToyModel  # noqa: E402

SETTINGS = FitSettings(epochs=3, batch_size=8, lr=0.05, weight_decay=0.01, warmup_epochs=1, ema_decay=0.9,
                       monitor="valid_rmse", monitor_mode="min", num_workers=0, seed=3, grad_clip=1.0)


def run_fit(out: Path, settings: FitSettings = SETTINGS, model: nn.Module | None = None):
    seed_everything(settings.seed)
    return fit(model or ToyModel(), ToyDataset(64, 0), ToyDataset(32, 1), ToyEvaluator, settings,
               out / "ckpt", out / "history.csv")


def with_(**changes) -> FitSettings:
    return FitSettings(**{**SETTINGS.__dict__, **changes})


def weights_of(result) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in result.eval_model.state_dict().items()}


def test_worker_count_never_changes_a_run(tmp_path):
    """Items are seeded per (seed, epoch, index): 0 workers and 2 persistent workers train the same
    weights and history (ToyDataset draws noise from the global torch RNG in __getitem__)."""
    a = run_fit(tmp_path / "a", with_(num_workers=0))
    b = run_fit(tmp_path / "b", with_(num_workers=2, persistent_workers=True))
    ha, hb = (pd.read_csv(tmp_path / d / "history.csv").drop(columns="seconds") for d in "ab")
    pd.testing.assert_frame_equal(ha, hb)
    wa, wb = weights_of(a), weights_of(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


class PidDataset(Dataset):
    """Items report the process that loaded them, the pass their copy was told, and a draw of the
    global NumPy RNG (the per-item seed)."""

    def __init__(self) -> None:
        self.epoch = -1

    def __len__(self) -> int:
        return 8

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int):
        import numpy as np
        return {"pid": os.getpid(), "epoch": self.epoch, "draw": float(np.random.random()), "i": i}


def _pass(loader: EpochLoader, epoch: int) -> list[dict]:
    rows = []
    for batch in loader.epoch(epoch):
        rows += [{k: batch[k][j].item() for k in batch} for j in range(len(batch["i"]))]
    return rows


def test_persistent_workers_live_across_passes_and_see_the_epoch():
    import numpy as np
    loader = EpochLoader(PidDataset(), 2, train=True, seed=5, num_workers=2, persistent=True)
    try:
        first, second = _pass(loader, 0), _pass(loader, 3)
    finally:
        loader.close()
    assert {r["pid"] for r in first} == {r["pid"] for r in second} and os.getpid() not in {r["pid"] for r in first}
    assert {r["epoch"] for r in first} == {0} and {r["epoch"] for r in second} == {3}
    for r in second:  # the item's draw is a function of (seed, epoch, index) only
        np.random.seed(item_seed(5, 3, r["i"]))
        assert r["draw"] == np.random.random()
    one_shot = EpochLoader(PidDataset(), 2, train=True, seed=5, num_workers=0)
    again = sorted((r["i"], r["draw"]) for r in _pass(one_shot, 3))
    assert again == sorted((r["i"], r["draw"]) for r in second)  # workers or not: same items


def test_worker_count_from_the_machine(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert resolve_num_workers(3, cuda=True) == 3 and resolve_num_workers(0, cuda=True) == 0
    assert resolve_num_workers(-1, cuda=True) == 8  # 15 spare, capped
    assert resolve_num_workers(-1, cuda=False) == 4  # CPU training keeps its cores for compute
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert resolve_num_workers(-1, cuda=True) == 3  # 16 CPUs / 4 ranks, one for the rank itself
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert resolve_num_workers(-1, cuda=False) == 0 and resolve_num_workers(-1, cuda=True) == 1


def test_host_reads_the_loss_only_every_log_every_steps(tmp_path, monkeypatch):
    """8 steps per epoch, log_every=3: the loss is read at steps 3, 6, 8 and once for the epoch
    mean, 4 reads per epoch instead of 8 syncs."""
    reads = []
    original = fit_module.RunningLoss.read
    monkeypatch.setattr(fit_module.RunningLoss, "read", lambda self: reads.append(1) or original(self))
    run_fit(tmp_path, with_(log_every=3, epochs=2))
    assert len(reads) == 2 * 4


def test_non_finite_loss_names_its_step_between_syncs(tmp_path):
    """The loss of step 10 is NaN; the host reads at step 16 (log_every=8), and still names step 10."""
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at step 10 \(epoch 1\)"):
        run_fit(tmp_path, with_(log_every=8), model=ToyModel(nan_at_step=10))
    assert not (tmp_path / "ckpt" / "last.pt").exists() or len(pd.read_csv(tmp_path / "history.csv")) == 1


class TimmRegressor(nn.Module):
    def __init__(self, name: str = "resnet10t") -> None:
        super().__init__()
        import timm
        self.backbone = timm.create_model(name, pretrained=False, num_classes=1)

    def forward(self, batch):
        return {"loss": self.backbone(batch["image"]).square().mean()}


def _saved_tensors_and_grads(model: nn.Module, x: torch.Tensor) -> tuple[int, list[torch.Tensor]]:
    count = [0]

    def pack(t):
        count[0] += 1
        return t
    model.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model({"image": x})["loss"]
    loss.backward()
    return count[0], [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("wrap, at_most", [("timm", 0.5), ("smp", 0.75)])  # SMP: the decoder keeps its activations
def test_grad_checkpointing_saves_fewer_activations_same_gradients(wrap, at_most):
    torch.manual_seed(0)
    if wrap == "timm":
        model = TimmRegressor()
    else:
        import segmentation_models_pytorch as smp
        net = smp.Unet("tu-resnet10t", encoder_weights=None, classes=2, decoder_channels=(16, 8, 8, 8, 8))
        model = nn.Module()
        model.net = net
        model.forward = lambda batch: {"loss": net(batch["image"]).square().mean()}
    model.train()
    x = torch.randn(2, 3, 64, 64)
    plain_saved, plain_grads = _saved_tensors_and_grads(model, x)
    assert enable_grad_checkpointing(model) >= 1
    ckpt_saved, ckpt_grads = _saved_tensors_and_grads(model, x)
    assert ckpt_saved < at_most * plain_saved
    for a, b in zip(plain_grads, ckpt_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_grad_checkpointing_without_timm_module_is_one_clear_error():
    with pytest.raises(ValueError, match="grad_checkpointing=true but ToyModel holds no timm module"):
        enable_grad_checkpointing(ToyModel())


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="torch.compile (inductor) on CPU needs a C++ compiler; none on PATH")
def test_torch_compile_trains_like_eager(tmp_path):
    """The compiled training forward learns the same run (inductor on CPU; float tolerance)."""
    eager = run_fit(tmp_path / "eager", with_(epochs=2))
    compiled = run_fit(tmp_path / "compiled", with_(epochs=2, torch_compile=True))
    he, hc = (pd.read_csv(tmp_path / d / "history.csv") for d in ("eager", "compiled"))
    assert he["valid_rmse"].tolist() == pytest.approx(hc["valid_rmse"].tolist(), rel=1e-4)
    we, wc = weights_of(eager), weights_of(compiled)
    assert set(we) == set(wc)  # checkpoints keep the plain module's keys (no _orig_mod.)
    for k in we:
        torch.testing.assert_close(we[k], wc[k], rtol=1e-4, atol=1e-5)


def test_resume_may_change_runtime_settings_not_results(tmp_path, monkeypatch):
    from kagglekit.config import ConfigError
    from kagglekit.experiment import runner
    from kagglekit.tasks.segmentation.config import SegmentationConfig
    fold_dir = tmp_path / "fold0"
    fold_dir.mkdir()
    cfg = SegmentationConfig(name="x")
    from kagglekit.config import save_config
    save_config(cfg, fold_dir / "config.json")
    from dataclasses import replace
    runner._check_resumable(fold_dir, replace(cfg, num_workers=6, torch_compile=True, log_every=5))
    with pytest.raises(ConfigError, match="lr"):
        runner._check_resumable(fold_dir, replace(cfg, lr=cfg.lr * 2))
