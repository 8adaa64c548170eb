"""COCO keypoint mAP (own numpy OKS evaluation vs pycocotools COCOeval) and PCK."""
from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from conftest import require_shared
from kagglekit.metrics.keypoints import (
    COCO_SIGMAS,
    KeypointDataError,
    oks_map,
    pck,
    pck_per_keypoint,
    pycocotools_oks_map,
)

KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def assert_same(own: dict, ref: dict, tol: float = 1e-9) -> None:
    assert tuple(own) == KEYS and tuple(ref) == KEYS
    for key in KEYS:
        a, b = own[key], ref[key]
        if math.isnan(b):
            assert math.isnan(a), f"{key}: own {a} vs pycocotools NaN (-1)"
        else:
            assert abs(a - b) <= tol, f"{key}: own {a!r} vs pycocotools {b!r}"


# ------------------------------------------------------------------------------------------
# real COCO people
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def coco_gt() -> dict:
    root = require_shared("coco_keypoints_sample")
    gt = json.loads((root / "test_coco.json").read_text())
    assert len(gt["images"]) == 4 and len(gt["annotations"]) == 14
    assert sorted(a["num_keypoints"] for a in gt["annotations"])[:3] == [0, 0, 12]
    return gt


def perturbed(gt: dict, seed: int, level: float, *, with_bbox: bool = False, tied_scores: bool = False,
              drop: float = 0.15, n_false: int = 6) -> list[dict]:
    """Predictions: each person kept with prob 1 - drop, keypoints jittered by N(0, level * sqrt(area))
    (unlabelled slots first placed uniformly in the gt box), v = 1, random scores (rounded to 0.1
    when tied_scores: many ties inside and across images); plus n_false random people."""
    rng = np.random.default_rng(seed)
    images = {im["id"]: im for im in gt["images"]}
    dets = []

    def score() -> float:
        s = float(rng.random())
        return round(s, 1) if tied_scores else s

    for ann in gt["annotations"]:
        if rng.random() < drop:
            continue
        kp = np.array(ann["keypoints"], dtype=float).reshape(-1, 3)
        x, y, w, h = ann["bbox"]
        unl = kp[:, 2] == 0
        kp[unl, 0] = rng.uniform(x, x + w, unl.sum())
        kp[unl, 1] = rng.uniform(y, y + h, unl.sum())
        kp[:, :2] += rng.normal(0.0, level * math.sqrt(ann["area"]), (len(kp), 2))
        kp[:, 2] = 1
        det = {"image_id": ann["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(), "score": score()}
        if with_bbox:
            det["bbox"] = [x, y, w, h]
        dets.append(det)
    for _ in range(n_false):
        im = images[int(rng.choice(list(images)))]
        centre = rng.uniform([0, 0], [im["width"], im["height"]])
        spread = rng.uniform(10, 150)
        kp = np.c_[centre + rng.normal(0, spread, (17, 2)), np.ones(17)]
        det = {"image_id": im["id"], "category_id": 1, "keypoints": kp.ravel().tolist(), "score": score()}
        if with_bbox:
            det["bbox"] = [float(centre[0]), float(centre[1]), spread, 2 * spread]
        dets.append(det)
    return dets


CUSTOM_SIGMAS_17 = np.random.default_rng(17).uniform(0.02, 0.2, 17)


@pytest.mark.parametrize("sigmas", [None, CUSTOM_SIGMAS_17], ids=["coco_sigmas", "custom_sigmas"])
@pytest.mark.parametrize("level", [0.0, 0.02, 0.05, 0.1])
@pytest.mark.parametrize("variant", ["plain", "bbox", "tied_scores"])
def test_oks_map_equals_pycocotools_on_coco(coco_gt, sigmas, level, variant):
    for seed in range(3):
        dets = perturbed(coco_gt, seed, level, with_bbox=variant == "bbox", tied_scores=variant == "tied_scores")
        gt_before, dets_before = copy.deepcopy(coco_gt), copy.deepcopy(dets)
        own = oks_map(coco_gt, dets, sigmas)
        ref = pycocotools_oks_map(coco_gt, dets, COCO_SIGMAS if sigmas is None else sigmas)
        assert_same(own, ref)
        assert coco_gt == gt_before and dets == dets_before  # neither implementation mutates the inputs
        assert 0.0 <= own["AP"] <= 1.0


def test_perturbation_levels_are_informative(coco_gt):
    """The levels above really span good to bad predictions (otherwise the equality test is weak)."""
    aps = [oks_map(coco_gt, perturbed(coco_gt, 0, level))["AP"] for level in (0.0, 0.02, 0.05, 0.1)]
    assert aps == sorted(aps, reverse=True)
    assert aps[0] > 0.75 and aps[-1] < 0.3
    custom = oks_map(coco_gt, perturbed(coco_gt, 0, 0.05), CUSTOM_SIGMAS_17)["AP"]
    assert custom != pytest.approx(oks_map(coco_gt, perturbed(coco_gt, 0, 0.05))["AP"])


def test_perfect_predictions_give_ap_1(coco_gt):
    dets = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.5 + 0.01 * i}
            for i, a in enumerate(coco_gt["annotations"]) if a["num_keypoints"] > 0]
    own = oks_map(coco_gt, dets)
    assert all(own[k] == pytest.approx(1.0, abs=1e-12) for k in KEYS if not math.isnan(own[k]))
    assert own["AP"] == pytest.approx(1.0, abs=1e-12)
    assert_same(own, pycocotools_oks_map(coco_gt, dets))


def test_detections_on_people_without_keypoints_are_ignored_not_false_positives(coco_gt):
    """A gt with num_keypoints == 0 is ignored, yet its box (enlarged 2x) absorbs a detection
    placed inside it: that detection is neither TP nor FP, even with the highest score."""
    dets = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.5}
            for a in coco_gt["annotations"] if a["num_keypoints"] > 0]
    for a in coco_gt["annotations"]:
        if a["num_keypoints"] == 0:
            x, y, w, h = a["bbox"]
            kp = [v for _ in range(17) for v in (x + w / 2, y + h / 2, 1)]
            dets.append({"image_id": a["image_id"], "category_id": 1, "keypoints": kp, "score": 0.99})
    own = oks_map(coco_gt, dets)
    assert own["AP"] == pytest.approx(1.0, abs=1e-12)
    assert_same(own, pycocotools_oks_map(coco_gt, dets))


def test_empty_detections(coco_gt):
    own = oks_map(coco_gt, [])
    assert own["AP"] == 0.0 and own["AR"] == 0.0
    assert_same(own, pycocotools_oks_map(coco_gt, []))


@pytest.mark.parametrize("max_dets", [1, 2, 5])
def test_max_dets_other_than_20(coco_gt, max_dets):
    dets = perturbed(coco_gt, 3, 0.03, n_false=10)
    assert_same(oks_map(coco_gt, dets, max_dets=max_dets), pycocotools_oks_map(coco_gt, dets, max_dets=max_dets))


# ------------------------------------------------------------------------------------------
# synthetic: K = 5, two categories, crowds, small / medium / large areas, area boundaries
# ------------------------------------------------------------------------------------------
K5_SIGMAS = np.random.default_rng(5).uniform(0.02, 0.2, 5)


def synthetic(seed: int, level: float, *, with_bbox: bool = False, tied: bool = False, k: int = 5):
    rng = np.random.default_rng(seed)
    cats = [{"id": 1, "name": "a", "keypoints": [f"k{i}" for i in range(k)]},
            {"id": 3, "name": "b", "keypoints": [f"k{i}" for i in range(k)]}]
    image_ids = [10, 2, 7, 5, 11, 8, 4]  # 11: nothing at all; 8: only detections; 4: > max_dets detections
    images = [{"id": i, "width": 400, "height": 300, "file_name": f"{i}.jpg"} for i in image_ids]
    # 500 small, 1024 = 32^2 (small and medium), 2000 medium, 9216 = 96^2 (medium and large), 20000 large
    area_choices = [500.0, 1024.0, 2000.0, 9216.0, 20000.0]
    anns, next_id = [], 1
    for img in [10, 2, 7, 5, 4]:
        for _ in range(int(rng.integers(1, 6))):
            area = float(rng.choice(area_choices))
            w = math.sqrt(area) * rng.uniform(0.6, 1.4)
            h = area / w
            x, y = rng.uniform(0, 400 - w), rng.uniform(0, 300 - h)
            kp = np.c_[rng.uniform(x, x + w, k), rng.uniform(y, y + h, k), rng.choice([0, 1, 2], k, p=[.2, .2, .6])]
            if rng.random() < 0.15:
                kp[:, 2] = 0  # no labelled keypoints
            kp[kp[:, 2] == 0, :2] = 0
            anns.append({"id": next_id, "image_id": img, "category_id": int(rng.choice([1, 3])),
                         "keypoints": kp.ravel().tolist(), "num_keypoints": int((kp[:, 2] > 0).sum()),
                         "area": area, "bbox": [x, y, w, h], "iscrowd": int(rng.random() < 0.15)})
            next_id += 1
    # an exact duplicate person: equal OKS to two gts (pycocotools gives the match to the later one)
    twin = dict(copy.deepcopy(anns[0]), id=next_id)
    anns.append(twin)
    # a crowd region over a person (same keypoints, larger area -> higher OKS than the person itself)
    for a in anns[1:4]:
        anns.append(dict(copy.deepcopy(a), id=next_id + len(anns), iscrowd=1, area=3 * a["area"]))
    gt = {"images": images, "categories": cats, "annotations": anns}

    dets = []

    def score() -> float:
        return round(float(rng.random()), 1) if tied else float(rng.random())

    def det(img, cat, kp, bbox):
        d = {"image_id": img, "category_id": cat, "keypoints": kp.ravel().tolist(), "score": score()}
        if with_bbox:
            d["bbox"] = [float(b) for b in bbox]
        return d

    for a in anns:
        copies = int(rng.choice([0, 1, 1, 1, 2]))  # dropped, matched, duplicated
        for _ in range(copies):
            kp = np.array(a["keypoints"]).reshape(k, 3)
            x, y, w, h = a["bbox"]
            unl = kp[:, 2] == 0
            kp[unl, 0] = rng.uniform(x, x + w, unl.sum())
            kp[unl, 1] = rng.uniform(y, y + h, unl.sum())
            kp[:, :2] += rng.normal(0, level * math.sqrt(a["area"]), (k, 2))
            kp[:, 2] = 1
            dets.append(det(a["image_id"], a["category_id"], kp, a["bbox"]))
    for img, n in [(8, 3), (10, 2), (7, 2), (4, 25)]:  # false positives; image 4 exceeds maxDets=20
        for _ in range(n):
            c = rng.uniform([20, 20], [380, 280])
            s = rng.uniform(5, 80)
            kp = np.c_[c + rng.normal(0, s, (k, 2)), np.ones(k)]
            dets.append(det(img, int(rng.choice([1, 3])), kp, [c[0] - s, c[1] - s, 2 * s, 2 * s]))
    rng.shuffle(dets)
    return gt, dets


@pytest.mark.parametrize("level", [0.0, 0.03, 0.08, 0.2])
@pytest.mark.parametrize("variant", ["plain", "bbox", "tied"])
def test_oks_map_equals_pycocotools_custom_k(level, variant):
    for seed in range(4):
        gt, dets = synthetic(seed, level, with_bbox=variant == "bbox", tied=variant == "tied")
        assert any(a["iscrowd"] for a in gt["annotations"]) or seed != 0
        assert_same(oks_map(gt, dets, K5_SIGMAS), pycocotools_oks_map(gt, dets, K5_SIGMAS))


def test_synthetic_covers_the_edge_cases():
    """The synthetic generator really produces what the equality test claims to cover."""
    gt, dets = synthetic(0, 0.03)
    anns = gt["annotations"]
    assert {a["area"] for a in anns} >= {1024.0, 9216.0}
    assert any(a["iscrowd"] for a in anns)
    assert any(a["num_keypoints"] == 0 for a in anns)
    assert {a["category_id"] for a in anns} == {1, 3}
    assert sum(d["image_id"] == 4 for d in dets) > 20
    assert any(d["image_id"] == 8 for d in dets) and not any(a["image_id"] == 8 for a in anns)
    own = oks_map(gt, dets, K5_SIGMAS)
    assert 0.0 < own["AP"] < 1.0


def test_equal_oks_tie_goes_to_the_later_gt():
    """pycocotools' matching loop replaces the current match on an *equal* OKS, so a detection tied
    between two gts takes the later one. Observable here: gt 1 labels keypoints 0-2, gt 2 labels
    0-3 (same positions); det A (score .9) is exact (OKS 1 with both), det B (.8) is exact on 0-2
    but far on 3 (OKS 1 with gt 1, 0.75 with gt 2). A takes gt 2 (the later), B then gets gt 1 at
    OKS 1: AP 1. Had A taken gt 1, B would only match gt 2 at thresholds <= .75."""
    kp1 = [10, 10, 2, 20, 20, 2, 30, 10, 2, 0, 0, 0]
    kp2 = [10, 10, 2, 20, 20, 2, 30, 10, 2, 25, 30, 2]
    common = {"image_id": 1, "category_id": 1, "area": 2000.0, "bbox": [0, 0, 40, 40], "iscrowd": 0}
    gt = {"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [
        dict(common, id=1, keypoints=kp1, num_keypoints=3), dict(common, id=2, keypoints=kp2, num_keypoints=4)]}
    dets = [{"image_id": 1, "category_id": 1, "keypoints": [10, 10, 1, 20, 20, 1, 30, 10, 1, 25, 30, 1], "score": 0.9},
            {"image_id": 1, "category_id": 1, "keypoints": [10, 10, 1, 20, 20, 1, 30, 10, 1, 300, 300, 1], "score": 0.8}]
    sig = [0.05] * 4
    own = oks_map(gt, dets, sig)
    assert_same(own, pycocotools_oks_map(gt, dets, sig))
    assert own["AP"] == pytest.approx(1.0, abs=1e-12)
    # the same detections with the gt order swapped: now the tie goes to the 3-keypoint gt
    gt["annotations"].reverse()
    swapped = oks_map(gt, dets, sig)
    assert_same(swapped, pycocotools_oks_map(gt, dets, sig))
    assert swapped["AP"] < 0.9 and swapped["AP50"] == pytest.approx(1.0, abs=1e-12)


def test_ignored_gt_is_only_a_fallback():
    """A detection overlapping a person and a crowd region (higher OKS with the crowd: larger area)
    is matched to the person: ignored gts (crowd, no keypoints, outside the area range) are
    sorted last and tried only when no non-ignored gt reaches the threshold."""
    kp = [10, 10, 2, 20, 20, 2, 30, 10, 2]
    common = {"image_id": 1, "category_id": 1, "keypoints": kp, "num_keypoints": 3, "bbox": [0, 0, 40, 40]}
    gt = {"images": [{"id": 1}], "categories": [{"id": 1}], "annotations": [
        dict(common, id=1, iscrowd=1, area=6000.0), dict(common, id=2, iscrowd=0, area=2000.0)]}
    dets = [{"image_id": 1, "category_id": 1, "keypoints": [12, 10, 1, 22, 20, 1, 32, 10, 1], "score": 0.9}]
    sig = [0.1] * 3
    own = oks_map(gt, dets, sig)
    assert_same(own, pycocotools_oks_map(gt, dets, sig))
    assert own["AP"] == pytest.approx(1.0, abs=1e-12)


# ------------------------------------------------------------------------------------------
# validation
# ------------------------------------------------------------------------------------------
def _tiny():
    gt = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 1, "name": "p"}], "annotations": [
        {"id": 7, "image_id": 1, "category_id": 1, "keypoints": [1, 1, 2, 5, 5, 2], "num_keypoints": 2,
         "area": 100.0, "bbox": [0, 0, 10, 10], "iscrowd": 0}]}
    dets = [{"image_id": 1, "category_id": 1, "keypoints": [1, 1, 1, 5, 5, 1], "score": 0.5}]
    return gt, dets


def test_keypoint_count_mismatch_detection():
    gt, dets = _tiny()
    dets.append({"image_id": 1, "category_id": 1, "keypoints": [1, 1, 1, 5, 5, 1, 7, 7, 1], "score": 0.3})
    with pytest.raises(KeypointDataError, match=r"detection 1: 3 keypoints but 2 sigmas"):
        oks_map(gt, dets, [0.1, 0.1])


def test_keypoint_count_mismatch_gt_and_default_coco_sigmas():
    gt, dets = _tiny()
    with pytest.raises(KeypointDataError, match=r"gt annotation id 7: 2 keypoints but 17 sigmas"):
        oks_map(gt, dets)  # default sigmas are the 17 COCO ones


def test_missing_visibility():
    gt, dets = _tiny()
    dets[0]["keypoints"] = [1, 1, 5, 5]  # x, y only
    with pytest.raises(KeypointDataError, match=r"detection 0: 'keypoints' has 4 numbers, not a multiple of 3"):
        oks_map(gt, dets, [0.1, 0.1])


def test_unknown_image_id():
    gt, dets = _tiny()
    dets[0]["image_id"] = 99
    with pytest.raises(KeypointDataError, match=r"detection 0: image_id 99 is not in gt\['images'\]"):
        oks_map(gt, dets, [0.1, 0.1])


@pytest.mark.parametrize("mutate, pattern", [
    (lambda gt, d: d[0].update(category_id=5), r"detection 0: category_id 5"),
    (lambda gt, d: d[0].pop("score"), r"detection 0: missing key 'score'"),
    (lambda gt, d: d[0].update(score=float("nan")), r"detection 0: 'score' must be a finite number"),
    (lambda gt, d: gt["annotations"][0].update(id=0), r"annotation id 0 is not supported"),
    (lambda gt, d: gt["annotations"].append(dict(gt["annotations"][0])), r"id 7: duplicate annotation id"),
    (lambda gt, d: gt["annotations"][0].pop("area"), r"id 7: missing key 'area'"),
    (lambda gt, d: d.append(dict(d[0], bbox=[0, 0, 5, 5])) or d.reverse(), r"detection 1: 'bbox' must be 4 numbers"),
])
def test_other_input_errors(mutate, pattern):
    gt, dets = _tiny()
    mutate(gt, dets)
    with pytest.raises(KeypointDataError, match=pattern):
        oks_map(gt, dets, [0.1, 0.1])


def test_error_is_a_value_error():
    assert issubclass(KeypointDataError, ValueError)
    assert COCO_SIGMAS.shape == (17,) and COCO_SIGMAS[0] == pytest.approx(0.026)
    with pytest.raises(ValueError):
        COCO_SIGMAS[0] = 1.0  # read-only


# ------------------------------------------------------------------------------------------
# PCK
# ------------------------------------------------------------------------------------------
def test_pck_hand_case():
    gt = np.zeros((2, 3, 2))
    pred = np.array([
        [[3, 4], [0, 4.9], [100, 0]],   # distances 5 (= threshold: miss, strict <), 4.9 (hit), 100 (invisible)
        [[0, 0.5], [0.3, 0.4], [2, 0]],  # threshold 0.05 * 20 = 1: distances 0.5 hit, 0.5 hit, 2 miss
    ], dtype=float)
    visible = np.array([[True, True, False], [True, True, True]])
    bbox_size = np.array([100.0, 20.0])  # max(w, h) of the gt boxes; alpha 0.05 -> thresholds 5 and 1
    assert pck(pred, gt, visible, bbox_size) == pytest.approx(3 / 5)
    np.testing.assert_allclose(pck_per_keypoint(pred, gt, visible, bbox_size), [1 / 2, 2 / 2, 0 / 1])
    assert pck(pred, gt, visible, bbox_size, alpha=0.08) == pytest.approx(4 / 5)  # thresholds 8 and 1.6
    assert pck(pred, gt, visible, bbox_size, alpha=0.2) == 1.0  # thresholds 20 and 4
    none_visible = np.zeros_like(visible)
    assert math.isnan(pck(pred, gt, none_visible, bbox_size))
    assert np.isnan(pck_per_keypoint(pred, gt, none_visible, bbox_size)).all()


def test_pck_shape_errors():
    with pytest.raises(KeypointDataError, match="visible must be"):
        pck(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), np.ones((2, 4), bool), np.ones(2))
    with pytest.raises(KeypointDataError, match="pred and gt"):
        pck(np.zeros((2, 3, 2)), np.zeros((2, 3, 3)), np.ones((2, 3), bool), np.ones(2))
    with pytest.raises(KeypointDataError, match="bbox_size"):
        pck(np.zeros((2, 3, 2)), np.zeros((2, 3, 2)), np.ones((2, 3), bool), np.ones(3))
