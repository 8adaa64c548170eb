"""Optimiser and learning-rate schedules with an explicit step (no hidden scheduler counters).

``LrSchedule.lr_at(step)`` is a pure function of the global step, so resume is exact; the only
stateful piece is :class:`Plateau` (ReduceLROnPlateau semantics), whose small state is saved in
the checkpoint.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

SCHEDULES = ("cosine", "plateau", "constant", "step")


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, kind: str = "adamw",
                    momentum: float = 0.9, fused: bool = False) -> torch.optim.Optimizer:
    """AdamW/SGD with no weight decay on biases and normalisation weights (1-D tensors), the
    usual practice (e.g. timm ``param_groups_weight_decay``). ``fused`` (CUDA parameters): one
    kernel per step, and GradScaler steps it without reading ``found_inf`` on the host (fused
    optimisers unscale and skip inf steps on the device: ``_step_supports_amp_scaling``)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=lr, fused=fused or None)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=fused or None)
    raise ValueError(f"optimizer {kind!r} unknown; use 'adamw' or 'sgd'")


@dataclass
class Plateau:
    """ReduceLROnPlateau on a monitored metric; ``scale`` multiplies the base lr."""

    patience: int = 5
    factor: float = 0.5
    mode: str = "max"
    threshold: float = 1e-4
    best: float | None = None
    bad_epochs: int = 0
    scale: float = 1.0

    def observe(self, value: float, min_scale: float) -> bool:
        """Record one epoch's metric; returns True when the lr was just reduced."""
        better = self.best is None or (value > self.best + self.threshold if self.mode == "max" else value < self.best - self.threshold)
        if better:
            self.best, self.bad_epochs = value, 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs > self.patience and self.scale > min_scale:
            self.scale = max(self.scale * self.factor, min_scale)
            self.bad_epochs = 0
            return True
        return False

    def state_dict(self) -> dict:
        return asdict(self)

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


@dataclass
class LrSchedule:
    """lr(step) = warmup (linear from ``warmup_factor``·base) then cosine / plateau / constant / step."""

    kind: str
    base_lr: float
    total_steps: int
    warmup_steps: int = 0
    warmup_factor: float = 0.001
    min_lr: float = 0.0
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    plateau: Plateau = field(default_factory=Plateau)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise ValueError(f"scheduler {self.kind!r} unknown; use one of {SCHEDULES}")

    def lr_at(self, step: int) -> float:
        if step < self.warmup_steps:
            alpha = step / max(1, self.warmup_steps)
            return self.base_lr * (self.warmup_factor * (1 - alpha) + alpha)
        if self.kind == "cosine":
            t = min(1.0, (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps))
            return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
        if self.kind == "plateau":
            return max(self.base_lr * self.plateau.scale, self.min_lr)
        if self.kind == "step":
            return self.base_lr * self.gamma ** sum(step >= m for m in self.milestones)
        return self.base_lr

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    def end_of_epoch(self, metric: float | None) -> None:
        if self.kind == "plateau" and metric is not None:
            self.plateau.observe(metric, min_scale=self.min_lr / self.base_lr if self.base_lr else 0.0)
