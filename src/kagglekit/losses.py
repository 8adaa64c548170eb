"""Losses shared by tasks (behaviour tagging, multi-label classification). Ignored entries
(padding, not labelled, missing labels) are -1.

- :func:`focal_loss`: Lin et al. 2017, "Focal Loss for Dense Object Detection", eq. 5:
  ``FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t)``; the seed report 001 plans gamma = 2 with
  alpha = [0.25, 0.75, 0.75, 0.75].
- :func:`weighted_ce`: class-weighted cross entropy (seed V5/V6 weights [1, 5, 8, 8]).
- :func:`masked_bce`: multi-label BCE where -1 marks an action that was not annotated / a
  missing label (partial-label BCE, seed 000).
- :func:`masked_focal_bce`: its binary focal variant, ``(1 - p_t)^gamma · BCE`` (seed 000's γ=2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -1


def _zero_like(logits: torch.Tensor) -> torch.Tensor:
    """A 0 that keeps the graph (a batch with nothing to learn must not give NaN)."""
    return logits.sum() * 0.0


def weighted_ce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                ignore: int = IGNORE) -> torch.Tensor:
    """``logits`` (N, C), ``target`` (N,) int64 → scalar; PyTorch's weighted mean
    (sum w_t·ce / sum w_t) over entries with ``target != ignore``."""
    if not (target != ignore).any():
        return _zero_like(logits)
    return F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0,
               alpha: torch.Tensor | None = None, ignore: int = IGNORE) -> torch.Tensor:
    """``logits`` (N, C), ``target`` (N,) int64 → scalar mean over non-ignored entries of
    ``alpha[t] · (1 - p_t)^gamma · (-log p_t)``. With gamma = 0 and no alpha it equals CE."""
    keep = target != ignore
    if not keep.any():
        return _zero_like(logits)
    logits, target = logits[keep].float(), target[keep]
    log_pt = F.log_softmax(logits, dim=-1).gather(1, target[:, None]).squeeze(1)
    loss = -log_pt
    if gamma != 0:
        loss = (1 - log_pt.exp()).clamp_min(0).pow(gamma) * loss
    if alpha is not None:
        loss = alpha.to(loss)[target] * loss
    return loss.mean()


def masked_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """``logits``/``target`` (..., A) with target in {0, 1} or -1 (not labelled); ``valid`` (...)
    bool optionally drops whole frames. Mean BCE over the kept entries; dropped entries get zero
    gradient (they are multiplied out, not just averaged)."""
    keep = target >= 0
    if valid is not None:
        keep = keep & valid[..., None]
    if not keep.any():
        return _zero_like(logits)
    per = F.binary_cross_entropy_with_logits(logits.float(), target.clamp_min(0).float(), reduction="none")
    return (per * keep).sum() / keep.sum()


def masked_focal_bce(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017) over (..., K) with -1 targets masked out; gamma = 0
    equals :func:`masked_bce`."""
    keep = target >= 0
    if not keep.any():
        return _zero_like(logits)
    t = target.clamp_min(0).float()
    per = F.binary_cross_entropy_with_logits(logits.float(), t, reduction="none")
    if gamma != 0:
        p_t = torch.exp(-per)  # probability assigned to the true label
        per = (1 - p_t).clamp_min(0).pow(gamma) * per
    return (per * keep).sum() / keep.sum()
