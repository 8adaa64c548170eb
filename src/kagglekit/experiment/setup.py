"""Where a task reads its data, where it may write, and how it predicts — decided once for all tasks.

Every task used to derive these itself (five copies of ``Path(cfg.data_dir) if cfg.data_dir else
input/<comp>`` and ``local_device(cfg.device)``; two of them wrote ``folds.csv`` into
``data_dir``, which fails on a read-only Kaggle ``/kaggle/input`` mount).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from kagglekit import paths
from kagglekit.engine.distributed import local_device
from kagglekit.engine.data import resolve_num_workers
from kagglekit.engine.infer import Inference


@dataclass(frozen=True)
class Workspace:
    """``root``: the competition's data (``data_dir``, else ``input/<comp>``).
    ``work``: where derived files go (folds.csv, converted annotations): ``root`` itself when it
    lies inside the project's ``input/`` (generated demo data, data you copied there), else
    ``input/<comp>`` — a ``data_dir`` elsewhere (``/kaggle/input/...``, a shared mount) is
    treated as read-only. ``home``: ``input/<comp>``.
    ``inference``: the device, autocast dtype and channels_last every prediction uses."""

    root: Path
    work: Path
    home: Path
    inference: Inference
    num_workers: int = 0  # prediction loaders' workers, resolved for this machine

    @property
    def device(self) -> torch.device:
        return self.inference.device

    @property
    def folds_csv(self) -> Path:
        """An existing ``root/folds.csv`` (shipped with the data, or written there by an earlier
        run) or ``input/<comp>/folds.csv``; else ``work/folds.csv``."""
        for existing in (self.root / "folds.csv", self.home / "folds.csv"):
            if existing.exists():
                return existing
        return self.work / "folds.csv"


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def workspace(data_dir: str, comp: str, device: str = "auto", amp: str = "auto",
              channels_last: bool = True, num_workers: int = 0) -> Workspace:
    """The explicit-argument form (``data_dir`` '' → ``input/<comp>``; ``device`` 'auto' → this
    rank's CUDA device, else CPU; ``num_workers`` -1 → from the machine)."""
    home = paths.input_root() / comp
    root = Path(data_dir) if data_dir else home
    work = root if _inside(root, paths.input_root()) else home
    inference = Inference.for_device(local_device(device), amp, channels_last)
    workers = resolve_num_workers(num_workers, inference.device.type == "cuda")
    return Workspace(root, work, home, inference, workers)


def workspace_for(cfg) -> Workspace:
    """Adapter at the edge: an :class:`~kagglekit.config.ExperimentConfig` → :func:`workspace`."""
    return workspace(cfg.data_dir, cfg.comp, cfg.device, cfg.amp, cfg.channels_last, cfg.num_workers)
