"""Scale × horizontal-flip TTA for image classification, on the same ``View`` list as segmentation.

Each view resizes the whole image (bilinear, like ``tta.segmentation.view_logits``), optionally
flips it, runs the model and activates the (B, K) logits; the activated outputs are averaged.
Unlike dense prediction there is no spatial output to un-flip — but for multi-label *attributes*
whose meaning depends on left/right (``front_left`` ↔ ``front_right``), the flipped image's
prediction for column j answers the question of column ``flip_permutation[j]``. Such views are
mapped back with ``probs[:, flip_permutation]`` before averaging; without it, flip TTA averages
"left" with "right" and blurs both.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from kagglekit.tta.segmentation import View, make_views

__all__ = ["View", "make_views", "view_class_logits", "tta_probs_classification", "check_flip_permutation"]

ClassifierForward = Callable[[torch.Tensor], torch.Tensor]  # (B, 3, H, W) -> logits (B, K)


def check_flip_permutation(perm: Sequence[int], k: int) -> list[int]:
    """Validate a flip permutation of K columns: a permutation and an involution (flip∘flip = id)."""
    perm = [int(p) for p in perm]
    if sorted(perm) != list(range(k)):
        raise ValueError(f"flip_permutation {perm} is not a permutation of range({k})")
    if any(perm[p] != i for i, p in enumerate(perm)):
        raise ValueError(f"flip_permutation {perm} is not its own inverse (a flip swaps pairs of columns)")
    return perm


def view_class_logits(forward: ClassifierForward, images: torch.Tensor, view: View,
                      flip_permutation: Sequence[int] | None = None) -> torch.Tensor:
    """Logits of one view, columns mapped back to the unflipped meaning. (B, 3, H, W) → (B, K) float32."""
    x = images.flip(-1) if view.flip else images
    if view.scale != 1.0:
        size = (max(1, round(x.shape[-2] * view.scale)), max(1, round(x.shape[-1] * view.scale)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    logits = forward(x).float()
    if logits.ndim != 2:
        raise ValueError(f"classification forward must return (B, K) logits, got shape {tuple(logits.shape)}")
    if view.flip and flip_permutation is not None:
        logits = logits[:, check_flip_permutation(flip_permutation, logits.shape[1])]
    return logits


@torch.no_grad()
def tta_probs_classification(forward: ClassifierForward, images: torch.Tensor, views: Sequence[View],
                             activation: str = "sigmoid",
                             flip_permutation: Sequence[int] | None = None) -> torch.Tensor:
    """Mean over ``views`` of activated outputs: images (B, 3, H, W) → probabilities (B, K) float32.

    ``activation``: 'sigmoid' (multi-label attributes) or 'softmax' (one class per image).
    ``flip_permutation``: for flipped views, column j of the output is replaced by column
    ``flip_permutation[j]`` (e.g. attributes [left, right, open] → [1, 0, 2]); must be an involution.
    A model with a fixed input size should use ``scales=(1.0,)``.
    """
    if activation not in ("sigmoid", "softmax"):
        raise ValueError(f"activation {activation!r}: use 'sigmoid' or 'softmax'")
    if not views:
        raise ValueError("TTA needs at least one view (check tta_scales)")
    act = torch.sigmoid if activation == "sigmoid" else (lambda z: torch.softmax(z, dim=1))
    total: torch.Tensor | None = None
    for view in views:
        probs = act(view_class_logits(forward, images, view, flip_permutation))
        total = probs if total is None else total.add_(probs)
    assert total is not None
    return total.div_(float(len(views)))
