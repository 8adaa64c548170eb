"""Segmentation models: segmentation-models-pytorch decoders on timm encoders, an optional depth
auxiliary head, 4-channel RGB-D input, and pretrained weights loaded only from a local file.

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
    # encoder_weights=None: nothing is ever downloaded; weights come from load_encoder_weights.
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


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """safetensors or a ``weights_only`` torch file (a bare state dict or one under 'state_dict'/'model')."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"pretrained {path} does not exist; give a local weights file or pretrained=''")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return state


def _adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """RGB conv kernel → ``in_channels`` by repeating and rescaling (timm ``adapt_input_conv``),
    so the 4th (inverse-depth) channel starts from the RGB filters' response scale."""
    from timm.models import adapt_input_conv
    return adapt_input_conv(in_channels, weight)


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> int:
    """Load matching tensors into ``encoder`` (tries bare keys and the timm-universal ``model.``
    prefix); adapts the first conv to the encoder's input channels. Returns tensors loaded."""
    state = {k.removeprefix("module."): v for k, v in read_state_dict(path).items()}
    target = encoder.state_dict()
    best: dict[str, torch.Tensor] = {}
    for prefix in ("", "model.", "encoder.", "features."):
        cand = {prefix + k: v for k, v in state.items() if prefix + k in target}
        best = cand if len(cand) > len(best) else best
    loaded = {}
    for key, value in best.items():
        if value.shape != target[key].shape and value.ndim == 4 and value.shape[1] == 3:
            value = _adapt_input_conv(value, target[key].shape[1])
        if value.shape == target[key].shape:
            loaded[key] = value
    if not loaded:
        raise ValueError(f"pretrained {path}: no tensor matches the encoder's keys; is it the right architecture?")
    encoder.load_state_dict(loaded, strict=False)
    log.info("pretrained: loaded %d/%d encoder tensors from %s", len(loaded), len(target), path)
    return len(loaded)


def build_segmentation_model(arch: str, backbone: str, in_channels: int, num_classes: int, loss: LossSpec,
                             depth_head: bool, pretrained: str = "") -> SegmentationModel:
    model = SegmentationModel(build_network(arch, backbone, in_channels, num_classes), loss, depth_head)
    if pretrained:
        load_encoder_weights(model.net.encoder, pretrained)
    else:
        log.info("pretrained=False: encoder %s randomly initialised (set pretrained=<local file> to load weights)", backbone)
    return model
