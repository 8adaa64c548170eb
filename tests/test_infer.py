"""The shared inference set-up (engine/infer.py) and task workspace (experiment/setup.py)."""
from __future__ import annotations

import contextlib

import pandas as pd
import pytest
import torch
from torch import nn

from kagglekit.engine.infer import Inference, amp_dtype, to_device
from kagglekit.experiment.setup import workspace
from kagglekit.tasks import CONFIGS, TASKS
from kagglekit.tasks.segmentation.config import SegmentationConfig


class HalfHead(nn.Module):
    """Returns fp16 logits and records what it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.seen: list[torch.Tensor] = []

    def forward(self, batch: dict) -> dict:
        self.seen.append(batch["image"])
        return {"logits": self.conv(batch["image"]).half(), "aux": batch["image"].mean()}


def test_cpu_inference_never_autocasts_nor_converts_layout():
    inf = Inference.for_device("cpu", amp="bf16", channels_last=True)
    assert (inf.dtype, inf.channels_last) == (None, False)
    assert isinstance(inf.autocast(), contextlib.nullcontext)


@pytest.mark.parametrize("amp, dtype", [("auto", torch.float16), ("fp16", torch.float16), ("bf16", torch.bfloat16),
                                         ("none", None)])
def test_cuda_rules_follow_the_training_loop(amp, dtype):
    inf = Inference.for_device(torch.device("cuda", 0), amp=amp, channels_last=True)
    assert inf.dtype is dtype and inf.channels_last and amp_dtype(amp, inf.device) is dtype
    assert not Inference.for_device("cuda", amp, channels_last=False).channels_last


def test_forward_prepares_once_and_returns_float32_outputs():
    torch.manual_seed(0)
    model = HalfHead().train()
    forward = Inference.for_device("cpu").forward(model, "logits")
    assert not model.training  # eval mode: dropout / BatchNorm statistics frozen
    x = torch.randn(2, 3, 5, 7)
    out = forward(x)
    assert out.dtype == torch.float32 and out.shape == (2, 2, 5, 7)
    expected = model.conv(x).half().float()
    assert torch.equal(out, expected)
    assert not out.requires_grad  # no autograd graph kept while predicting


def test_to_device_moves_nested_batches_and_keeps_other_values():
    batch = {"images": [torch.zeros(3, 4, 4)], "targets": [{"boxes": torch.zeros(1, 4)}], "id": ["a"], "n": 3}
    moved = to_device(batch, torch.device("cpu"), channels_last=True)
    assert moved["id"] == ["a"] and moved["n"] == 3
    x = to_device(torch.zeros(2, 3, 4, 5), torch.device("cpu"), channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last)
    labels = to_device(torch.zeros(2, 3, 4, 5, dtype=torch.long), torch.device("cpu"), channels_last=True)
    assert labels.is_contiguous()  # integer masks keep their layout


def test_workspace_roots(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLEKIT_INPUT", str(tmp_path / "input"))
    home = tmp_path / "input" / "comp"
    ws = workspace("", "comp")
    assert ws.root == ws.work == ws.home == home and ws.folds_csv == home / "folds.csv"
    demo = tmp_path / "input" / "comp_demo"  # data generated inside input/: derived files beside it
    ws = workspace(str(demo), "comp")
    assert ws.root == ws.work == demo and ws.folds_csv == demo / "folds.csv"
    data = tmp_path / "kaggle_input"  # elsewhere: treated as read-only
    data.mkdir()
    ws = workspace(str(data), "comp")
    assert ws.root == data and ws.work == home and ws.folds_csv == home / "folds.csv"
    (data / "folds.csv").write_text("id,fold\n")
    assert ws.folds_csv == data / "folds.csv"  # folds shipped with the data (or written there before) win


def test_every_task_uses_the_shared_workspace(tmp_path, monkeypatch):
    monkeypatch.setenv("KAGGLEKIT_INPUT", str(tmp_path / "input"))
    for name, make_task in TASKS.items():
        config_cls = CONFIGS[name]()
        task = make_task(config_cls(data_dir=str(tmp_path / "data"), comp="c"))
        assert task.root == tmp_path / "data", name
        assert task.workspace.work == task.workspace.home == tmp_path / "input" / "c", name
        assert task.inference == Inference.for_device(task.device, config_cls.amp, config_cls.channels_last), name


def test_segmentation_folds_go_to_input_not_into_the_data_folder(tmp_path, monkeypatch):
    """A Kaggle notebook reads /kaggle/input/<dataset> (read-only): folds.csv goes to input/<comp>."""
    from kagglekit.demo.nyuv2 import generate_nyuv2
    data = tmp_path / "kaggle" / "input" / "nyuv2"
    generate_nyuv2(data, n_train=6, n_test=1, height=24, width=32, seed=0)
    before = sorted(p.name for p in data.iterdir())
    monkeypatch.setenv("KAGGLEKIT_INPUT", str(tmp_path / "input"))
    folds = TASKS["segmentation"](SegmentationConfig(data_dir=str(data), n_folds=3)).folds()
    written = pd.read_csv(tmp_path / "input" / "nyuv2" / "folds.csv", dtype={"id": str})
    assert sorted(written["id"]) == sorted(folds["id"]) and len(written) == 6
    assert set(written["fold"]) == {0, 1, 2}
    assert sorted(p.name for p in data.iterdir()) == before  # nothing written into the data folder
