"""A timm image classifier behind the package model contract ``forward(batch: dict) -> dict``.

The state-dict layout is ``model.<timm key>`` (one attribute ``self.model`` holding the timm
network). A training model whose checkpoint is served by :class:`~.predictor.Predictor` with the
default builder must have exactly this layout — i.e. be a ``TimmClassifier`` (or pass a custom
``build_model`` to ``Predictor.from_checkpoint``).
"""
from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn


class TimmClassifier(nn.Module):
    """``{"image": (B, 3, H, W)}`` → ``{"logits": (B, K)}`` (+ ``"loss"`` when ``"target"`` is present).

    kind='multilabel': target (B, K) float in {1, 0, -1}; -1 (missing) entries are masked out of
    the BCE (partial-label BCE, seed door_state). kind='softmax': target (B,) int class index.
    """

    def __init__(self, backbone: str, num_classes: int, kind: str = "multilabel",
                 pretrained: bool = False, **timm_kwargs: Any) -> None:
        super().__init__()
        if kind not in ("multilabel", "softmax"):
            raise ValueError(f"kind {kind!r}: use 'multilabel' or 'softmax'")
        self.kind = kind
        self.model = timm.create_model(backbone, pretrained=pretrained, num_classes=num_classes, **timm_kwargs)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.model(batch["image"])
        out = {"logits": logits}
        target = batch.get("target")
        if target is not None:
            out["loss"] = self.loss(logits, target)
        return out

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Masked BCE (mean over known entries) or cross-entropy. logits (B, K)."""
        if self.kind == "softmax":
            return F.cross_entropy(logits.float(), target.long())
        known = target >= 0
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.clamp(min=0).float(), reduction="none")
        return (bce * known).sum() / known.sum().clamp(min=1)
