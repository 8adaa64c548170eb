"""Checkpoint averaging ("SWA-k") and BatchNorm recalibration.

Seed (door_state v20260515): "SWA-4" = the arithmetic mean of the last 4 epoch checkpoints
(ep17–ep20). Averaging weights makes the BatchNorm running statistics stale: the running mean/var
stored in each checkpoint describe *that* checkpoint's pre-BN activations, and their average does
not describe the activations of the averaged network. timm's ``avg_checkpoints.py`` averages and
stops there; ``torch.optim.swa_utils.update_bn`` recomputes the statistics by one pass over the
training data with ``momentum=None`` (cumulative average). ``recompute_batchnorm`` does the same
for models that take dict batches (the package contract ``forward(batch: dict) -> dict``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from kagglekit.engine.checkpoint import CheckpointError, load_checkpoint


def average_state_dicts(states: Sequence[Mapping[str, Tensor]]) -> dict[str, Tensor]:
    """Mean of floating-point tensors over ``states``; integer/bool tensors come from the last state.

    Every state must have the same keys and, per key, the same shape. Means are accumulated in
    float64 and cast back to each tensor's dtype. Integer buffers (BatchNorm ``num_batches_tracked``)
    cannot be meaningfully averaged, so the last (most recent) value is kept, as in timm's averager.
    """
    if not states:
        raise ValueError("average_state_dicts: no state dicts given")
    _check_same_layout(states)
    out: dict[str, Tensor] = {}
    n = float(len(states))
    for key, last in states[-1].items():
        if torch.is_floating_point(last) or torch.is_complex(last):
            acc = torch.zeros(last.shape, dtype=torch.float64 if not last.is_complex() else torch.complex128)
            for s in states:
                acc += s[key].detach().to("cpu", acc.dtype)
            out[key] = (acc / n).to(last.dtype)
        else:
            out[key] = last.detach().cpu().clone()
    return out


def _check_same_layout(states: Sequence[Mapping[str, Tensor]]) -> None:
    ref = states[0]
    for i, s in enumerate(states[1:], start=1):
        missing, extra = set(ref) - set(s), set(s) - set(ref)
        if missing or extra:
            key = sorted(missing or extra)[0]
            raise KeyError(f"state dict {i} does not match state dict 0: key {key!r} is "
                           f"{'missing' if missing else 'unexpected'} "
                           f"({len(missing)} missing, {len(extra)} unexpected)")
        for key, t in ref.items():
            if tuple(s[key].shape) != tuple(t.shape):
                raise ValueError(f"state dict {i}: key {key!r} has shape {tuple(s[key].shape)}, "
                                 f"expected {tuple(t.shape)} (as in state dict 0)")


def average_checkpoints(paths: Sequence[str | Path], key: str = "model") -> dict[str, Tensor]:
    """Average the ``key`` state dicts of checkpoints at ``paths`` (loaded with ``weights_only=True``).

    ``key=""`` treats each file as a bare state dict. Raises ``CheckpointError`` naming the file
    when the key is absent.
    """
    states = []
    for p in paths:
        ckpt: Any = load_checkpoint(p)
        if key:
            if not isinstance(ckpt, dict) or key not in ckpt:
                have = sorted(ckpt)[:10] if isinstance(ckpt, dict) else type(ckpt).__name__
                raise CheckpointError(f"{p}: no {key!r} entry in checkpoint (has {have})")
            ckpt = ckpt[key]
        states.append(ckpt)
    return average_state_dicts(states)


_BN = nn.modules.batchnorm._BatchNorm  # BatchNorm1d/2d/3d, SyncBatchNorm (and timm's BatchNormAct2d)


def _to_device(batch: Mapping[str, Any], device: torch.device | str) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, Tensor) else v) for k, v in batch.items()}


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, loader: Iterable[Mapping[str, Any]], device: torch.device | str,
                        max_batches: int | None = None) -> int:
    """Recompute every BatchNorm's running mean/var over ``loader``; returns the number of BN layers.

    Batches are dicts such as ``{"image": (B, 3, H, W), "target": (B, K)}``; each is moved to
    ``device`` and passed as ``model(batch)`` in train mode (a loss computed by forward is ignored).
    With ``momentum=None`` BatchNorm keeps a cumulative (equal-weight) average of the per-batch
    statistics, so after the pass ``running_mean`` is the mean over batches of the batch means
    (exactly the data mean when batches have equal size) — torch.optim.swa_utils.update_bn.
    Momenta and each module's train/eval flag are restored. No BN layers → 0, model untouched.
    """
    bns = [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]
    if not bns:
        return 0
    momenta = {m: m.momentum for m in bns}
    modes = {m: m.training for m in model.modules()}
    for m in bns:
        m.reset_running_stats()  # mean 0, var 1, num_batches_tracked 0
        m.momentum = None
    model.train()
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            model(_to_device(batch, device))
    finally:
        for m, mom in momenta.items():
            m.momentum = mom
        for m, was_training in modes.items():
            m.train(was_training)
    return len(bns)
