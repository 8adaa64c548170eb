"""torchvision Keypoint R-CNN behind the common model contract (K keypoints, ResNet-FPN backbone,
weights from local files or torchvision enums — ``init_weights=COCO_V1`` is torchvision's COCO
``keypointrcnn_resnet50_fpn``, ``pretrained=IMAGENET1K_V1`` the backbone's) with horizontal-flip TTA
that swaps left/right keypoints.

``forward(batch)``: training → ``{"loss": RPN + box + keypoint losses, <parts>}``; eval →
``{"detections": [{"boxes" (n, 4), "scores" (n,), "labels" (n,), "keypoints" (n, K, 3)}]}``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torchvision.models.detection import KeypointRCNN
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor

from kagglekit.tasks.detection.model import (WEIGHT_NAMES, DetectorSpec, TorchvisionNames, _resnet_backbone,
                                             load_local_weights)
from kagglekit.weights import DEFAULT_MIN_MATCH
from kagglekit.tta.keypoints import predict_flip_tta

def build_keypoint_rcnn(num_keypoints: int, *, backbone: str = "resnet50", trainable_layers: int = 3,
                        min_size: int = 480, max_size: int = 800, score_thresh: float = 0.05,
                        detections_per_image: int = 20, pretrained: bool = False, roi_batch_per_image: int = 512,
                        head_channels: Sequence[int] = (512,) * 8) -> KeypointRCNN:
    """``keypointrcnn_resnet50_fpn``'s architecture for any K, ResNet depth and keypoint-head width
    (random weights). The default head (8 convs × 512 on 14×14 RoIs, ~3.7 GFLOP per RoI) dominates
    CPU time; small runs use a narrower one."""
    spec = DetectorSpec(num_classes=1, backbone=backbone, trainable_backbone_layers=trainable_layers, pretrained=pretrained)
    backbone_fpn = _resnet_backbone(spec)
    head = KeypointRCNNHeads(backbone_fpn.out_channels, list(head_channels))
    model = KeypointRCNN(backbone_fpn, num_classes=2, num_keypoints=None, min_size=min_size,
                         max_size=max_size, box_score_thresh=score_thresh, box_detections_per_img=detections_per_image,
                         box_batch_size_per_image=roi_batch_per_image, keypoint_head=head,
                         keypoint_predictor=KeypointRCNNPredictor(head_channels[-1], num_keypoints))
    setattr(model, WEIGHT_NAMES, TorchvisionNames(backbone, "keypointrcnn_resnet50_fpn" if backbone == "resnet50" else None))
    return model


def load_keypoint_weights(model: KeypointRCNN, init_weights: str = "", pretrained: str = "",
                          min_match: float = DEFAULT_MIN_MATCH) -> None:
    """ImageNet backbone weights (``pretrained``) and/or a whole model to fine-tune from
    (``init_weights``: e.g. the v1 checkpoint's ``detector.*`` or torchvision's ``COCO_V1``; the
    keypoint head of another K is re-initialised and reported): local files / folders or torchvision
    enums (:func:`~kagglekit.tasks.detection.model.load_local_weights`)."""
    load_local_weights(model, pretrained=pretrained, init_weights=init_weights, min_match=min_match)


class KeypointModel(nn.Module):
    def __init__(self, detector: KeypointRCNN, flip_pairs: Sequence[tuple[int, int]]) -> None:
        super().__init__()
        self.detector, self.flip_pairs = detector, list(flip_pairs)

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.training:
            losses = self.detector(batch["images"], batch["targets"])
            return {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}
        return {"detections": self.detector(batch["images"])}

    @torch.no_grad()
    def predict(self, image: torch.Tensor, tta_flip: bool) -> dict[str, torch.Tensor]:
        """Detections of one (3, H, W) image; with ``tta_flip`` the mirrored image's instances
        (x mirrored back, left/right keypoints swapped) are matched by box IoU and averaged in."""
        single = lambda img: self.detector([img])[0]  # noqa: E731
        return predict_flip_tta(single, image, self.flip_pairs) if tta_flip else single(image)
