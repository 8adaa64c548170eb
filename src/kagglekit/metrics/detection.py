"""COCO bounding-box evaluation (AP / AR, per-class AP) shaped like detectron2's COCOEvaluator.

Two interchangeable backends run the same COCOeval protocol (10 IoU thresholds 0.50:0.95,
101 recall points, area ranges small < 32² <= medium < 96² <= large, maxDets 1 / 10 / N):

- ``"faster"``: ``faster_coco_eval.COCOeval_faster`` (C++ evaluate + accumulate; the same
  code lineage as detectron2's ``COCOeval_opt``, ``detectron2/evaluation/fast_eval_api.py``);
- ``"pycocotools"``: the reference ``pycocotools.cocoeval.COCOeval``.

The 12 summary numbers are recomputed here from ``COCOeval.eval["precision" / "recall"]``
exactly as ``COCOeval.summarize()._summarize`` does (mean over entries > -1), so they are
backend independent, nothing is printed, and ``max_dets != 100`` works (pycocotools'
``summarize`` hard-codes ``maxDets=100`` for ``stats[0]``; detectron2 works around it with its
``COCOevalMaxDets`` subclass). COCOeval's ``-1`` ("no ground truth in this bucket") becomes NaN.

Per-class AP follows detectron2 ``COCOEvaluator._derive_coco_results``
(``detectron2/evaluation/coco_evaluation.py``): ``precision[:, :, k, area=all, maxdet=-1]``,
mean over entries > -1, NaN if there are none.

Empty detections: COCOeval gives AP = AR = 0 for every class with non-crowd ground truth
(``accumulate`` leaves the zero-initialised precision row when there are no detections);
detectron2 instead skips COCOeval and reports NaN/-1 for an empty prediction list.
"""
from __future__ import annotations

import contextlib
import io
import math
from numbers import Integral, Real
from typing import Any, Callable, Iterable, Sequence

import numpy as np

__all__ = [
    "DetectionDataError",
    "coco_bbox_eval",
    "detectron2_results_json",
    "prediction_stats",
    "validate_coco_gt",
    "validate_detections",
]

# The 12 COCOeval bbox summary entries, in ``COCOeval.summarize()._summarizeDets`` order:
# (key, ap?, iouThr, areaRng label, index into params.maxDets).
_SUMMARY: tuple[tuple[str, bool, float | None, str, int], ...] = (
    ("AP", True, None, "all", 2), ("AP50", True, 0.5, "all", 2), ("AP75", True, 0.75, "all", 2),
    ("APs", True, None, "small", 2), ("APm", True, None, "medium", 2), ("APl", True, None, "large", 2),
    ("AR1", False, None, "all", 0), ("AR10", False, None, "all", 1), ("AR100", False, None, "all", 2),
    ("ARs", False, None, "small", 2), ("ARm", False, None, "medium", 2), ("ARl", False, None, "large", 2),
)
# detectron2 ``_derive_coco_results`` reports these for iou_type "bbox".
_D2_BBOX_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
_DET_KEYS = ("image_id", "category_id", "bbox", "score")
_BACKENDS = ("faster", "pycocotools")


class DetectionDataError(ValueError):
    """Ground truth or detections that COCOeval would reject or silently mis-evaluate."""


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_box(box: Any, where: str) -> None:
    """``box`` must be 4 finite numbers ``[x, y, w, h]`` with ``w, h >= 0``."""
    if not isinstance(box, (list, tuple, np.ndarray)) or len(box) != 4:
        raise DetectionDataError(f"{where}: bbox must be [x, y, w, h] (4 numbers), got {box!r}")
    if not all(isinstance(v, Real) and math.isfinite(v) for v in box):
        raise DetectionDataError(f"{where}: bbox {list(box)!r} has a non-finite or non-numeric value; "
                                 "drop or clip the box")
    if box[2] < 0 or box[3] < 0:
        raise DetectionDataError(f"{where}: bbox {list(box)!r} has negative width/height; COCO boxes are "
                                 "[x, y, w, h], not [x1, y1, x2, y2] (convert with w = x2 - x1, h = y2 - y1)")


def _ids(items: Iterable[dict], kind: str, source: str) -> set[int]:
    """Ids of ``gt[kind]``; raises on a missing, non-int or duplicate id."""
    seen: set[int] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item:
            raise DetectionDataError(f"{source}: {kind}[{i}] has no 'id' key")
        if not _is_int(item["id"]):
            raise DetectionDataError(f"{source}: {kind}[{i}] id {item['id']!r} is not an int; COCO ids are ints")
        if item["id"] in seen:
            raise DetectionDataError(f"{source}: duplicate {kind[:-1]} id {item['id']} ({kind}[{i}]); "
                                     "ids must be unique, re-number the duplicates")
        seen.add(item["id"])
    return seen


def validate_coco_gt(gt: dict, source: str = "<dict>") -> None:
    """Check a COCO instances dict before evaluation.

    Raises :class:`DetectionDataError` (naming ``source`` and the offending id) on: missing
    ``images`` / ``annotations`` / ``categories`` lists, non-int or duplicate image, category
    or annotation ids, annotations referencing an unknown image or category id, and bboxes
    that are not 4 finite numbers with ``w, h >= 0``. ``area`` and ``iscrowd`` may be absent
    (:func:`coco_bbox_eval` fills ``w * h`` and 0).
    """
    if not isinstance(gt, dict):
        raise DetectionDataError(f"{source}: ground truth must be a COCO dict, got {type(gt).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(gt.get(key), list):
            raise DetectionDataError(f"{source}: missing list {key!r} (a COCO instances JSON has "
                                     "'images', 'annotations' and 'categories')")
    image_ids = _ids(gt["images"], "images", source)
    cat_ids = _ids(gt["categories"], "categories", source)
    _ids(gt["annotations"], "annotations", source)
    for ann in gt["annotations"]:
        where = f"{source}: annotation id {ann['id']}"
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise DetectionDataError(f"{where} has no {key!r} key")
        if ann["image_id"] not in image_ids:
            raise DetectionDataError(f"{where} references unknown image_id {ann['image_id']!r}; "
                                     "add the image to 'images' or drop the annotation")
        if ann["category_id"] not in cat_ids:
            raise DetectionDataError(f"{where} references unknown category_id {ann['category_id']!r}; "
                                     "add it to 'categories' or drop the annotation")
        _check_box(ann["bbox"], where)


def _check_detection(i: int, det: Any, image_ids: set[int], cat_ids: set[int]) -> None:
    """Per-item check of ``detections[i]`` (slow path: only run to locate an error)."""
    if not isinstance(det, dict):
        raise DetectionDataError(f"detections[{i}] is a {type(det).__name__}, expected a dict")
    missing = [key for key in _DET_KEYS if key not in det]
    if missing:
        raise DetectionDataError(f"detections[{i}] is missing key {missing[0]!r} (COCO results need "
                                 "image_id, category_id, bbox [x, y, w, h] and score)")
    if not _is_int(det["image_id"]) or det["image_id"] not in image_ids:
        raise DetectionDataError(f"detections[{i}]: key 'image_id' = {det['image_id']!r} is not an image "
                                 "id of the ground truth; map predictions to the gt's int image ids")
    if not _is_int(det["category_id"]) or det["category_id"] not in cat_ids:
        raise DetectionDataError(f"detections[{i}]: key 'category_id' = {det['category_id']!r} is not a "
                                 "category id of the ground truth (contiguous training labels must be "
                                 "mapped back to dataset category ids)")
    _check_box(det["bbox"], f"detections[{i}]: key 'bbox'")
    score = det["score"]
    if not isinstance(score, Real) or isinstance(score, bool) or not math.isfinite(score):
        raise DetectionDataError(f"detections[{i}]: key 'score' = {score!r} must be a finite number")


_Columns = tuple[list, list, np.ndarray, np.ndarray]


def _columns(detections: Sequence[dict]) -> _Columns | None:
    """(image ids, category ids, (n, 4) float64 boxes, (n,) float64 scores), or None when any
    detection is malformed (missing key, ragged / non-numeric bbox or score)."""
    try:
        img = [d["image_id"] for d in detections]
        cat = [d["category_id"] for d in detections]
        boxes = np.asarray([d["bbox"] for d in detections]) if detections else np.zeros((0, 4))
        scores = np.asarray([d["score"] for d in detections]) if detections else np.zeros(0)
    except (KeyError, TypeError, ValueError):
        return None
    if boxes.dtype.kind not in "iuf" or boxes.shape != (len(img), 4):
        return None
    if scores.dtype.kind not in "iuf" or scores.shape != (len(img),):
        return None
    return img, cat, boxes.astype(np.float64), scores.astype(np.float64)


def _ids_within(values: list, allowed: set[int]) -> bool:
    """All ``values`` are ints (Python or numpy, not bool) and members of ``allowed``."""
    if not all(t is int or issubclass(t, np.integer) for t in set(map(type, values))):
        return False
    return set(values) <= allowed


def _validated_columns(gt: dict, detections: list[dict]) -> _Columns:
    """:func:`validate_detections`, returning the detection columns (vectorised; the per-item
    loop only runs to name the first bad detection)."""
    if not isinstance(detections, (list, tuple)):
        raise DetectionDataError(f"detections must be a list of dicts, got {type(detections).__name__}")
    image_ids = {img["id"] for img in gt.get("images", [])}
    cat_ids = {cat["id"] for cat in gt.get("categories", [])}
    cols = _columns(detections)
    if cols is not None:
        img, cat, boxes, scores = cols
        if (np.isfinite(boxes).all() and (boxes[:, 2:] >= 0).all() and np.isfinite(scores).all()
                and _ids_within(img, image_ids) and _ids_within(cat, cat_ids)):
            return cols
    for i, det in enumerate(detections):
        _check_detection(i, det, image_ids, cat_ids)
    raise DetectionDataError("detections are not valid COCO results (bbox or score of a non-numeric type)")


def validate_detections(gt: dict, detections: list[dict]) -> None:
    """Check COCO results-format detections against ``gt``.

    Each detection must be ``{"image_id": int, "category_id": int, "bbox": [x, y, w, h],
    "score": float}`` with an image and category id present in ``gt``, finite numbers and
    ``w, h >= 0``. Raises :class:`DetectionDataError` naming the index of the first bad
    detection and the key at fault.
    """
    _validated_columns(gt, detections)


def _gt_copy(gt: dict) -> dict:
    """Shallow per-item copy of ``gt``: both COCO APIs write into annotation dicts (``ignore``),
    and COCOeval needs ``area`` (area-range buckets) and ``iscrowd``; fill ``w * h`` / 0."""
    anns = []
    for ann in gt["annotations"]:
        ann = dict(ann)
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
        anns.append(ann)
    return {"info": gt.get("info", {}), "images": [dict(img) for img in gt["images"]],
            "categories": [dict(cat) for cat in gt["categories"]], "annotations": anns}


def _det_copy(detections: Sequence[dict], cols: _Columns | None) -> list[dict]:
    """Fresh plain-Python result dicts (``loadRes`` mutates them: adds id, area, iscrowd, ...)
    built from the :func:`_columns` of ``detections``."""
    if cols is None:  # only reachable with validate=False: let the backend see the raw values
        return [{key: d[key] for key in _DET_KEYS} for d in detections]
    img, cat, boxes, scores = cols
    return [{"image_id": i, "category_id": c, "bbox": b, "score": sc} for i, c, b, sc in
            zip(np.asarray(img, np.int64).tolist(), np.asarray(cat, np.int64).tolist(), boxes.tolist(),
                scores.tolist())]


def _run_faster(gt: dict, dets: list[dict], max_dets: int, verbose: bool) -> Any:
    """faster_coco_eval: COCO(dict) + loadRes (handles []) + COCOeval_faster, logs off unless verbose."""
    from faster_coco_eval import COCO, COCOeval_faster

    log: Callable[..., None] = print if verbose else (lambda *args, **kwargs: None)
    coco_gt = COCO(gt, print_function=log)
    coco_dt = coco_gt.loadRes(dets)
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=log)
    ev.params.maxDets = [1, 10, max_dets]
    ev.evaluate()
    ev.accumulate()
    return ev


def _run_pycocotools(gt: dict, dets: list[dict], max_dets: int) -> Any:
    """pycocotools: COCO() from a dict, loadRes (IndexError on [] -> build an empty result COCO)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    if dets:
        coco_dt = coco_gt.loadRes(dets)
    else:  # pycocotools.coco.COCO.loadRes reads anns[0]; mirror faster_coco_eval's empty result
        coco_dt = COCO()
        coco_dt.dataset = {"images": list(gt["images"]), "categories": list(gt["categories"]),
                           "annotations": []}
        coco_dt.createIndex()
    ev = COCOeval(coco_gt, coco_dt, "bbox")
    ev.params.maxDets = [1, 10, max_dets]
    ev.evaluate()
    ev.accumulate()
    return ev


def _summarize(ev: Any, ap: bool, iou_thr: float | None, area: str, mdet_idx: int) -> float:
    """One summary number, as ``COCOeval.summarize()._summarize`` (pycocotools cocoeval.py)
    computes it: mean of ``precision[T, R, K, A, M]`` / ``recall[T, K, A, M]`` entries > -1
    at the chosen IoU threshold(s), area range and maxDets; NaN instead of COCOeval's -1."""
    p = ev.params
    s = np.asarray(ev.eval["precision" if ap else "recall"])
    if iou_thr is not None:
        s = s[np.where(np.isclose(p.iouThrs, iou_thr))[0]]
    s = s[..., list(p.areaRngLbl).index(area), mdet_idx]
    valid = s[s > -1]
    return float(np.mean(valid)) if valid.size else float("nan")


def _per_class_ap(ev: Any) -> dict[int, float]:
    """detectron2 ``_derive_coco_results``: ``precision[:, :, k, 0, -1]``, mean over > -1, else NaN."""
    precision = np.asarray(ev.eval["precision"])
    out: dict[int, float] = {}
    for k, cat_id in enumerate(ev.params.catIds):
        pk = precision[:, :, k, 0, -1]
        pk = pk[pk > -1]
        out[int(cat_id)] = float(np.mean(pk)) if pk.size else float("nan")
    return out


def _print_summary(metrics: dict[str, Any], max_dets: int) -> None:
    """The 12 lines of ``COCOeval.summarize()``, same format (N/A rows print -1.000 as COCOeval)."""
    line = " {:<18} {} @[ IoU={:<9} | area={:>6s} | maxDets={:>3d} ] = {:0.3f}"
    dets = (1, 10, max_dets)
    for key, ap, iou_thr, area, m in _SUMMARY:
        value = metrics[f"AR{max_dets}" if key == "AR100" else key]
        title, kind = ("Average Precision", "(AP)") if ap else ("Average Recall", "(AR)")
        iou = "0.50:0.95" if iou_thr is None else f"{iou_thr:0.2f}"
        print(line.format(title, kind, iou, area, dets[m], -1.0 if math.isnan(value) else value))


def coco_bbox_eval(gt: dict, detections: list[dict], *, backend: str = "faster", max_dets: int = 100,
                   verbose: bool = False, validate: bool = True) -> dict[str, Any]:
    """COCO bbox AP/AR of ``detections`` (COCO results format) against the COCO dict ``gt``.

    Args:
        gt: COCO instances dict (images, annotations, categories); not modified.
        detections: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``;
            may be empty (AP = 0 for every class with ground truth); not modified.
        backend: ``"faster"`` (faster_coco_eval, C++) or ``"pycocotools"`` (reference).
        max_dets: detections kept per image (highest scores), > 10; COCOeval maxDets become
            ``[1, 10, max_dets]`` as in detectron2's ``max_dets_per_image``.
        verbose: let the backend log its progress and print COCOeval's 12-line summary.
        validate: run :func:`validate_coco_gt` / :func:`validate_detections` first.

    Returns:
        ``AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR<max_dets>, ARs, ARm, ARl`` as floats in
        [0, 1] (NaN where COCOeval reports -1: no ground truth in that bucket) and
        ``per_class``: ``{category_id: AP (NaN without non-crowd gt)}`` in sorted id order.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    if not _is_int(max_dets) or max_dets <= 10:
        raise ValueError(f"max_dets must be an int > 10 (COCOeval maxDets = [1, 10, max_dets]), got {max_dets!r}")
    if validate:
        validate_coco_gt(gt)
    cols = _validated_columns(gt, detections) if validate else _columns(detections)
    gt_c, dets = _gt_copy(gt), _det_copy(detections, cols)
    if backend == "faster":
        ev = _run_faster(gt_c, dets, max_dets, verbose)
    else:  # pycocotools print()s its progress: swallow it unless verbose
        quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
        with quiet:
            ev = _run_pycocotools(gt_c, dets, max_dets)
    metrics: dict[str, Any] = {}
    for key, ap, iou_thr, area, m in _SUMMARY:
        metrics[f"AR{max_dets}" if key == "AR100" else key] = _summarize(ev, ap, iou_thr, area, m)
    metrics["per_class"] = _per_class_ap(ev)
    if verbose:
        _print_summary(metrics, max_dets)
    return metrics


def _pct(num: int, den: int) -> float:
    return 100.0 * num / den if den else float("nan")


def prediction_stats(detections: list[dict], image_ids: list[int], high: float = 0.8) -> dict[str, Any]:
    """Counts for the report's "prediction statistics" line.

    ``images_with_detections`` counts the ids of ``image_ids`` that have >= 1 detection;
    ``high_confidence`` counts boxes with ``score > high``. Percentages are NaN on 0 / 0.
    ``text`` reproduces the seed wording, e.g. "Total predictions: 693 bounding boxes; Images
    with detections: 528/546 (96.7%); High confidence predictions (>0.8): 535/693 (77.2%)".
    """
    ids = set(image_ids)
    with_dets: set[int] = set()
    n_high = 0
    for i, det in enumerate(detections):
        if det.get("image_id") not in ids:
            raise DetectionDataError(f"detections[{i}]: key 'image_id' = {det.get('image_id')!r} "
                                     "is not in image_ids")
        with_dets.add(det["image_id"])
        n_high += det["score"] > high
    total, n_img = len(detections), len(ids)
    out = {"total": total, "images_with_detections": len(with_dets), "n_images": n_img,
           "images_with_detections_pct": _pct(len(with_dets), n_img), "high": float(high),
           "high_confidence": int(n_high), "high_confidence_pct": _pct(int(n_high), total)}

    def fmt(p: float) -> str:
        return "n/a" if math.isnan(p) else f"{p:.1f}%"

    out["text"] = (f"Total predictions: {total} bounding boxes; Images with detections: "
                   f"{len(with_dets)}/{n_img} ({fmt(out['images_with_detections_pct'])}); High confidence "
                   f"predictions (>{high:g}): {int(n_high)}/{total} ({fmt(out['high_confidence_pct'])})")
    return out


def detectron2_results_json(metrics: dict[str, Any], class_names: dict[int, str]) -> dict[str, dict[str, float]]:
    """detectron2's ``{"bbox": {...}}`` results layout, in percent.

    Keys as ``COCOEvaluator._derive_coco_results``: ``AP, AP50, AP75, APs, APm, APl`` then
    ``AP-<class name>`` per category in category-id order. NaN stays ``float("nan")`` (the
    caller decides how to serialise it, e.g. JSON null). ``class_names`` maps category id -> name.
    """
    bbox = {key: float(metrics[key]) * 100.0 for key in _D2_BBOX_KEYS}
    for cat_id, ap in metrics["per_class"].items():
        if cat_id not in class_names:
            raise DetectionDataError(f"class_names has no name for category_id {cat_id}; pass "
                                     "{cat['id']: cat['name'] for cat in gt['categories']}")
        bbox[f"AP-{class_names[cat_id]}"] = float(ap) * 100.0
    return {"bbox": bbox}
