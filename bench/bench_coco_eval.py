"""Benchmark: COCO bbox evaluation, faster-coco-eval vs pycocotools (same run, same inputs).

Run: ``.venv/bin/python bench/bench_coco_eval.py [--images 1024] [--dets-per-image 80] [--repeats 2]``.

Data: ``--images`` images resampled (with replacement) from the real coco128 ground truth;
each copy gets a new image id and its annotations new ids. Detections per image, about
``--dets-per-image`` in all, like a Faster R-CNN output before the score threshold:
every gt box jittered (kept with p = 0.85, random score) plus two lower-scored near duplicates,
then random false positives (half of them in a class present in the image) up to the quota.

Both backends are timed through :func:`kagglekit.metrics.detection.coco_bbox_eval` (input
validation + copies + COCOeval evaluate/accumulate + summary), best of ``--repeats``. Prints the
speed ratio (goal >= 3x) and the max abs difference over the 12 summary metrics and every
per-class AP; exits 1 if any differs by more than 1e-9 (or NaN in different places).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from kagglekit.metrics.detection import coco_bbox_eval, validate_coco_gt, validate_detections
from kagglekit.paths import shared_data

from bench_miou import best_of  # noqa: E402  (bench/ is on sys.path when run as a script)

TOL = 1e-9


def load_gt(root: Path) -> dict:
    path = root / "annotations" / "instances_train2017.json"
    if not path.exists():
        sys.exit(f"{path} not found; set KAGGLEKIT_SHARED to the shared folder")
    with open(path) as f:
        return json.load(f)


def resample_gt(gt: dict, n_images: int, rng: np.random.Generator) -> dict:
    """``n_images`` re-id'd copies of random coco128 images with their annotations."""
    by_img: dict[int, list[dict]] = {}
    for ann in gt["annotations"]:
        by_img.setdefault(ann["image_id"], []).append(ann)
    images, anns = [], []
    for new_id, k in enumerate(rng.integers(0, len(gt["images"]), n_images), start=1):
        src = gt["images"][k]
        images.append({**src, "id": new_id, "file_name": f"{new_id:06d}_{src['file_name']}"})
        for ann in by_img.get(src["id"], []):
            anns.append({**ann, "id": len(anns) + 1, "image_id": new_id})
    return {"info": gt.get("info", {}), "categories": gt["categories"], "images": images, "annotations": anns}


def _jitter(box: list[float], frac: float, rng: np.random.Generator) -> list[float]:
    x, y, w, h = box
    dx, dy, dw, dh = rng.normal(0.0, frac, 4)
    return [x + dx * w, y + dy * h, max(w * (1 + dw), 1.0), max(h * (1 + dh), 1.0)]


def make_detections(gt: dict, per_image: int, rng: np.random.Generator) -> list[dict]:
    """Perturbed gt (+ 2 near duplicates each) and random false positives, ~``per_image`` per image."""
    cat_ids = [c["id"] for c in gt["categories"]]
    by_img: dict[int, list[dict]] = {img["id"]: [] for img in gt["images"]}
    for ann in gt["annotations"]:
        by_img[ann["image_id"]].append(ann)
    dets: list[dict] = []
    for img in gt["images"]:
        mine: list[dict] = []
        for ann in by_img[img["id"]]:
            if rng.random() < 0.85:
                s = float(rng.uniform(0.3, 1.0))
                for frac, scale in ((0.05, 1.0), (0.15, 0.6), (0.3, 0.3)):
                    mine.append({"image_id": img["id"], "category_id": ann["category_id"],
                                 "bbox": _jitter(ann["bbox"], frac, rng), "score": s * scale})
        present = sorted({a["category_id"] for a in by_img[img["id"]]}) or cat_ids
        for _ in range(max(per_image - len(mine), 0)):
            w, h = rng.uniform(8, img["width"] / 2), rng.uniform(8, img["height"] / 2)
            cat = int(rng.choice(present if rng.random() < 0.5 else cat_ids))
            mine.append({"image_id": img["id"], "category_id": cat,
                         "bbox": [float(rng.uniform(0, img["width"] - w)), float(rng.uniform(0, img["height"] - h)),
                                  float(w), float(h)], "score": float(rng.uniform(0.0, 0.6))})
        dets.extend(mine)
    return dets


def max_abs_diff(a: dict, b: dict) -> float:
    """Max |a - b| over summary metrics and per-class APs; inf if NaN patterns differ."""
    pairs = [(v, b[k]) for k, v in a.items() if k != "per_class"]
    pairs += [(v, b["per_class"][c]) for c, v in a["per_class"].items()]
    worst = 0.0
    for x, y in pairs:
        if math.isnan(x) or math.isnan(y):
            if math.isnan(x) != math.isnan(y):
                return math.inf
            continue
        worst = max(worst, abs(x - y))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--dets-per-image", type=int, default=80)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    gt = resample_gt(load_gt(shared_data("coco128")), args.images, rng)
    dets = make_detections(gt, args.dets_per_image, rng)
    print(f"images={len(gt['images'])} gt_boxes={len(gt['annotations'])} detections={len(dets)} "
          f"({len(dets) / len(gt['images']):.1f}/image) categories={len(gt['categories'])}")
    t_val, _ = best_of(lambda: (validate_coco_gt(gt), validate_detections(gt, dets)), args.repeats)
    t_ref, ref = best_of(lambda: coco_bbox_eval(gt, dets, backend="pycocotools"), args.repeats)
    t_fast, fast = best_of(lambda: coco_bbox_eval(gt, dets, backend="faster"), args.repeats)
    diff = max_abs_diff(fast, ref)
    print(f"pycocotools={t_ref:.2f}s faster_coco_eval={t_fast:.2f}s (both incl. validation {t_val:.2f}s), "
          f"best of {args.repeats}")
    print(f"AP={fast['AP']:.4f} AP50={fast['AP50']:.4f} AP75={fast['AP75']:.4f} "
          f"APs={fast['APs']:.4f} APm={fast['APm']:.4f} APl={fast['APl']:.4f} AR100={fast['AR100']:.4f}")
    print(f"coco_eval_faster_vs_pycocotools: speedup={t_ref / t_fast:.1f}x (goal >= 3x); "
          f"max_abs_diff={diff:.3g} over 12 metrics + {len(fast['per_class'])} per-class APs (goal <= {TOL:g})")
    if not diff <= TOL:
        sys.exit(f"FAIL: backends differ by {diff:.3g} > {TOL:g}")


if __name__ == "__main__":
    main()
