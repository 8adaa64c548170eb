"""Exponential moving average of model weights (Polyak averaging), as in timm's ``ModelEmaV2``.

The step is passed explicitly to :meth:`ModelEma.update` (no hidden counter), so a resumed run
applies exactly the same decay sequence. Float buffers (BatchNorm running mean/var) are averaged
like parameters; integer buffers (``num_batches_tracked``) are copied.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma:
    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup

    def decay_at(self, step: int) -> float:
        """Warmup ``min(decay, (1 + step) / (10 + step))`` keeps early EMA close to the live
        weights (the TF/timm convention) instead of anchoring on the random init."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = self.decay_at(step)
        ema_state = self.module.state_dict()
        for name, live in _unwrap(model).state_dict().items():
            ema = ema_state[name]
            if ema.dtype.is_floating_point:
                ema.lerp_(live.detach().to(ema.dtype), 1.0 - decay)
            else:
                ema.copy_(live)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model
