"""Horizontal-flip TTA for keypoint models (torchvision ``keypointrcnn`` output format).

**Coordinate convention.** Keypoints are continuous pixel coordinates in which pixel column ``i``
covers ``[i, i + 1)`` (its centre is ``i + 0.5``) -- the convention of torchvision's keypoint
R-CNN (``heatmaps_to_keypoints`` returns cell centres ``+ 0.5``) and of detectron2's
``HFlipTransform``. Mirroring in an image ``W`` pixels wide is then ``x' = W - x`` (not
``W - 1 - x``, which is the pixel-*index* convention), the same rule as
:func:`kagglekit.tta.detection.hflip_boxes`; flipping twice is the identity.

**Left/right.** A mirror image of a person has the person's left limbs where the right ones were.
A model that learnt "left is on this side of the body" reports the mirrored left wrist as the
*right* wrist, so after mirroring the coordinates back the left/right slots must be swapped
(``flip_pairs``, see :func:`kagglekit.tasks.keypoints.convert.flip_pairs_from_names`). Forgetting
the swap averages each left point with its right twin.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torchvision.ops import box_iou

from kagglekit.tta.detection import hflip_boxes

__all__ = ["hflip_keypoints", "match_instances", "merge_flip_keypoints", "predict_flip_tta"]

Pairs = Sequence[Sequence[int]]


def _check_pairs(flip_pairs: Pairs, k: int) -> list[tuple[int, int]]:
    pairs = []
    seen: set[int] = set()
    for pair in flip_pairs:
        if len(pair) != 2:
            raise ValueError(f"flip pair {pair!r} must be two keypoint indices")
        i, j = int(pair[0]), int(pair[1])
        if not (0 <= i < k and 0 <= j < k) or i == j:
            raise ValueError(f"flip pair ({i}, {j}) must be two different indices in [0, {k})")
        if i in seen or j in seen:
            raise ValueError(f"keypoint index in flip pair ({i}, {j}) already appears in another pair")
        seen.update((i, j))
        pairs.append((i, j))
    return pairs


def _permutation(flip_pairs: Pairs, k: int, device: torch.device) -> torch.Tensor:
    perm = list(range(k))
    for i, j in _check_pairs(flip_pairs, k):
        perm[i], perm[j] = j, i
    return torch.as_tensor(perm, dtype=torch.int64, device=device)


def hflip_keypoints(kpts: torch.Tensor, width: int | float, flip_pairs: Pairs) -> torch.Tensor:
    """Mirror keypoints ``(..., K, 2 or 3)`` of an image ``width`` pixels wide: ``x' = W - x``
    (continuous coordinates, see the module docstring), then swap the slots of each ``(i, j)`` in
    ``flip_pairs``. Other channels (visibility / score) move with their point. Every point is
    mirrored, also unlabelled ``(0, 0, 0)`` ones. Returns a new tensor."""
    if kpts.ndim < 2 or kpts.shape[-1] not in (2, 3):
        raise ValueError(f"keypoints must be (..., K, 2) or (..., K, 3), got {tuple(kpts.shape)}")
    out = kpts[..., _permutation(flip_pairs, kpts.shape[-2], kpts.device), :].clone()
    out[..., 0] = width - out[..., 0]
    return out


def match_instances(boxes_a: torch.Tensor, boxes_b: torch.Tensor, scores_a: torch.Tensor | None = None,
                    iou_thr: float = 0.5, labels_a: torch.Tensor | None = None,
                    labels_b: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy one-to-one matching: instances of ``a`` in descending ``scores_a`` (given order if
    None; ties keep order) each take the unmatched ``b`` with the highest box IoU ``>= iou_thr``
    (and the same label, if labels are given). Returns (N_a,) int64: index into ``b`` or -1."""
    n, m = boxes_a.shape[0], boxes_b.shape[0]
    match = torch.full((n,), -1, dtype=torch.int64)
    if n == 0 or m == 0:
        return match
    iou = box_iou(boxes_a.float().cpu(), boxes_b.float().cpu())
    if labels_a is not None and labels_b is not None:
        iou = torch.where(labels_a.cpu()[:, None] == labels_b.cpu()[None, :], iou, torch.full_like(iou, -1.0))
    order = (torch.argsort(scores_a.float().cpu(), descending=True, stable=True) if scores_a is not None
             else torch.arange(n))
    taken = torch.zeros(m, dtype=torch.bool)
    for i in order.tolist():
        row = torch.where(taken, torch.full_like(iou[i], -1.0), iou[i])
        j = int(torch.argmax(row))
        if row[j] >= iou_thr:
            match[i] = j
            taken[j] = True
    return match


def merge_flip_keypoints(orig: torch.Tensor, flipped_back: torch.Tensor, boxes_orig: torch.Tensor,
                         boxes_flipped_back: torch.Tensor, scores_orig: torch.Tensor | None = None,
                         scores_flipped_back: torch.Tensor | None = None, iou_thr: float = 0.5, *,
                         labels_orig: torch.Tensor | None = None,
                         labels_flipped_back: torch.Tensor | None = None) -> torch.Tensor:
    """Average each original instance's keypoints ``(N, K, 3)`` with those of the flipped-view
    instance it matches (``flipped_back``: ``(M, K, 3)``, already mirrored back and L/R-swapped by
    :func:`hflip_keypoints`; boxes ``(M, 4)`` mirrored back by ``hflip_boxes``). Matching:
    :func:`match_instances` by box IoU, greedy by ``scores_orig``. All three channels are averaged
    (x, y and the third one, visibility or score). Unmatched originals are returned unchanged;
    unmatched flipped instances are dropped. ``scores_flipped_back`` is accepted for symmetry and
    not used by the matching."""
    if orig.ndim != 3 or flipped_back.ndim != 3 or orig.shape[1:] != flipped_back.shape[1:]:
        raise ValueError(f"orig {tuple(orig.shape)} and flipped_back {tuple(flipped_back.shape)} must be "
                         f"(N, K, C) and (M, K, C) with the same K and C")
    if boxes_orig.shape != (orig.shape[0], 4) or boxes_flipped_back.shape != (flipped_back.shape[0], 4):
        raise ValueError(f"boxes {tuple(boxes_orig.shape)}, {tuple(boxes_flipped_back.shape)} must be "
                         f"({orig.shape[0]}, 4) and ({flipped_back.shape[0]}, 4)")
    del scores_flipped_back
    match = match_instances(boxes_orig, boxes_flipped_back, scores_orig, iou_thr, labels_orig,
                            labels_flipped_back).to(orig.device)
    out = orig.clone()
    hit = match >= 0
    if hit.any():
        out[hit] = (orig[hit] + flipped_back[match[hit]].to(orig.dtype)) / 2
    return out


def predict_flip_tta(predict: Callable[[torch.Tensor], Mapping[str, torch.Tensor]], image: torch.Tensor,
                     flip_pairs: Pairs, *, iou_thr: float = 0.5) -> dict[str, torch.Tensor]:
    """Run ``predict`` on ``image`` (``(..., H, W)`` tensor, e.g. CHW float as torchvision models
    take) and on its horizontal mirror, and merge.

    ``predict(image) -> {"boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,), "keypoints" (N, K, 3),
    optionally "keypoints_scores" (N, K)}`` (one image's torchvision ``keypointrcnn`` output).
    The flipped view's boxes and keypoints are mirrored back (``x' = W - x``) and its keypoint slots
    L/R-swapped by ``flip_pairs``; instances are matched by box IoU (same label), greedy by score.
    Returned: the original view's ``boxes``/``scores``/``labels`` (and any other keys) with
    ``keypoints`` (and ``keypoints_scores``) averaged over matched pairs.
    """
    width = image.shape[-1]
    orig = dict(predict(image))
    flip = dict(predict(image.flip(-1)))
    for name, d in (("original", orig), ("flipped", flip)):
        missing = [key for key in ("boxes", "scores", "labels", "keypoints") if key not in d]
        if missing:
            raise KeyError(f"predict() output for the {name} view lacks {missing}")
    boxes_back = hflip_boxes(flip["boxes"], width)
    kpts_back = hflip_keypoints(flip["keypoints"], width, flip_pairs)
    match = match_instances(orig["boxes"], boxes_back, orig["scores"], iou_thr, orig["labels"], flip["labels"])
    out = dict(orig)
    out["keypoints"] = merge_flip_keypoints(orig["keypoints"], kpts_back, orig["boxes"], boxes_back,
                                            orig["scores"], flip["scores"], iou_thr,
                                            labels_orig=orig["labels"], labels_flipped_back=flip["labels"])
    if "keypoints_scores" in orig and "keypoints_scores" in flip:
        fks = flip["keypoints_scores"]
        ks_back = fks[..., _permutation(flip_pairs, fks.shape[-1], fks.device)]  # slot swap only
        ks = orig["keypoints_scores"].clone()
        hit = match.to(ks.device) >= 0
        if hit.any():
            ks[hit] = (ks[hit] + ks_back[match[hit]].to(ks.dtype)) / 2
        out["keypoints_scores"] = ks
    return out
