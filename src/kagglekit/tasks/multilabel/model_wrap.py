"""A timm image classifier behind the package model contract ``forward(batch: dict) -> dict``.

The state-dict layout is ``model.<timm key>`` (one attribute ``self.model`` holding the timm
network). A training model whose checkpoint is served by :class:`~.predictor.Predictor` with the
default builder must have exactly this layout — i.e. be a ``TimmClassifier`` (or pass a custom
``build_model`` to ``Predictor.from_checkpoint``).
"""
from __future__ import annotations

from typing import Any

import logging

import timm
import torch
from torch import nn

from kagglekit.losses import focal_loss, masked_focal_bce

log = logging.getLogger("kagglekit.multilabel")


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
        # pretrained=False always: weights only ever come from a local file (load_backbone_weights)
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


def load_backbone_weights(classifier: TimmClassifier, path: str) -> int:
    """Load a local timm/torchvision-style state dict into the backbone (the classifier head is
    skipped when its shape differs). Returns the number of tensors loaded."""
    from kagglekit.tasks.segmentation.model import read_state_dict
    target = classifier.model.state_dict()
    state = {k.removeprefix("module.").removeprefix("model."): v for k, v in read_state_dict(path).items()}
    loaded = {k: v for k, v in state.items() if k in target and v.shape == target[k].shape}
    if not loaded:
        raise ValueError(f"pretrained {path}: no tensor matches backbone keys; is it the right architecture?")
    classifier.model.load_state_dict(loaded, strict=False)
    log.info("pretrained: loaded %d/%d backbone tensors from %s", len(loaded), len(target), path)
    return len(loaded)
