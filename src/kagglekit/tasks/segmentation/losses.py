"""Segmentation losses: cross-entropy, boundary-aware CE (seed exp093_4), depth L1 auxiliary."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def class_weight_vector(num_classes: int, boosts: tuple[tuple[int, float], ...] | dict[int, float]) -> torch.Tensor:
    """(C,) ones with ``boosts`` applied, e.g. {1: 1.5, 9: 1.5, 10: 1.5} for books/table/tv
    (model class ids = NYUv2 label id − 1, as in the seed's report)."""
    weights = torch.ones(num_classes)
    for cls, w in dict(boosts).items():
        if not 0 <= cls < num_classes:
            raise ValueError(f"class weight index {cls} outside 0..{num_classes - 1}")
        weights[cls] = w
    return weights


def boundary_map(target: torch.Tensor, ignore_index: int, width: int = 1) -> torch.Tensor:
    """(B, H, W) bool: pixels whose (2·width+1)² neighbourhood holds another label (void counts as
    a label, so object/void borders are edges too)."""
    t = target.float().unsqueeze(1)
    k = 2 * width + 1
    hi = F.max_pool2d(t, k, stride=1, padding=width)
    lo = -F.max_pool2d(-t, k, stride=1, padding=width)
    return (hi != lo).squeeze(1) & (target != ignore_index)


def segmentation_ce(logits: torch.Tensor, target: torch.Tensor, ignore_index: int,
                    class_weights: torch.Tensor | None = None, boundary_weight: float = 1.0) -> torch.Tensor:
    """Weighted CE. logits (B, C, H, W), target (B, H, W) int64.

    Pixel weight = class_weight[target] × (boundary_weight on edges else 1); the loss is the
    weighted mean over non-ignored pixels (the same normalisation as ``F.cross_entropy(weight=)``,
    which it equals exactly when boundary_weight == 1).
    """
    per_pixel = F.cross_entropy(logits.float(), target, ignore_index=ignore_index, reduction="none")
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    w = class_weights.to(logits.device)[safe_target] if class_weights is not None else torch.ones_like(per_pixel)
    if boundary_weight != 1.0:
        w = w * torch.where(boundary_map(target, ignore_index), boundary_weight, 1.0)
    w = w * valid
    return (per_pixel * w).sum() / w.sum().clamp_min(1e-6)


def depth_l1(pred: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Mean |pred − depth| over pixels with a depth reading (depth > 0). pred, depth (B, 1, H, W) metres."""
    valid = depth > 0
    if not bool(valid.any()):
        return pred.sum() * 0.0
    return (pred.float() - depth.float()).abs()[valid].mean()
