"""COCO bbox evaluation: faster_coco_eval vs pycocotools on real coco128 GT, hand-computed AP,
edge cases (perfect / empty / false-positive-only / empty size bucket), validation, reporting."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
from conftest import require_shared

from kagglekit.metrics.detection import (DetectionDataError, coco_bbox_eval, detectron2_results_json,
                                         prediction_stats, validate_coco_gt, validate_detections)

SUMMARY = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# (jitter as a fraction of box size, drop prob, false positives per image, duplicate prob)
LEVELS = {"mild": (0.03, 0.05, 0.5, 0.05), "medium": (0.12, 0.2, 2.0, 0.1), "heavy": (0.3, 0.4, 6.0, 0.2)}


@pytest.fixture(scope="module")
def coco128() -> dict:
    root = require_shared("coco128")
    with open(root / "annotations" / "instances_train2017.json") as f:
        return json.load(f)


def perturbed(gt: dict, level: str, seed: int) -> list[dict]:
    """Detections from real GT: jittered boxes, random scores, drops, random-class false
    positives, and exact duplicates (same box and score: ties in the score sort)."""
    jitter, drop, fp_per_img, dup = LEVELS[level]
    rng = np.random.default_rng(seed)
    sizes = {img["id"]: (img["width"], img["height"]) for img in gt["images"]}
    cat_ids = [c["id"] for c in gt["categories"]]
    dets = []
    for ann in gt["annotations"]:
        if rng.random() < drop:
            continue
        x, y, w, h = ann["bbox"]
        dx, dy, dw, dh = rng.normal(0.0, jitter, 4)
        box = [x + dx * w, y + dy * h, max(w * (1 + dw), 0.5), max(h * (1 + dh), 0.5)]
        dets.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "bbox": box,
                     "score": float(rng.random())})
        if rng.random() < dup:
            dets.append(copy.deepcopy(dets[-1]))
    for img_id, (width, height) in sizes.items():
        for _ in range(rng.poisson(fp_per_img)):
            w, h = rng.uniform(4, width / 2), rng.uniform(4, height / 2)
            dets.append({"image_id": img_id, "category_id": int(rng.choice(cat_ids)),
                         "bbox": [float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h)), w, h],
                         "score": float(rng.random())})
    return dets


def assert_same(a: dict, b: dict, tol: float = 1e-9) -> None:
    """Same summary metrics and per-class APs, NaN in the same places."""
    for key in SUMMARY:
        assert math.isnan(a[key]) == math.isnan(b[key]), key
        if not math.isnan(a[key]):
            assert abs(a[key] - b[key]) <= tol, (key, a[key], b[key])
    assert list(a["per_class"]) == list(b["per_class"])
    for cat, ap in a["per_class"].items():
        bp = b["per_class"][cat]
        assert math.isnan(ap) == math.isnan(bp), cat
        if not math.isnan(ap):
            assert abs(ap - bp) <= tol, (cat, ap, bp)


@pytest.mark.parametrize("level", list(LEVELS))
def test_faster_equals_pycocotools_on_coco128(coco128, level):
    dets = perturbed(coco128, level, seed=list(LEVELS).index(level))
    before = copy.deepcopy((coco128, dets))
    fast = coco_bbox_eval(coco128, dets, backend="faster")
    ref = coco_bbox_eval(coco128, dets, backend="pycocotools")
    assert_same(fast, ref)
    assert (coco128, dets) == before, "inputs were modified"
    assert 0.0 < fast["AP"] < 1.0 and set(fast) == set(SUMMARY) | {"per_class"}
    assert len(fast["per_class"]) == 80  # every gt category, present or not
    # 9 categories have no annotation in coco128 -> NaN, like detectron2's per-category table.
    assert sum(math.isnan(v) for v in fast["per_class"].values()) == 9


def test_summary_matches_cocoeval_summarize(coco128):
    """Our NaN-mapped summary == pycocotools' own COCOeval.summarize() stats (max_dets=100)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dets = perturbed(coco128, "medium", seed=7)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(coco128)
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ours = coco_bbox_eval(coco128, dets, backend="faster")
    for key, ref in zip(SUMMARY, ev.stats):
        assert (math.isnan(ours[key]) and ref == -1) or abs(ours[key] - ref) <= 1e-9, key


def test_max_dets_limits_detections_per_image(coco128):
    """With 150 detections on one image, max_dets=100 vs 300 changes AR; backends agree on both."""
    dets = perturbed(coco128, "heavy", seed=3)
    img = coco128["images"][0]["id"]
    rng = np.random.default_rng(0)
    dets += [{"image_id": img, "category_id": 1, "bbox": [float(v) for v in rng.uniform(5, 200, 4)],
              "score": float(rng.uniform(0.9, 1.0))} for _ in range(150)]
    r100 = coco_bbox_eval(coco128, dets)
    r300 = coco_bbox_eval(coco128, dets, max_dets=300)
    ref = coco_bbox_eval(coco128, dets, backend="pycocotools", max_dets=300)
    assert_same({**r300, "AR100": r300["AR300"]}, {**ref, "AR100": ref["AR300"]})
    assert "AR100" not in r300 and r300["AR300"] >= r100["AR100"]
    assert r300["per_class"][1] != r100["per_class"][1]
    with pytest.raises(ValueError, match="max_dets"):
        coco_bbox_eval(coco128, dets, max_dets=10)


def perfect(gt: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 1.0}
            for a in gt["annotations"] if not a["iscrowd"]]


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_perfect_false_positive_only_and_absent_classes(coco128, backend):
    non_crowd = {a["category_id"] for a in coco128["annotations"] if not a["iscrowd"]}
    res = coco_bbox_eval(coco128, perfect(coco128), backend=backend)
    full = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100", "ARs", "ARm", "ARl")
    assert all(res[k] == 1.0 for k in full), {k: res[k] for k in SUMMARY}
    assert res["AR1"] < res["AR10"] < 1.0  # 1 (10) detections per image cannot recall every object
    # pycocotools' accumulate divides by tp + fp + np.spacing(1): a class with a single gt box
    # (bear, skis, banana, scissors here) gets 1 / (1 + eps) = 1 - 2.2e-16; faster_coco_eval gives 1.
    assert {c for c, ap in res["per_class"].items() if abs(ap - 1.0) < 1e-12} == non_crowd
    assert all(math.isnan(ap) for c, ap in res["per_class"].items() if c not in non_crowd)

    # Class 3 (car, 47 boxes): every detection moved far outside the image -> AP 0, others stay 1.
    # Class 11 (fire hydrant, no gt) gets detections: still NaN (no gt -> COCOeval -1).
    dets = [{**d, "bbox": [d["bbox"][0] - 10_000, d["bbox"][1], d["bbox"][2], d["bbox"][3]]}
            if d["category_id"] == 3 else d for d in perfect(coco128)]
    dets += [{"image_id": 9, "category_id": 11, "bbox": [10.0, 10.0, 50.0, 50.0], "score": 0.9}]
    res = coco_bbox_eval(coco128, dets, backend=backend)
    assert res["per_class"][3] == 0.0 and math.isnan(res["per_class"][11])
    assert all(abs(ap - 1.0) < 1e-12 for c, ap in res["per_class"].items() if c in non_crowd - {3})
    assert res["AP"] == pytest.approx((len(non_crowd) - 1) / len(non_crowd), abs=1e-12)


def tiny_gt() -> dict:
    """1 image, 2 gt boxes of class 1 (area 100: 'small'); class 2 has no gt at all."""
    return {"images": [{"id": 1, "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100.0,
                             "iscrowd": 0},
                            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 0, 10, 10], "area": 100.0,
                             "iscrowd": 0}]}


TINY_DETS = [
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},    # IoU 1.0 with gt 1
    {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.8},  # IoU 0 -> FP
    {"image_id": 1, "category_id": 1, "bbox": [20, 0, 10, 7.7], "score": 0.7},  # IoU 77/100 with gt 2
]


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_hand_computed_101_point_ap(backend):
    # Ranked: TP, FP, then TP iff IoU threshold <= 0.77 (t = .50 .55 .60 .65 .70 .75: 6 of 10).
    # TP,FP,TP: recall .5 .5 1, precision 1 .5 2/3 -> interpolated (max to the right) 1, 2/3, 2/3;
    #   the 101 recall points r = 0, .01, ..., .50 (51 points) read 1, r = .51 ... 1 (50) read 2/3.
    # TP,FP,FP: recall stops at .5 -> 51 points read 1, the 50 above .5 read 0.
    ap_hit = (51 * 1.0 + 50 * (2 / 3)) / 101
    ap_miss = 51 / 101
    res = coco_bbox_eval(tiny_gt(), TINY_DETS, backend=backend)
    assert res["AP50"] == pytest.approx(ap_hit, abs=1e-12)
    assert res["AP75"] == pytest.approx(ap_hit, abs=1e-12)
    assert res["AP"] == pytest.approx((6 * ap_hit + 4 * ap_miss) / 10, abs=1e-12)
    assert res["APs"] == pytest.approx(res["AP"], abs=1e-12)
    assert math.isnan(res["APm"]) and math.isnan(res["APl"])  # no medium / large gt -> N/A
    assert math.isnan(res["ARm"]) and math.isnan(res["ARl"])
    assert res["AR1"] == pytest.approx(0.5)  # top-1 detection finds one of two boxes
    assert res["AR10"] == pytest.approx((6 * 1.0 + 4 * 0.5) / 10)
    assert res["AR100"] == pytest.approx(res["AR10"])
    assert res["per_class"][1] == pytest.approx(res["AP"], abs=1e-12) and math.isnan(res["per_class"][2])

    d2 = detectron2_results_json(res, {1: "cat", 2: "dog"})["bbox"]
    assert list(d2) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AP-cat", "AP-dog"]
    assert d2["AP50"] == pytest.approx(100 * ap_hit) and math.isnan(d2["APl"]) and math.isnan(d2["AP-dog"])


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_verbose_flag_controls_stdout(backend, capsys):
    coco_bbox_eval(tiny_gt(), TINY_DETS, backend=backend)
    assert capsys.readouterr().out == ""
    coco_bbox_eval(tiny_gt(), TINY_DETS, backend=backend, verbose=True)
    out = capsys.readouterr().out
    ap = (6 * (51 + 50 * 2 / 3) + 4 * 51) / 1010  # see test_hand_computed_101_point_ap
    assert f"Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = {ap:0.3f}" in out
    assert "area= large | maxDets=100 ] = -1.000" in out


def test_empty_detections_both_backends(coco128):
    fast = coco_bbox_eval(coco128, [], backend="faster")
    ref = coco_bbox_eval(coco128, [], backend="pycocotools")
    assert_same(fast, ref)
    assert all(fast[k] == 0.0 for k in SUMMARY)  # every size bucket has gt in coco128
    non_crowd = {a["category_id"] for a in coco128["annotations"] if not a["iscrowd"]}
    assert {c for c, ap in fast["per_class"].items() if ap == 0.0} == non_crowd
    tiny = coco_bbox_eval(tiny_gt(), [], backend="pycocotools")
    assert tiny["AP"] == 0.0 and math.isnan(tiny["APl"]) and math.isnan(tiny["per_class"][2])


def test_prediction_stats_hand_case():
    dets = [{"image_id": 1, "score": 0.95}, {"image_id": 1, "score": 0.8}, {"image_id": 2, "score": 0.81},
            {"image_id": 4, "score": 0.1}]
    st = prediction_stats(dets, [1, 2, 3, 4, 5, 6, 7, 8])
    assert (st["total"], st["images_with_detections"], st["n_images"], st["high_confidence"]) == (4, 3, 8, 2)
    assert st["images_with_detections_pct"] == pytest.approx(37.5) and st["high_confidence_pct"] == 50.0
    assert st["text"] == ("Total predictions: 4 bounding boxes; Images with detections: 3/8 (37.5%); "
                          "High confidence predictions (>0.8): 2/4 (50.0%)")
    assert prediction_stats(dets, [1, 2, 4], high=0.9)["high_confidence"] == 1
    empty = prediction_stats([], [1, 2])
    assert empty["total"] == 0 and math.isnan(empty["high_confidence_pct"]) and "0/0 (n/a)" in empty["text"]
    with pytest.raises(DetectionDataError, match="'image_id' = 9"):
        prediction_stats([{"image_id": 9, "score": 1.0}], [1, 2])


def test_prediction_stats_seed_wording():
    """The seed's numbers: 693 boxes, 528/546 images, 535 above 0.8."""
    dets = [{"image_id": i % 528, "score": 0.9 if i < 535 else 0.5} for i in range(693)]
    assert prediction_stats(dets, list(range(546)))["text"] == (
        "Total predictions: 693 bounding boxes; Images with detections: 528/546 (96.7%); "
        "High confidence predictions (>0.8): 535/693 (77.2%)")


def test_validate_detections_errors():
    gt = tiny_gt()
    good = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}
    validate_detections(gt, [good])
    cases = [({"image_id": 42}, r"detections\[1\]: key 'image_id' = 42"),
             ({"category_id": 7}, r"detections\[1\]: key 'category_id' = 7"),
             ({"bbox": [0, 0, -3, 1]}, r"detections\[1\]: key 'bbox'.*negative width"),
             ({"bbox": [0, 0, float("nan"), 1]}, r"detections\[1\]: key 'bbox'.*non-finite"),
             ({"bbox": [0, 0, 1]}, r"detections\[1\]: key 'bbox'.*4 numbers"),
             ({"score": float("inf")}, r"detections\[1\]: key 'score'")]
    for change, msg in cases:
        with pytest.raises(DetectionDataError, match=msg):
            validate_detections(gt, [good, {**good, **change}])
    missing = {k: v for k, v in good.items() if k != "score"}
    with pytest.raises(DetectionDataError, match=r"detections\[2\] is missing key 'score'"):
        validate_detections(gt, [good, good, missing])
    with pytest.raises(DetectionDataError, match="image_id"):  # coco_bbox_eval validates by default
        coco_bbox_eval(gt, [{**good, "image_id": 42}], backend="pycocotools")


def test_validate_coco_gt_errors():
    validate_coco_gt(tiny_gt())
    gt = tiny_gt()
    gt["images"].append({"id": 1, "width": 5, "height": 5})
    with pytest.raises(DetectionDataError, match="val.json: duplicate image id 1"):
        validate_coco_gt(gt, source="val.json")
    gt = tiny_gt()
    gt["annotations"][1]["id"] = 1
    with pytest.raises(DetectionDataError, match="duplicate annotation id 1"):
        validate_coco_gt(gt)
    gt = tiny_gt()
    gt["annotations"][0]["image_id"] = 77
    with pytest.raises(DetectionDataError, match="annotation id 1 references unknown image_id 77"):
        validate_coco_gt(gt)
    gt = tiny_gt()
    gt["annotations"][1]["category_id"] = 5
    with pytest.raises(DetectionDataError, match="annotation id 2 references unknown category_id 5"):
        validate_coco_gt(gt)
    gt = tiny_gt()
    gt["annotations"][1]["bbox"] = [30, 0, -10, 10]
    with pytest.raises(DetectionDataError, match=r"<dict>: annotation id 2: bbox .*negative width"):
        validate_coco_gt(gt)
    with pytest.raises(DetectionDataError, match="missing list 'categories'"):
        validate_coco_gt({"images": [], "annotations": []})


def test_missing_area_and_iscrowd_are_filled():
    gt = tiny_gt()
    for ann in gt["annotations"]:
        del ann["area"], ann["iscrowd"]
    for backend in ("faster", "pycocotools"):
        assert_same(coco_bbox_eval(gt, TINY_DETS, backend=backend), coco_bbox_eval(tiny_gt(), TINY_DETS))
    assert "area" not in gt["annotations"][0]


def test_detectron2_results_json_needs_every_name():
    res = coco_bbox_eval(tiny_gt(), TINY_DETS)
    with pytest.raises(DetectionDataError, match="category_id 2"):
        detectron2_results_json(res, {1: "cat"})
