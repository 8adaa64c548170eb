"""torchvision Faster R-CNN (R50-FPN v1/v2, other ResNets, MobileNetV2-FPN) behind the common model
contract, with configurable anchors per FPN level, an optional focal-loss RoI classifier (seed 004
run 2) and weights from ``pretrained`` (backbone) / ``init_weights`` (whole detector): local files or
folders, or torchvision weights enums (``IMAGENET1K_V1``, ``COCO_V1``, ``DEFAULT``) fetched and cached
by torchvision under ``TORCH_HOME`` (see :mod:`kagglekit.weights.resolve`).

``DetectionModel.forward(batch)``: training → ``{"loss": sum of the RPN + RoI losses, <parts>}``;
eval → ``{"detections": [{"boxes" (n, 4) xyxy px, "scores" (n,), "labels" (n,) in 1..C}]}`` at
``test_min_size`` (the loop never branches: it only reads ``loss`` and hands outputs to the evaluator).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, RPNHead
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops.misc import FrozenBatchNorm2d

from kagglekit.losses import focal_loss
from kagglekit.tta.detection import Detections
from kagglekit.weights import DEFAULT_MIN_MATCH, DEFAULT_PREFIXES, is_off, load_pretrained

log = logging.getLogger("kagglekit.detection")

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")


def parse_anchor_sizes(spec: str) -> tuple[tuple[int, ...], ...]:
    """``"8,12,16;24,32,40;..."`` → one tuple of sizes per FPN level (5 levels: P2..P6). The RPN head
    is shared across levels, so every level needs the same number of sizes."""
    try:
        levels = tuple(tuple(int(x) for x in level.split(",") if x.strip()) for level in spec.split(";"))
    except ValueError:
        raise ValueError(f"anchor_sizes={spec!r}: expected integers, ',' within a level and ';' between levels") from None
    if len(levels) != 5 or len({len(level) for level in levels}) != 1 or not levels[0]:
        raise ValueError(f"anchor_sizes={spec!r}: need 5 FPN levels with the same number of sizes each "
                         "(e.g. '32;64;128;256;512' or '8,12,16;24,32,40;48,64,80;96,128,160;192,224,256')")
    return levels


@dataclass(frozen=True)
class DetectorSpec:
    num_classes: int  # foreground classes (background added here)
    architecture: str = "fasterrcnn_resnet50_fpn"
    backbone: str = "resnet50"
    trainable_backbone_layers: int = 3
    anchor_sizes: str = "32;64;128;256;512"
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    train_min_sizes: tuple[int, ...] = (800,)
    test_min_size: int = 800
    max_size: int = 1333
    roi_batch_per_image: int = 512
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_image: int = 100
    rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000)  # (train, test) per FPN level
    rpn_post_nms_top_n: tuple[int, int] = (2000, 1000)  # (train, test) proposals kept per image
    roi_loss: str = "ce"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    pretrained: bool = False  # frozen BatchNorm in the backbone (detectron2 / torchvision fine-tuning)


@dataclass(frozen=True)
class TorchvisionNames:
    """The torchvision builders whose published weights fit a built detector: ``backbone`` for
    ``pretrained`` (classification weights of ``backbone.body``), ``detector`` for ``init_weights``
    (whole-model weights; None when torchvision publishes none for this backbone)."""

    backbone: str
    detector: str | None


WEIGHT_NAMES = "kagglekit_weight_names"  # the attribute build_detector / build_keypoint_rcnn set


def torchvision_names(model: nn.Module) -> TorchvisionNames:
    """The names a detector was built with (ResNet-50 Faster R-CNN for one built elsewhere)."""
    return getattr(model, WEIGHT_NAMES, TorchvisionNames("resnet50", "fasterrcnn_resnet50_fpn"))


class FocalRoIHeads(RoIHeads):
    """RoI heads whose classification loss is the softmax focal loss alpha·(1-p_t)^gamma·CE
    (Lin et al. 2017, as the seed's FocalFastRCNNOutputLayers); box regression is unchanged."""

    focal_alpha: float = 0.25
    focal_gamma: float = 2.0

    def forward(self, features, proposals, image_shapes, targets=None):  # noqa: D102 (torchvision signature)
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        _, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        labels = torch.cat(labels)
        loss_cls = self.focal_alpha * focal_loss(class_logits, labels, gamma=self.focal_gamma)
        return [], {"loss_classifier": loss_cls, "loss_box_reg": loss_box_reg}


def _resnet_backbone(spec: DetectorSpec) -> BackboneWithFPN:
    norm = FrozenBatchNorm2d if spec.pretrained else nn.BatchNorm2d
    v2 = spec.architecture.endswith("_v2")
    resnet = getattr(torchvision.models, spec.backbone)(weights=None, norm_layer=nn.BatchNorm2d if v2 else norm)
    return _resnet_fpn_extractor(resnet, spec.trainable_backbone_layers, norm_layer=nn.BatchNorm2d if v2 else None)


def _mobilenet_v2_backbone(spec: DetectorSpec) -> BackboneWithFPN:
    """FPN on MobileNetV2 stages at strides 4/8/16/32 (features 3, 6, 13, 18) + the P6 max-pool."""
    features = torchvision.models.mobilenet_v2(weights=None).features
    n_frozen = max(0, len(features) - round(len(features) * spec.trainable_backbone_layers / 5))
    for layer in list(features)[:n_frozen]:
        layer.requires_grad_(False)
    return BackboneWithFPN(features, {"3": "0", "6": "1", "13": "2", "18": "3"}, [24, 32, 96, 1280], 256)


def build_detector(spec: DetectorSpec) -> FasterRCNN:
    """The torchvision detector for ``spec`` (random weights; see :func:`load_local_weights`)."""
    if spec.backbone not in RESNETS + ("mobilenet_v2",):
        raise ValueError(f"backbone {spec.backbone!r} unknown; use one of {RESNETS + ('mobilenet_v2',)}")
    if spec.architecture not in ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2"):
        raise ValueError(f"architecture {spec.architecture!r} unknown; use fasterrcnn_resnet50_fpn or _v2")
    backbone = _mobilenet_v2_backbone(spec) if spec.backbone == "mobilenet_v2" else _resnet_backbone(spec)
    sizes = parse_anchor_sizes(spec.anchor_sizes)
    anchors = AnchorGenerator(sizes, (tuple(spec.aspect_ratios),) * len(sizes))
    extra: dict[str, Any] = {}
    if spec.architecture.endswith("_v2"):  # torchvision fasterrcnn_resnet50_fpn_v2 heads (Li et al. 2021)
        extra["rpn_head"] = RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0], conv_depth=2)
        extra["box_head"] = FastRCNNConvFCHead((backbone.out_channels, 7, 7), [256] * 4, [1024], norm_layer=nn.BatchNorm2d)
    model = FasterRCNN(backbone, num_classes=spec.num_classes + 1, min_size=spec.train_min_sizes,
                       max_size=spec.max_size, rpn_anchor_generator=anchors,
                       box_batch_size_per_image=spec.roi_batch_per_image, box_score_thresh=spec.score_thresh,
                       box_nms_thresh=spec.nms_thresh, box_detections_per_img=spec.detections_per_image,
                       rpn_pre_nms_top_n_train=spec.rpn_pre_nms_top_n[0], rpn_pre_nms_top_n_test=spec.rpn_pre_nms_top_n[1],
                       rpn_post_nms_top_n_train=spec.rpn_post_nms_top_n[0], rpn_post_nms_top_n_test=spec.rpn_post_nms_top_n[1],
                       **extra)
    if spec.roi_loss == "focal":
        model.roi_heads.__class__ = FocalRoIHeads
        model.roi_heads.focal_alpha, model.roi_heads.focal_gamma = spec.focal_alpha, spec.focal_gamma
    elif spec.roi_loss != "ce":
        raise ValueError(f"roi_loss {spec.roi_loss!r} unknown; use ce or focal")
    setattr(model, WEIGHT_NAMES, TorchvisionNames(spec.backbone, spec.architecture if spec.backbone == "resnet50" else None))
    return model


# a saved DetectionModel / KeypointModel (best.pt) holds the detector under ``detector.*``
DETECTOR_PREFIXES = DEFAULT_PREFIXES + ("detector.",)


def load_local_weights(model: FasterRCNN, pretrained: str = "", init_weights: str = "",
                       min_match: float = DEFAULT_MIN_MATCH) -> None:
    """Backbone ImageNet weights (``pretrained``: torchvision classification keys, MobileNetV2's
    ``features.`` prefix stripped; or a torchvision enum of the backbone, ``IMAGENET1K_V1`` /
    ``DEFAULT``) and/or a whole detector's weights (``init_weights``: torchvision's COCO Faster R-CNN
    file or enum ``COCO_V1``, or a saved model's ``detector.*``; the box predictor for another class
    count and the RPN head for another anchor count are re-initialised and reported). Local files
    and folders are read as they are; enums through torchvision's cache (``TORCH_HOME``). Either
    setting off (``""`` / ``false``) is skipped; less than ``min_match`` matched is an error."""
    names = torchvision_names(model)
    if not is_off(pretrained):
        load_pretrained(model.backbone.body, pretrained, kind="torchvision", model=names.backbone, what="pretrained",
                        min_match=min_match)
    if not is_off(init_weights):
        load_pretrained(model, init_weights, kind="torchvision", model=names.detector, what="init_weights",
                        prefixes=DETECTOR_PREFIXES, min_match=min_match)
    if is_off(pretrained) and is_off(init_weights):
        log.info("pretrained=%s, init_weights=%s: detector randomly initialised", pretrained or "false",
                 init_weights or "false")


class DetectionModel(nn.Module):
    """The common contract around a torchvision detector (see module docstring)."""

    def __init__(self, detector: FasterRCNN, train_min_sizes: Sequence[int], test_min_size: int) -> None:
        super().__init__()
        self.detector = detector
        self.train_min_sizes, self.test_min_size = tuple(train_min_sizes), int(test_min_size)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.training:
            # torchvision samples the min size per image from transform.min_size while training
            self.detector.transform.min_size = self.train_min_sizes
            losses = self.detector(batch["images"], batch["targets"])
            return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}
        return {"detections": self.predict_sized(batch["images"], self.test_min_size)}

    @torch.no_grad()
    def predict_sized(self, images: list[torch.Tensor], min_size: int) -> list[dict[str, torch.Tensor]]:
        """Detections for (3, H, W) images resized to ``min_size`` (boxes mapped back to (H, W))."""
        self.detector.transform.min_size = (int(min_size),)
        return self.detector(images)

    def predictor(self):
        """``predict(image (3, H, W), min_size) -> Detections`` for :func:`kagglekit.tta.detection.predict_tta`."""
        return lambda image, min_size: Detections.from_dict(self.predict_sized([image], min_size)[0])

