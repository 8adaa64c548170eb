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
from torch import nn

from kagglekit.losses import focal_loss, masked_focal_bce
from kagglekit.weights import DEFAULT_MIN_MATCH, load_pretrained


class TimmClassifier(nn.Module):
    """``{"image": (B, 3, H, W)}`` → ``{"logits": (B, K)}`` (+ ``"loss"`` when ``"target"`` is present).

    kind='multilabel': target (B, K) float in {1, 0, -1}; -1 (missing) entries are masked out of
    the BCE (partial-label BCE, seed door_state). kind='softmax': target (B,) int class index.
    """

    def __init__(self, backbone: str, num_classes: int, kind: str = "multilabel", loss: str = "bce",
                 focal_gamma: float = 2.0, **timm_kwargs: Any) -> None:
        super().__init__()
        if kind not in ("multilabel", "softmax"):
            raise ValueError(f"kind {kind!r}: use 'multilabel' or 'softmax'")
        if loss not in ("bce", "focal"):
            raise ValueError(f"loss {loss!r}: use 'bce' or 'focal'")
        self.kind, self.loss_kind, self.focal_gamma = kind, loss, focal_gamma
        self.backbone_name = backbone  # the timm model a ``pretrained`` tag belongs to
        # pretrained=False here: weights come from load_backbone_weights (one loader, one load report)
        self.model = timm.create_model(backbone, pretrained=False, num_classes=num_classes, **timm_kwargs)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        logits = self.model(batch["image"])
        out = {"logits": logits}
        target = batch.get("target")
        if target is not None:
            out["loss"] = self.loss(logits, target)
        return out

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Partial-label BCE / binary focal over known entries (-1 = missing), or cross-entropy
        / focal for the softmax kind. logits (B, K)."""
        if self.kind == "softmax":
            gamma = self.focal_gamma if self.loss_kind == "focal" else 0.0
            return focal_loss(logits, target.long(), gamma=gamma)
        return masked_focal_bce(logits, target, self.focal_gamma if self.loss_kind == "focal" else 0.0)


def load_backbone_weights(classifier: TimmClassifier, pretrained: str, min_match: float = DEFAULT_MIN_MATCH) -> int:
    """Load ``pretrained`` into the backbone: a local timm/torchvision-style state dict (or a saved
    ``TimmClassifier``'s ``model.*``, an SMP ``tu-`` encoder's), a folder holding one, or a timm tag
    of the backbone (``true``, ``ra_in1k``, ``mobilenetv3_large_100.ra_in1k``: timm's download and
    cache). The classifier head stays re-initialised when its shape differs (reported). Returns the
    number of tensors loaded (0 when ``pretrained`` is off)."""
    report = load_pretrained(classifier.model, pretrained, kind="timm", model=classifier.backbone_name,
                             what="pretrained", min_match=min_match)
    return report.loaded if report else 0
