"""Keypoint metrics: COCO keypoint mAP (OKS), and PCK.

``oks_map`` is an own numpy implementation of ``COCOeval(iouType="keypoints")`` (pycocotools
2.0.x ``cocoeval.py`` + the keypoint branch of ``COCO.loadRes``); the tests check it against
pycocotools to 1e-9 on real COCO people and on synthetic data with another keypoint count.
Semantics reproduced on purpose (several are surprising):

- **OKS** of detection ``d`` vs ground truth ``g``:
  ``mean_i exp(-d_i^2 / (2 * area_g * (2 sigma_i)^2))`` over the keypoints *labelled in g*
  (``v > 0``); the detection's own visibility flags are never read. ``area_g`` is the gt
  ``area`` field (the segmentation area in COCO, not the box area). A gt with **no** labelled
  keypoints instead uses, per keypoint, the distance from the detection's point to the gt box
  enlarged 2x around it (``[x - w, x + 2w] x [y - h, y + 2h]``; 0 inside), averaged over all K.
- **Ignored gt**: ``iscrowd`` or ``num_keypoints == 0`` (the field, not a count of ``v > 0``; it
  is computed from ``v`` only when the field is absent). Any ``ignore`` key in the gt is
  overwritten, as pycocotools does. Ignored gts can still absorb detections (a detection matched
  to one is neither TP nor FP); crowd gts can absorb any number of detections.
- **Matching** per image and category, thresholds ``.50:.05:.95``: detections by score
  (descending, stable mergesort, first ``max_dets`` kept), each takes the unmatched non-ignored gt
  with the highest OKS ``>= t`` (ties: the *later* gt in annotation order wins), and only when none
  qualifies an ignored gt. Gts outside the area range count as ignored.
- **Detection area** (used only to ignore *unmatched* detections outside an area range): if the
  first detection carries a non-empty ``bbox``, every detection's ``bbox`` w*h; otherwise the
  extent of *all* its keypoints (``(max x - min x) * (max y - min y)``, v ignored). The choice is
  made from the first detection, like ``COCO.loadRes``.
- **Area ranges** all / medium ``[32^2, 96^2]`` / large ``[96^2, 1e10]``, both ends inclusive (a gt
  of area exactly 96^2 is both medium and large); no "small" range for keypoints.
- **Precision**: 101 recall points ``0:.01:1``, precision made monotone from the right, read at
  ``searchsorted(recall, r, 'left')`` (0 past the last detection); AP = mean over thresholds,
  recall points and categories of the entries that are defined. AR = mean of the final recall.
  A summary with no defined entry is -1 in pycocotools and NaN here.

``pck`` normalises by ``max(w, h)`` of the gt box (see its docstring).
"""
from __future__ import annotations

import contextlib
import copy
import io
import math
import numbers
from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "COCO_SIGMAS",
    "KeypointDataError",
    "oks_map",
    "pck",
    "pck_per_keypoint",
    "pycocotools_oks_map",
]

COCO_SIGMAS = np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89]) / 10.0
COCO_SIGMAS.flags.writeable = False

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")

# Exactly as pycocotools Params.setKpParams (linspace, not arange: arange drifts).
_IOU_THRS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
_REC_THRS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
_AREA_RNG = {"all": (0 ** 2, 1e5 ** 2), "medium": (32 ** 2, 96 ** 2), "large": (96 ** 2, 1e5 ** 2)}


class KeypointDataError(ValueError):
    """Ground truth or detections that cannot be evaluated; the message names the offending
    annotation id / detection index and the fix."""


# --------------------------------------------------------------------------------------------
# validation / parsing
# --------------------------------------------------------------------------------------------
def _as_sigmas(sigmas: Sequence[float] | None) -> np.ndarray:
    if sigmas is None:
        return np.array(COCO_SIGMAS, dtype=np.float64)
    s = np.asarray(sigmas, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise KeypointDataError(f"sigmas must be a 1-D sequence with one value per keypoint, got shape {s.shape}")
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise KeypointDataError(f"sigmas must be finite and > 0, got {s.tolist()}")
    return s


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _keypoint_array(kps: Any, k: int, what: str) -> np.ndarray:
    """(k, 3) float array from a flat ``[x, y, v] * k`` list, or KeypointDataError naming ``what``."""
    if isinstance(kps, (str, bytes)) or not isinstance(kps, (Sequence, np.ndarray)):
        raise KeypointDataError(f"{what}: 'keypoints' must be a flat list [x1, y1, v1, x2, y2, v2, ...], got {type(kps).__name__}")
    n = len(kps)
    if n % 3 != 0:
        raise KeypointDataError(
            f"{what}: 'keypoints' has {n} numbers, not a multiple of 3; every keypoint needs x, y and a "
            f"visibility flag v (predictions: use v=1), i.e. [x1, y1, v1, ...]"
        )
    if n // 3 != k:
        raise KeypointDataError(
            f"{what}: {n // 3} keypoints but {k} sigmas; pass sigmas with one entry per keypoint "
            f"(COCO_SIGMAS is for the 17 COCO person keypoints) or fix the keypoint list"
        )
    try:
        arr = np.asarray(kps, dtype=np.float64).reshape(k, 3)
    except (TypeError, ValueError):
        raise KeypointDataError(f"{what}: 'keypoints' must contain only numbers") from None
    if not np.isfinite(arr).all():
        raise KeypointDataError(f"{what}: 'keypoints' contains NaN or inf; replace them with finite coordinates")
    return arr


def _require(obj: Mapping[str, Any], key: str, what: str, hint: str) -> Any:
    if key not in obj:
        raise KeypointDataError(f"{what}: missing key {key!r} ({hint})")
    return obj[key]


class _Gt:
    __slots__ = ("id", "kps", "area", "bbox", "iscrowd", "ignore")

    def __init__(self, ann: Mapping[str, Any], k: int, what: str):
        self.id = ann["id"]
        self.kps = _keypoint_array(_require(ann, "keypoints", what, "ground truth needs [x, y, v] * K"), k, what)
        area = _require(ann, "area", what, "OKS is normalised by the gt 'area' (segment area in COCO)")
        if not _is_number(area) or not math.isfinite(area):
            raise KeypointDataError(f"{what}: 'area' must be a finite number, got {area!r}")
        self.area = float(area)
        bbox = _require(ann, "bbox", what, "[x, y, w, h]; used for gts without labelled keypoints")
        if not (isinstance(bbox, (Sequence, np.ndarray)) and len(bbox) == 4 and all(_is_number(b) for b in bbox)):
            raise KeypointDataError(f"{what}: 'bbox' must be 4 numbers [x, y, w, h], got {bbox!r}")
        self.bbox = [float(b) for b in bbox]
        self.iscrowd = int(ann.get("iscrowd", 0))
        nk = ann["num_keypoints"] if "num_keypoints" in ann else int(np.count_nonzero(self.kps[:, 2] > 0))
        # pycocotools _prepare: ignore = iscrowd, then OR num_keypoints == 0 (any 'ignore' key is overwritten)
        self.ignore = bool(self.iscrowd) or nk == 0


def _parse_gt(gt: Mapping[str, Any], k: int):
    if not isinstance(gt, Mapping):
        raise KeypointDataError(f"gt must be a COCO dict with 'images', 'annotations', 'categories', got {type(gt).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in gt:
            raise KeypointDataError(f"gt: missing key {key!r}; expected a COCO keypoints dict (images, annotations, categories)")
    img_ids = sorted({img["id"] for img in gt["images"]})
    cat_ids = sorted({cat["id"] for cat in gt["categories"]})
    if not cat_ids:
        raise KeypointDataError("gt: 'categories' is empty; add the keypoint category (e.g. {'id': 1, 'name': 'person'})")
    img_set, cat_set = set(img_ids), set(cat_ids)
    gts: dict[tuple[Any, Any], list[_Gt]] = defaultdict(list)
    seen: set[Any] = set()
    for i, ann in enumerate(gt["annotations"]):
        if "id" not in ann:
            raise KeypointDataError(f"gt annotation #{i}: missing key 'id'; give every annotation a unique id >= 1")
        ann_id = ann["id"]
        what = f"gt annotation id {ann_id!r}"
        if ann_id in seen:
            raise KeypointDataError(f"{what}: duplicate annotation id; annotation ids must be unique")
        seen.add(ann_id)
        if ann_id == 0:
            raise KeypointDataError(
                f"{what}: annotation id 0 is not supported (COCOeval stores a match as the gt id, 0 meaning "
                f"'unmatched', so a match to it would be counted as a false positive); renumber ids from 1"
            )
        image_id = _require(ann, "image_id", what, "the image it belongs to")
        cat_id = _require(ann, "category_id", what, "e.g. 1 for person")
        if image_id not in img_set:
            raise KeypointDataError(f"{what}: image_id {image_id!r} is not in gt['images']; add the image or drop the annotation")
        if cat_id not in cat_set:
            raise KeypointDataError(f"{what}: category_id {cat_id!r} is not in gt['categories'] {cat_ids}; fix the id or add the category")
        gts[image_id, cat_id].append(_Gt(ann, k, what))
    return img_ids, cat_ids, gts


def _parse_detections(detections: Sequence[Mapping[str, Any]], k: int, img_set: set, cat_ids: list):
    if isinstance(detections, Mapping) or not isinstance(detections, (Sequence, np.ndarray)):
        raise KeypointDataError(f"detections must be a list of dicts (COCO results format), got {type(detections).__name__}")
    cat_set = set(cat_ids)
    use_bbox = False
    if len(detections) > 0:
        first = detections[0]
        use_bbox = "bbox" in first and not (isinstance(first["bbox"], (list, tuple)) and len(first["bbox"]) == 0)
        if not use_bbox and "segmentation" in first:
            raise KeypointDataError(
                "detection 0: has 'segmentation' but no 'bbox'; COCO.loadRes would then evaluate the detections as "
                "segmentation results. Drop 'segmentation' or give every detection a 'bbox'"
            )
    dts: dict[tuple[Any, Any], list[tuple[float, np.ndarray, float]]] = defaultdict(list)
    for i, det in enumerate(detections):
        what = f"detection {i}"
        if not isinstance(det, Mapping):
            raise KeypointDataError(f"{what}: expected a dict {{image_id, category_id, keypoints, score}}, got {type(det).__name__}")
        image_id = _require(det, "image_id", what, "COCO results format")
        cat_id = _require(det, "category_id", what, "COCO results format")
        score = _require(det, "score", what, "the confidence used to rank detections")
        if image_id not in img_set:
            raise KeypointDataError(f"{what}: image_id {image_id!r} is not in gt['images']; predict only gt images or fix the id")
        if cat_id not in cat_set:
            raise KeypointDataError(f"{what}: category_id {cat_id!r} is not in gt['categories'] {cat_ids}")
        if not _is_number(score) or not math.isfinite(score):
            raise KeypointDataError(f"{what}: 'score' must be a finite number, got {score!r}")
        kps = _keypoint_array(_require(det, "keypoints", what, "[x, y, v] * K"), k, what)
        if use_bbox:
            bbox = det.get("bbox")
            if not (isinstance(bbox, (Sequence, np.ndarray)) and len(bbox) == 4 and all(_is_number(b) for b in bbox)):
                raise KeypointDataError(
                    f"{what}: 'bbox' must be 4 numbers [x, y, w, h] (detection 0 has a bbox, so the detection area comes "
                    f"from every detection's bbox, as in COCO.loadRes), got {bbox!r}; give all detections a bbox or none"
                )
            area = float(bbox[2]) * float(bbox[3])
        else:
            x, y = kps[:, 0], kps[:, 1]
            area = (np.max(x) - np.min(x)) * (np.max(y) - np.min(y))
        dts[image_id, cat_id].append((float(score), kps, float(area)))
    return dts


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def _compute_oks(gts: list[_Gt], d_kps: np.ndarray, variances: np.ndarray) -> np.ndarray:
    """(D, G) OKS, same floating-point operations as ``COCOeval.computeOks``. d_kps: (D, K, 3)."""
    xd, yd = d_kps[:, :, 0], d_kps[:, :, 1]
    ious = np.zeros((d_kps.shape[0], len(gts)))
    for j, g in enumerate(gts):
        xg, yg, vg = g.kps[:, 0], g.kps[:, 1], g.kps[:, 2]
        vis = vg > 0
        if np.count_nonzero(vis) > 0:
            dx = xd - xg
            dy = yd - yg
        else:
            bb = g.bbox
            x0, x1 = bb[0] - bb[2], bb[0] + bb[2] * 2
            y0, y1 = bb[1] - bb[3], bb[1] + bb[3] * 2
            dx = np.maximum(0.0, x0 - xd) + np.maximum(0.0, xd - x1)
            dy = np.maximum(0.0, y0 - yd) + np.maximum(0.0, yd - y1)
        e = (dx ** 2 + dy ** 2) / variances / (g.area + np.spacing(1)) / 2
        if np.count_nonzero(vis) > 0:
            e = np.ascontiguousarray(e[:, vis])
        ious[:, j] = np.sum(np.exp(-e), axis=1) / e.shape[1]
    return ious


def _match(ious: np.ndarray, gt_ig: np.ndarray, crowd: np.ndarray, n_det: int):
    """Greedy matching of ``COCOeval.evaluateImg`` for all thresholds at once.

    ious (D, G) with gts already sorted non-ignored first. Returns dt_matched (T, D) bool,
    dt_ignored (T, D) bool (matched to an ignored gt). For each detection, in score order, the
    sequential pycocotools loop picks the *last* gt reaching the maximum OKS (>= threshold) among
    the available non-ignored gts, and only if there is none, among the available ignored gts.
    """
    T, G = len(_IOU_THRS), len(gt_ig)
    thr = np.minimum(_IOU_THRS, 1 - 1e-10)[:, None]
    gt_taken = np.zeros((T, G), bool)
    dt_m = np.zeros((T, n_det), bool)
    dt_ig = np.zeros((T, n_det), bool)
    if G == 0 or n_det == 0:
        return dt_m, dt_ig
    rows = np.arange(T)
    for d in range(n_det):
        o = ious[d][None, :]
        ok = (~gt_taken | crowd[None, :]) & (o >= thr)
        chosen = np.full(T, -1)
        for block in (ok & ~gt_ig[None, :], ok & gt_ig[None, :]):
            todo = (chosen < 0) & block.any(axis=1)
            if not todo.any():
                continue
            vals = np.where(block, o, -np.inf)
            best = block & (vals == vals.max(axis=1, keepdims=True))
            last = G - 1 - np.argmax(best[:, ::-1], axis=1)
            chosen = np.where(todo, last, chosen)
        hit = chosen >= 0
        if hit.any():
            dt_m[hit, d] = True
            dt_ig[hit, d] = gt_ig[chosen[hit]]
            gt_taken[rows[hit], chosen[hit]] = True
    return dt_m, dt_ig


def _accumulate(evals: list) -> tuple[np.ndarray, np.ndarray]:
    """Precision (T, R) and recall (T,) of one (category, area) over images, as
    ``COCOeval.accumulate``; all -1 when there is no non-ignored gt."""
    T, R = len(_IOU_THRS), len(_REC_THRS)
    precision, recall = -np.ones((T, R)), -np.ones(T)
    evals = [e for e in evals if e is not None]
    if not evals:
        return precision, recall
    scores = np.concatenate([e[0] for e in evals])
    inds = np.argsort(-scores, kind="mergesort")
    dtm = np.concatenate([e[1] for e in evals], axis=1)[:, inds]
    dtig = np.concatenate([e[2] for e in evals], axis=1)[:, inds]
    npig = int(sum(np.count_nonzero(e[3] == 0) for e in evals))
    if npig == 0:
        return precision, recall
    tps = np.logical_and(dtm, np.logical_not(dtig))
    fps = np.logical_and(np.logical_not(dtm), np.logical_not(dtig))
    tp_sum = np.cumsum(tps, axis=1).astype(dtype=float)
    fp_sum = np.cumsum(fps, axis=1).astype(dtype=float)
    nd = tp_sum.shape[1]
    for t in range(T):
        tp, fp = tp_sum[t], fp_sum[t]
        rc = tp / npig
        pr = tp / (fp + tp + np.spacing(1))
        recall[t] = rc[-1] if nd else 0
        q = np.zeros(R)
        if nd:
            pr = np.maximum.accumulate(pr[::-1])[::-1]  # monotone envelope from the right
            idx = np.searchsorted(rc, _REC_THRS, side="left")
            valid = idx < nd
            q[valid] = pr[idx[valid]]
        precision[t] = q
    return precision, recall


def _summaries(precision: np.ndarray, recall: np.ndarray, area_lbls: Sequence[str]) -> dict[str, float]:
    """The 10 keypoint summaries from precision (T, R, K, A) and recall (T, K, A), as
    ``COCOeval.summarize`` (mean of the entries > -1, NaN instead of -1)."""
    def mean(s: np.ndarray) -> float:
        s = s[s > -1]
        return float(np.mean(s)) if s.size else float("nan")

    def pick(arr: np.ndarray, thr: float | None, area: str) -> np.ndarray:
        a = [i for i, lbl in enumerate(area_lbls) if lbl == area]
        if thr is not None:
            arr = arr[np.where(thr == _IOU_THRS)[0]]
        return arr[..., a]

    out = {}
    for prefix, arr in (("AP", precision), ("AR", recall)):
        out[prefix] = mean(pick(arr, None, "all"))
        out[prefix + "50"] = mean(pick(arr, .5, "all"))
        out[prefix + "75"] = mean(pick(arr, .75, "all"))
        out[prefix + "m"] = mean(pick(arr, None, "medium"))
        out[prefix + "l"] = mean(pick(arr, None, "large"))
    return {key: out[key] for key in SUMMARY_KEYS}


def oks_map(
    gt: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    sigmas: Sequence[float] | None = None,
    max_dets: int = 20,
) -> dict[str, float]:
    """COCO keypoint AP/AR (OKS), equal to ``COCOeval(iouType='keypoints')`` with
    ``params.kpt_oks_sigmas = sigmas`` and ``params.maxDets = [max_dets]``.

    gt: COCO keypoints dict (``images``, ``categories``, ``annotations`` with ``id`` >= 1 unique,
    ``image_id``, ``category_id``, ``keypoints`` ``[x, y, v] * K``, ``area``, ``bbox``,
    ``iscrowd`` (default 0), ``num_keypoints`` (default: count of ``v > 0``)).
    detections: COCO results ``{"image_id", "category_id", "keypoints", "score"}`` (``bbox``
    optional, see the module docstring for its effect). sigmas: K per-keypoint sigmas
    (default :data:`COCO_SIGMAS`, K = 17). Every gt and detection must have exactly K keypoints.

    Returns ``AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl`` (NaN where COCOeval gives -1,
    e.g. APm without any medium gt). Raises :class:`KeypointDataError` on malformed input.
    """
    sig = _as_sigmas(sigmas)
    if isinstance(max_dets, bool) or not isinstance(max_dets, numbers.Integral) or max_dets < 1:
        raise KeypointDataError(f"max_dets must be an integer >= 1, got {max_dets!r}")
    k = sig.size
    img_ids, cat_ids, gts = _parse_gt(gt, k)
    dts = _parse_detections(detections, k, set(img_ids), cat_ids)
    variances = (sig * 2) ** 2
    area_lbls = list(_AREA_RNG)
    T, R, K, A = len(_IOU_THRS), len(_REC_THRS), len(cat_ids), len(area_lbls)
    precision, recall = -np.ones((T, R, K, A)), -np.ones((T, K, A))
    for ki, cat in enumerate(cat_ids):
        per_area: list[list] = [[] for _ in area_lbls]
        for img in img_ids:
            g = gts.get((img, cat), [])
            d = dts.get((img, cat), [])
            if not g and not d:
                continue  # evaluateImg returns None
            order = np.argsort([-s for s, _, _ in d], kind="mergesort")[:max_dets]
            d = [d[i] for i in order]
            scores = np.array([s for s, _, _ in d], dtype=np.float64)
            d_area = np.array([a for _, _, a in d], dtype=np.float64)
            ious = _compute_oks(g, np.stack([kp for _, kp, _ in d]), variances) if g and d else None
            g_area = np.array([x.area for x in g], dtype=np.float64)
            g_ign = np.array([x.ignore for x in g], dtype=bool)
            g_crowd = np.array([bool(x.iscrowd) for x in g], dtype=bool)
            for ai, lbl in enumerate(area_lbls):
                lo, hi = _AREA_RNG[lbl]
                ig = g_ign | (g_area < lo) | (g_area > hi)
                gind = np.argsort(ig.astype(np.int64), kind="mergesort")
                ig_sorted = ig[gind]
                if ious is not None:
                    dt_m, dt_ig = _match(ious[:, gind], ig_sorted, g_crowd[gind], len(d))
                else:
                    dt_m = np.zeros((T, len(d)), bool)
                    dt_ig = np.zeros((T, len(d)), bool)
                outside = (d_area < lo) | (d_area > hi)
                dt_ig = dt_ig | (~dt_m & outside[None, :])
                per_area[ai].append((scores, dt_m, dt_ig, ig_sorted))
        for ai in range(A):
            precision[:, :, ki, ai], recall[:, ki, ai] = _accumulate(per_area[ai])
    return _summaries(precision, recall, area_lbls)


# --------------------------------------------------------------------------------------------
# reference
# --------------------------------------------------------------------------------------------
def pycocotools_oks_map(
    gt: Mapping[str, Any],
    detections: Sequence[Mapping[str, Any]],
    sigmas: Sequence[float] | None = None,
    max_dets: int = 20,
) -> dict[str, float]:
    """The same summaries computed by pycocotools' ``COCOeval(iouType='keypoints')`` (the
    reference :func:`oks_map` is tested against). Inputs are deep-copied (``loadRes`` mutates
    them) and pycocotools' printing is swallowed. -1 is returned as NaN. No validation beyond
    pycocotools' own (e.g. an unknown image id raises its AssertionError).

    ``summarize()`` only reads ``maxDets == 20``; for another ``max_dets`` the same means are
    taken from ``eval['precision'/'recall']`` directly.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    sig = np.array(COCO_SIGMAS if sigmas is None else sigmas, dtype=np.float64)  # must be an ndarray: sigmas * 2
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(dict(gt))
        coco_gt.createIndex()
        dets = copy.deepcopy(list(detections))
        if dets:
            coco_dt = coco_gt.loadRes(dets)
        else:  # loadRes indexes anns[0]
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(coco_gt.dataset["images"]),
                               "categories": copy.deepcopy(coco_gt.dataset["categories"]), "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        ev.params.kpt_oks_sigmas = sig
        ev.params.maxDets = [int(max_dets)]
        ev.evaluate()
        ev.accumulate()
        if max_dets == 20:
            ev.summarize()
            stats = [float(s) for s in ev.stats]
        else:
            p = ev.params
            prec, rec = ev.eval["precision"][..., 0], ev.eval["recall"][..., 0]
            stats = []
            for arr in (prec, rec):
                for thr, lbl in ((None, "all"), (.5, "all"), (.75, "all"), (None, "medium"), (None, "large")):
                    s = arr if thr is None else arr[np.where(thr == p.iouThrs)[0]]
                    s = s[..., [i for i, a in enumerate(p.areaRngLbl) if a == lbl]]
                    stats.append(float(np.mean(s[s > -1])) if (s > -1).any() else -1.0)
    return {key: (float("nan") if v == -1 else v) for key, v in zip(SUMMARY_KEYS, stats)}


# --------------------------------------------------------------------------------------------
# PCK
# --------------------------------------------------------------------------------------------
def _pck_hits(pred, gt, visible, bbox_size, alpha) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    visible = np.asarray(visible)
    bbox_size = np.asarray(bbox_size, dtype=np.float64)
    if pred.ndim != 3 or pred.shape[2] != 2 or pred.shape != gt.shape:
        raise KeypointDataError(f"pred and gt must both be (N, K, 2), got {pred.shape} and {gt.shape}")
    n, k = pred.shape[:2]
    if visible.shape != (n, k):
        raise KeypointDataError(f"visible must be (N, K) = {(n, k)}, got {visible.shape}")
    if visible.dtype != bool:
        raise KeypointDataError(f"visible must be a bool array (e.g. v > 0), got dtype {visible.dtype}")
    if bbox_size.shape != (n,):
        raise KeypointDataError(f"bbox_size must be (N,) = ({n},), got {bbox_size.shape}")
    if not (np.isfinite(bbox_size).all() and (bbox_size >= 0).all()):
        raise KeypointDataError("bbox_size must be finite and >= 0 (max(w, h) of each gt box)")
    if not (isinstance(alpha, numbers.Real) and alpha > 0):
        raise KeypointDataError(f"alpha must be > 0, got {alpha!r}")
    if not np.isfinite(gt[visible]).all():
        raise KeypointDataError("gt has NaN/inf coordinates at visible keypoints")
    dist = np.hypot(pred[..., 0] - gt[..., 0], pred[..., 1] - gt[..., 1])
    hit = dist < alpha * bbox_size[:, None]  # NaN predictions compare False: a miss
    return hit & visible, visible


def pck(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, bbox_size: np.ndarray, alpha: float = 0.05) -> float:
    """Percentage of Correct Keypoints: fraction of the visible gt keypoints whose prediction lies
    strictly closer than ``alpha * bbox_size`` (Euclidean, pixels).

    pred, gt: (N, K, 2) x/y; visible: (N, K) bool (e.g. gt ``v > 0``), only these are counted;
    bbox_size: (N,) the normaliser per instance, **max(w, h) of the gt box** (this choice is
    ours; other papers use the head segment or the torso diameter, so values are only comparable
    under the same normalisation). NaN when no keypoint is visible.
    """
    hit, vis = _pck_hits(pred, gt, visible, bbox_size, alpha)
    n_vis = int(vis.sum())
    return float(hit.sum() / n_vis) if n_vis else float("nan")


def pck_per_keypoint(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, bbox_size: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """(K,) PCK of each keypoint over the instances where it is visible (NaN where never visible);
    same normalisation as :func:`pck` (``max(w, h)`` of the gt box)."""
    hit, vis = _pck_hits(pred, gt, visible, bbox_size, alpha)
    n_vis = vis.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_vis > 0, hit.sum(axis=0) / np.maximum(n_vis, 1), np.nan)
