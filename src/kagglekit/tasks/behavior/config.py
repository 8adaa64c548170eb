"""Configuration of the behaviour track (seed 001: MABe V5/V6 Conv1D-BiLSTM, V7 Transformer)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from kagglekit.config import ExperimentConfig, FoldStrategy, MonitorMode, Scheduler


@dataclass(frozen=True)
class BehaviorConfig(ExperimentConfig):
    task: str = "behavior"
    comp: str = "mabe"
    view: Literal["grouped", "pairs"] = "grouped"  # grouped: the seed's 4 classes per frame; pairs: the competition's agent/target/action
    smoothing_window: int = 5  # pairs view: moving average of frame probabilities before thresholding
    min_duration: int = 3  # pairs view: shorter predicted intervals are dropped
    arch: Literal["conv_bilstm", "transformer"] = "conv_bilstm"
    motion: bool = True  # V6: + speed + acceleration per keypoint
    pair_features: bool = False  # beyond the seed: agent→target distances, heading, approach speed
    extra_features: bool = False  # + an importer's engineered per-frame columns (<split>_features/, e.g. SimBA's)
    max_mice: int = 4
    window: int = 100
    stride: int = 50
    infer_stride: int = 25
    conv_channels: tuple[int, ...] = (64, 128, 256)
    lstm_hidden: int = 256
    lstm_layers: int = 2
    dropout: float = 0.3
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4
    loss: Literal["softmax", "focal"] = "softmax"
    class_weights: tuple[float, ...] = (1.0, 5.0, 8.0, 8.0)
    focal_gamma: float = 2.0
    fold_strategy: FoldStrategy = "stratified_group"  # grouped by video, stratified by lab
    epochs: int = 100
    batch_size: int = 384
    lr: float = 4e-4
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    scheduler: Scheduler = "plateau"
    warmup_epochs: float = 2.0
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    min_lr: float = 1e-5
    early_stopping_patience: int = 15
    monitor: str = "valid_f1_macro"
    monitor_mode: MonitorMode = "max"
    num_workers: int = 0
    demo_videos: int = 40
    demo_frames: int = 600

    def demo(self) -> "BehaviorConfig":
        """Generated mice in the competition layout; small model, few epochs, CPU."""
        return replace(self, data_dir="input/mabe_demo", output_dir="output/demo", submissions_dir="submissions/demo",
                       epochs=15, batch_size=32, lr=2e-3, warmup_epochs=1.0, conv_channels=(32, 64), lstm_hidden=64,
                       lstm_layers=1, d_model=64, n_layers=2, early_stopping_patience=0, n_folds=4)
