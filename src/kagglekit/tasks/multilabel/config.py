"""Configuration of the multi-label image task (seed 000: door_state v20260511 / v20260515).

Shared names (see :mod:`kagglekit.config`): ``pretrained`` is the backbone's weights (old
``pretrained_path``): off (``""`` / ``false``), a local file / folder, or ``true`` / a timm tag
(``mobilenetv3_large_100.ra_in1k``) fetched and cached by timm (:mod:`kagglekit.weights.resolve`), ``hflip_p`` the training flip probability (old bool ``hflip``: true = 0.5),
``tta_scales`` relative image-size factors.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from kagglekit.config import ExperimentConfig, FoldStrategy, MonitorMode

DOOR_STATES = ("1,0=open", "0,1=closed", "1,1=mixed", "0,0=unknown")  # (has_open, has_close) → state


@dataclass(frozen=True)
class MultiLabelConfig(ExperimentConfig):
    task: str = "multilabel"
    comp: str = "doors"
    labels_csv: str = "labels.csv"  # relative to data_dir; images paths inside it are relative to data_dir
    test_csv: str = ""  # test images (first column; relative to data_dir unless absolute); '' = no test predictions
    attributes: tuple[str, ...] = ()  # empty: every label column
    kind: Literal["multilabel", "softmax"] = "multilabel"  # multilabel (N sigmoid heads, partial-label BCE) | softmax (one class per state)
    states: tuple[str, ...] = ()  # "1,0=open" entries; empty: all-open → open, all-closed → closed, else mixed
    drop_states: tuple[str, ...] = ("unknown",)  # filtered when the manifest is built (seed 000)
    backbone: str = "mobilenetv3_large_100"
    pretrained: str = ""  # backbone weights: "" / false = random init (logged), a file / folder, true or a timm tag
    drop_rate: float = 0.2
    image_size: int = 384
    loss: Literal["bce", "focal"] = "bce"
    focal_gamma: float = 2.0
    weighted_sampler: bool = True
    cam_erase_p: float = 0.5
    hflip_p: float = 0.0  # training flip probability; a flip swaps left/right attributes: 0 unless they are side-symmetric
    flip_permutation: tuple[int, ...] = ()
    swa_n: int = 0  # >0: SWA of the last N epoch checkpoints + BatchNorm recalibration
    compare_to: tuple[str, ...] = ()  # earlier experiments shown in the version table (same fold)
    tta_scales: tuple[float, ...] = (1.0,)
    tta_flip: bool = False
    submission_values: Literal["labels", "probs"] = "labels"  # 0/1 at the OOF thresholds (or the state) | probabilities
    fold_strategy: FoldStrategy = "multilabel_stratified"
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    monitor: str = "valid_mAP"
    monitor_mode: MonitorMode = "max"
    num_workers: int = -1  # from the machine

    def demo(self) -> "MultiLabelConfig":
        """The real ../shared/data/car_doors when present (read-only; folds go to input/), else a
        generated set; a small BatchNorm backbone at 128 px on CPU."""
        from kagglekit import paths
        real = paths.shared_data("car_doors")
        return replace(self, data_dir=str(real) if (real / "labels.csv").exists() else "input/doors_demo",
                       comp="doors_demo", test_csv=str(paths.input_root() / "doors_demo_test" / "test.csv"),
                       output_dir="output/demo", submissions_dir="submissions/demo", image_size=128,
                       backbone="resnet10t", pretrained="", epochs=12, batch_size=32, lr=2e-3, num_workers=0, n_folds=4,
                       swa_n=min(self.swa_n, 3), keep_epoch_checkpoints=min(self.keep_epoch_checkpoints, 3))
