"""The training loop's explicit settings (no torch import: configs extend this class)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Optimizer = Literal["adamw", "sgd"]
Scheduler = Literal["cosine", "plateau", "step", "constant"]
Amp = Literal["auto", "fp16", "bf16", "none"]  # auto: fp16 on CUDA; never used on CPU
MonitorMode = Literal["min", "max"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]


@dataclass(frozen=True)
class FitSettings:
    epochs: int = 1
    batch_size: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: Optimizer = "adamw"
    scheduler: Scheduler = "cosine"
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    plateau_patience: int = 5
    plateau_factor: float = 0.5
    grad_clip: float = 0.0  # 0 disables clipping
    accum_steps: int = 1
    amp: Amp = "auto"
    channels_last: bool = True  # CUDA only
    ema_decay: float = 0.0  # 0 disables EMA
    ema_warmup: bool = True
    eval_ema: bool = True  # validate (and keep as best.pt) the EMA weights
    monitor: str = "valid_loss"
    monitor_mode: MonitorMode = "min"
    early_stopping_patience: int = 0  # 0 disables early stopping
    seed: int = 0
    num_workers: int = 0  # -1: from the machine (engine.data.resolve_num_workers)
    persistent_workers: bool = True  # loader workers start once per run, not every epoch / validation
    prefetch_factor: int = 2  # batches each worker loads ahead
    log_every: int = 20  # training steps between host syncs (progress-bar loss, non-finite check)
    torch_compile: bool = False  # torch.compile the training forward (CUDA mostly; CPU needs a C++ compiler)
    compile_mode: CompileMode = "default"
    grad_checkpointing: bool = False  # timm backbones recompute activations in backward (less memory)
    cudnn_benchmark: bool = True  # CUDA: autotune convolutions (fixed input sizes); off for varied sizes
    max_steps_per_epoch: int = 0  # 0 = full epoch
    device: str = "auto"
    keep_epoch_checkpoints: int = 0  # keep the live weights of the last N epochs (epochNNN.pt) for SWA-N
    momentum: float = 0.9  # SGD only
    # Iteration-based runs (detectron2 style): max_iters > 0 trains for that many optimiser steps,
    # evaluating + checkpointing every eval_period steps (one history row = one period; 0 = at the end).
    max_iters: int = 0
    eval_period: int = 0
    warmup_iters: int = 0  # > 0 overrides warmup_epochs
    warmup_factor: float = 0.001  # lr starts at warmup_factor * lr and rises linearly
    lr_milestones: tuple[int, ...] = ()  # scheduler="step": iterations (max_iters > 0) or epochs
    lr_gamma: float = 0.1
