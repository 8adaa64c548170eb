"""Multi-scale × horizontal-flip TTA for object detection, with NMS or WBF box merging.

A view is (min_size, flip): the image is flipped or not, the detector is asked to run at that
``min_size`` (a torchvision ``GeneralizedRCNN`` resizes internally so its shorter side is
``min_size`` — capped by ``max_size`` — and maps the boxes back to the input's pixels), the boxes
of a flipped view are mirrored back, and all views are merged:

* ``"nms"`` — class-wise NMS over the union of the views' boxes (``torchvision.ops.batched_nms``):
  keeps the best box of each cluster untouched.
* ``"wbf"`` — Weighted Boxes Fusion (Solovyev, Wang & Gabruseva, "Weighted boxes fusion:
  Ensembling boxes from different object detection models", Image and Vision Computing 2021,
  arXiv:1910.13302) via ``ensemble_boxes.weighted_boxes_fusion``: each cluster's box is the
  score-weighted mean of its members' coordinates. With ``conf_type='avg'`` the cluster score is
  the mean member score times ``min(n_views, n_members) / sum(weights)`` — a box that only 1 of 4
  views found keeps a quarter of its score. That is the paper's (and the library's) behaviour and
  is kept on purpose: agreement across views is evidence.

All boxes are (N, 4) float xyxy in pixels of the image handed to ``predict_tta``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torchvision.ops import batched_nms

__all__ = ["Detections", "DetectionView", "make_detection_views", "hflip_boxes", "merge_nms", "merge_wbf",
           "merge_detections", "predict_tta", "set_min_size", "torchvision_predictor", "MERGE_METHODS"]

WBF_CONF_TYPES = ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")
MERGE_METHODS = ("nms", "wbf")


@dataclass
class Detections:
    """Detections of one image: boxes (N, 4) float xyxy pixels, scores (N,) float, labels (N,) int64."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        n = self.boxes.shape[0]
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (N, 4) xyxy, got shape {tuple(self.boxes.shape)}")
        if self.scores.shape != (n,) or self.labels.shape != (n,):
            raise ValueError(f"scores {tuple(self.scores.shape)} and labels {tuple(self.labels.shape)} "
                             f"must both be ({n},) to match boxes")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, device: torch.device | str | None = None) -> "Detections":
        return cls(torch.zeros(0, 4, device=device), torch.zeros(0, device=device),
                   torch.zeros(0, dtype=torch.int64, device=device))

    @classmethod
    def from_dict(cls, d: Mapping[str, torch.Tensor]) -> "Detections":
        """From a torchvision detector output dict {'boxes', 'scores', 'labels'}."""
        return cls(d["boxes"].float(), d["scores"].float(), d["labels"].long())

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {"boxes": self.boxes, "scores": self.scores, "labels": self.labels}


@dataclass(frozen=True)
class DetectionView:
    """One TTA view: detector ``min_size`` (shorter side after its internal resize) and hflip."""

    min_size: int
    flip: bool

    @property
    def name(self) -> str:
        return f"m{self.min_size}{'-flip' if self.flip else ''}"


def make_detection_views(sizes: Sequence[int], flip: bool) -> list[DetectionView]:
    """sizes × (no flip[, hflip]), size-major — as ``tta.segmentation.make_views``."""
    return [DetectionView(int(s), f) for s in sizes for f in ((False, True) if flip else (False,))]


def hflip_boxes(boxes: torch.Tensor, width: int | float) -> torch.Tensor:
    """Mirror (N, 4) xyxy boxes in an image ``width`` pixels wide: x1' = W - x2, x2' = W - x1.

    Pixel-edge convention (a box covering columns [a, b) has x1=a, x2=b), matching
    ``image.flip(-1)``; applying it twice is the identity.
    """
    out = boxes.clone()
    out[:, 0] = width - boxes[:, 2]
    out[:, 2] = width - boxes[:, 0]
    return out


def _concat(views: Sequence[Detections]) -> Detections:
    if not views:
        raise ValueError("merging needs at least one view")
    device = views[0].boxes.device
    return Detections(torch.cat([v.boxes.float().to(device) for v in views]),
                      torch.cat([v.scores.float().to(device) for v in views]),
                      torch.cat([v.labels.long().to(device) for v in views]))


def merge_nms(views: Sequence[Detections], iou_thr: float = 0.5, max_dets: int = 100) -> Detections:
    """Class-wise NMS over the union of all views' boxes; (M, ...) sorted by score desc, M <= max_dets."""
    allv = _concat(views)
    if len(allv) == 0:
        return allv
    keep = batched_nms(allv.boxes, allv.scores, allv.labels, iou_thr)[:max_dets]  # sorted desc
    return Detections(allv.boxes[keep], allv.scores[keep], allv.labels[keep])


def _normalised_arrays(d: Detections, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xyxy pixels → [0, 1] numpy (x by width, y by height), clipped, zero-area boxes dropped
    (``ensemble_boxes`` would clip and skip them too, but with a warning per box)."""
    scale = torch.tensor([w, h, w, h], dtype=torch.float64)
    boxes = (d.boxes.detach().cpu().double() / scale).clamp_(0.0, 1.0)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return (boxes[ok].numpy(), d.scores.detach().cpu().double()[ok].numpy(),
            d.labels.detach().cpu()[ok].numpy())


def merge_wbf(views: Sequence[Detections], image_size: tuple[int, int], iou_thr: float = 0.55,
              skip_box_thr: float = 0.0, weights: Sequence[float] | None = None, conf_type: str = "avg",
              max_dets: int = 100) -> Detections:
    """Weighted Boxes Fusion (Solovyev et al. 2021, arXiv:1910.13302) of V views of one image.

    ``image_size`` = (h, w) of the pixel frame the boxes live in; boxes are normalised by it for
    ``ensemble_boxes`` and mapped back. Each view counts as one "model" (``weights``: one per view).
    Scores are rescaled as the library does — with 'avg', by min(V, members) / sum(weights), so a
    box seen by few views is down-weighted. Views with zero boxes are fine (they still count in V).
    Returns (M, ...) sorted by score desc, M <= max_dets; coordinates carry float32 round-off.
    """
    from ensemble_boxes import weighted_boxes_fusion  # local: optional at import time

    if not views:
        raise ValueError("merging needs at least one view")
    if conf_type not in WBF_CONF_TYPES:  # ensemble_boxes calls exit() on an unknown conf_type
        raise ValueError(f"WBF conf_type {conf_type!r}: use one of {WBF_CONF_TYPES}")
    if weights is not None and len(weights) != len(views):  # ensemble_boxes would only print
        raise ValueError(f"WBF weights: got {len(weights)} for {len(views)} views")
    h, w = int(image_size[0]), int(image_size[1])
    device = views[0].boxes.device
    arrays = [_normalised_arrays(v, h, w) for v in views]
    if sum(len(a[0]) for a in arrays) == 0:
        return Detections.empty(device)
    boxes, scores, labels = weighted_boxes_fusion(
        [a[0] for a in arrays], [a[1] for a in arrays], [a[2] for a in arrays],
        weights=None if weights is None else list(weights), iou_thr=iou_thr,
        skip_box_thr=skip_box_thr, conf_type=conf_type)
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    out = Detections(torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4) * scale,
                     torch.as_tensor(scores, dtype=torch.float32).reshape(-1),
                     torch.as_tensor(labels).reshape(-1).round().long())
    order = torch.argsort(out.scores, descending=True, stable=True)[:max_dets]
    return Detections(out.boxes[order].to(device), out.scores[order].to(device), out.labels[order].to(device))


def merge_detections(views: Sequence[Detections], image_size: tuple[int, int], method: str = "nms",
                     **kw: Any) -> Detections:
    """Dispatch to ``merge_nms`` (ignores ``image_size``) or ``merge_wbf``; ``kw`` go to the merger."""
    if method == "nms":
        return merge_nms(views, **kw)
    if method == "wbf":
        return merge_wbf(views, image_size, **kw)
    raise ValueError(f"detection merge method {method!r}: use one of {MERGE_METHODS}")


@contextlib.contextmanager
def set_min_size(model: torch.nn.Module, size: int) -> Iterator[torch.nn.Module]:
    """Temporarily set ``model.transform.min_size = (size,)`` on a torchvision ``GeneralizedRCNN``.

    The previous value is restored on exit, also when the body raises. ``max_size`` is left alone,
    so the effective shorter side is ``min(size, max_size * short / long)``.
    """
    transform = getattr(model, "transform", None)
    if transform is None or not hasattr(transform, "min_size"):
        raise TypeError(f"{type(model).__name__} has no .transform.min_size (not a torchvision GeneralizedRCNN?)")
    old = transform.min_size
    transform.min_size = (int(size),)
    try:
        yield model
    finally:
        transform.min_size = old


def torchvision_predictor(model: torch.nn.Module) -> Callable[[torch.Tensor, int], Detections]:
    """``predict(img (3, H, W), min_size) -> Detections`` for an eval-mode torchvision detector."""
    def predict(img: torch.Tensor, min_size: int) -> Detections:
        with set_min_size(model, min_size):
            return Detections.from_dict(model([img])[0])
    return predict


@torch.no_grad()
def predict_tta(predict: Callable[[torch.Tensor, int], Detections], image: torch.Tensor, sizes: Sequence[int],
                flip: bool = True, method: str = "nms", image_size: tuple[int, int] | None = None,
                **merge_kw: Any) -> Detections:
    """Detections of ``image`` (3, H, W) merged over sizes × (no flip[, hflip]).

    ``predict(img, min_size)`` must return boxes in the pixels of the ``img`` it was given (as a
    torchvision detector does); flipped views get ``image.flip(-1)`` and their boxes are mirrored
    back. ``image_size`` = (h0, w0): the frame of the returned boxes; when it differs from (H, W)
    (``image`` is a resized copy of the original) boxes are rescaled to it. Defaults to (H, W).
    One view (one size, no flip) is returned as ``predict`` gave it (no merge, no max_dets cut;
    only rescaled if ``image_size`` asks for it).
    ``merge_kw`` go to ``merge_nms`` / ``merge_wbf`` (iou_thr, max_dets, weights, ...).
    """
    if method not in MERGE_METHODS:  # fail before running the detector
        raise ValueError(f"detection merge method {method!r}: use one of {MERGE_METHODS}")
    views = make_detection_views(sizes, flip)
    if not views:
        raise ValueError("TTA needs at least one view (check sizes)")
    height, width = image.shape[-2:]
    outs: list[Detections] = []
    for view in views:
        det = predict(image.flip(-1) if view.flip else image, view.min_size)
        if view.flip:
            det = Detections(hflip_boxes(det.boxes, width), det.scores, det.labels)
        outs.append(det)
    h0, w0 = (int(height), int(width)) if image_size is None else (int(image_size[0]), int(image_size[1]))
    if (h0, w0) != (height, width):
        scale = torch.tensor([w0 / width, h0 / height, w0 / width, h0 / height], device=image.device)
        outs = [Detections(d.boxes * scale.to(d.boxes.device), d.scores, d.labels) for d in outs]
    if len(outs) == 1:
        return outs[0]
    return merge_detections(outs, (h0, w0), method, **merge_kw)
