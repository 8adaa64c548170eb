"""Segmentation models: segmentation-models-pytorch decoders on timm encoders, an optional depth
auxiliary head, 4-channel RGB-D input, and encoder weights from ``pretrained`` (a local file or
folder, or a tag: timm for ``tu-`` encoders, SMP's own for its native encoders; see
:mod:`kagglekit.weights.resolve`).

``forward(batch) -> {"logits": (B, C, H, W), "depth": (B, 1, H, W)?, "loss": scalar?}``
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from segmentation_models_pytorch.base.heads import SegmentationHead
from torch import nn

from kagglekit.tasks.segmentation.losses import depth_l1, segmentation_ce
from kagglekit.weights import DEFAULT_MIN_MATCH, is_off, load_pretrained, read_state_dict
from kagglekit.weights.resolve import Kind

__all__ = ["ARCHS", "LossSpec", "SegmentationModel", "build_network", "build_segmentation_model",
           "encoder_weights_source", "load_encoder_weights", "read_state_dict"]

log = logging.getLogger("kagglekit.segmentation")

ARCHS = {"fpn": smp.FPN, "deeplabv3plus": smp.DeepLabV3Plus, "unet": smp.Unet}


@dataclass(frozen=True)
class LossSpec:
    ignore_index: int = 255
    class_weights: tuple[float, ...] | None = None
    boundary_weight: float = 1.0
    depth_weight: float = 0.1


def build_network(arch: str, backbone: str, in_channels: int, num_classes: int) -> nn.Module:
    if arch not in ARCHS:
        raise ValueError(f"arch {arch!r} unknown; use one of {sorted(ARCHS)}")
    # encoder_weights=None: the weights come from load_encoder_weights (one loader, one report).
    return ARCHS[arch](encoder_name=backbone, encoder_weights=None, in_channels=in_channels, classes=num_classes)


class SegmentationModel(nn.Module):
    def __init__(self, net: nn.Module, loss: LossSpec, depth_head: bool) -> None:
        super().__init__()
        self.net = net
        self.loss_spec = loss
        head = net.segmentation_head
        self.depth_head = SegmentationHead(head[0].in_channels, 1, kernel_size=3,
                                           upsampling=int(getattr(head[1], "scale_factor", 1) or 1)) if depth_head else None
        weights = torch.tensor(loss.class_weights) if loss.class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        features = self.net.encoder(batch["image"])
        decoded = self.net.decoder(features)
        out = {"logits": self.net.segmentation_head(decoded)}
        if self.depth_head is not None:
            out["depth"] = self.depth_head(decoded)
        if "mask" in batch:
            out["loss"] = self.loss(out, batch)
        return out

    def loss(self, out: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        s = self.loss_spec
        loss = segmentation_ce(out["logits"], batch["mask"], s.ignore_index, self.class_weights, s.boundary_weight)
        if self.depth_head is not None and "depth" in batch and s.depth_weight > 0:
            loss = loss + s.depth_weight * depth_l1(out["depth"], batch["depth"])
        return loss


def encoder_weights_source(backbone: str) -> tuple[Kind, str]:
    """(library, model name) whose published weights a ``pretrained`` tag names for this SMP
    encoder: timm for ``tu-<timm model>``, SMP itself for its native encoders."""
    return ("timm", backbone[3:]) if backbone.startswith("tu-") else ("smp", backbone)


def load_encoder_weights(encoder: nn.Module, pretrained: str | Path, backbone: str = "",
                         min_match: float = DEFAULT_MIN_MATCH) -> int:
    """Load ``pretrained`` (a local file / folder: a plain timm or torchvision state dict, an SMP or
    kagglekit checkpoint; or a tag of ``backbone``'s library) into ``encoder``: keys mapped
    (``model.`` / ``encoder.`` prefixes, timm ``stem.0`` ↔ ``tu-`` ``stem_0``), an RGB first conv
    adapted to the encoder's input channels (4 for RGB-D), less than ``min_match`` of the encoder
    matched is an error. Returns the tensors loaded (0 when ``pretrained`` is off)."""
    kind, model = encoder_weights_source(backbone)
    report = load_pretrained(encoder, pretrained, kind=kind, model=model or None, what="pretrained",
                             min_match=min_match, adapt_input_conv=True)
    return report.loaded if report else 0


def build_segmentation_model(arch: str, backbone: str, in_channels: int, num_classes: int, loss: LossSpec,
                             depth_head: bool, pretrained: str = "") -> SegmentationModel:
    """The segmentation network with ``pretrained`` encoder weights (random when off, logged)."""
    model = SegmentationModel(build_network(arch, backbone, in_channels, num_classes), loss, depth_head)
    if not is_off(pretrained):
        load_encoder_weights(model.net.encoder, pretrained, backbone)
    else:
        log.info("pretrained=False: encoder %s randomly initialised (set pretrained=true, a tag or a local file "
                 "to load weights)", backbone)
    return model
