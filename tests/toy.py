"""A tiny regression task for engine tests (importable by torchrun subprocesses via PYTHONPATH)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset


class ToyDataset(Dataset):
    def __init__(self, n: int = 64, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 8, generator=g)
        w = torch.arange(1, 9, dtype=torch.float32) / 8
        self.y = self.x @ w + 0.1 * torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        # dropout-free, BN-free model: DDP and single-process runs are then mathematically equal
        noise = torch.randn(8) * 0.01  # uses the global torch RNG in the loader: exercises RNG restore
        return {"x": self.x[i] + noise, "y": self.y[i]}


class ToyModel(nn.Module):
    def __init__(self, nan_at_step: int = -1) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
        self.nan_at_step = nan_at_step
        self.calls = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pred = self.net(batch["x"]).squeeze(-1)
        out = {"logits": pred}
        if "y" in batch:
            loss = ((pred - batch["y"]) ** 2).mean()
            if self.training:
                if self.calls == self.nan_at_step:
                    loss = loss * float("nan")
                self.calls += 1
            out["loss"] = loss
        return out


class ToyEvaluator:
    def __init__(self) -> None:
        self.se, self.n = 0.0, 0

    def update(self, outputs, batch) -> None:
        self.se += float(((outputs["logits"] - batch["y"]) ** 2).sum())
        self.n += len(batch["y"])

    def compute(self) -> dict[str, float]:
        return {"valid_rmse": (self.se / self.n) ** 0.5}


def assert_same_run(dir_a: Path, dir_b: Path, model_a: nn.Module, model_b: nn.Module) -> None:
    """Two fit() runs ended identically: history.csv (minus wall time) and every weight."""
    a = pd.read_csv(dir_a / "history.csv").drop(columns="seconds")
    b = pd.read_csv(dir_b / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)
    for (k, v), (_, w) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert torch.equal(v, w), k


def killer_evaluator(stop_after: int) -> type[ToyEvaluator]:
    """An evaluator class whose instances raise KeyboardInterrupt at the (stop_after + 1)-th
    ``compute`` (a kill during that evaluation: its epoch's outputs are never written)."""
    class Killer(ToyEvaluator):
        count = 0

        def compute(self):
            Killer.count += 1
            if Killer.count > stop_after:
                raise KeyboardInterrupt
            return super().compute()
    return Killer
