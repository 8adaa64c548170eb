"""Ensembling detection experiments: each image's boxes from every member fused by weighted boxes
fusion (Solovyev et al. 2021), member weights searched (SLSQP / greedy from
:mod:`kagglekit.ensemble`) on COCO mAP of the fused validation (OOF) detections; the same weights
then fuse the members' test detections. Members must cover the same validation images."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from kagglekit.ensemble import search_weights
from kagglekit.io import load_json
from kagglekit.metrics.detection import coco_bbox_eval
from kagglekit.oof import OOFError
from kagglekit.tasks.detection.data import select_images
from kagglekit.tasks.detection.task import DetectionTask, to_coco_results
from kagglekit.tta.detection import Detections, merge_wbf

Results = list[dict[str, Any]]


def by_image(results: Results, cat_ids: Sequence[int]) -> dict[int, Detections]:
    """COCO results → per image :class:`Detections` (xyxy, labels 1..C in ``cat_ids`` order)."""
    label_of = {cid: i + 1 for i, cid in enumerate(cat_ids)}
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        grouped[int(r["image_id"])].append(r)
    out = {}
    for image_id, rows in grouped.items():
        xywh = torch.tensor([r["bbox"] for r in rows], dtype=torch.float64)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        out[image_id] = Detections(boxes, torch.tensor([r["score"] for r in rows], dtype=torch.float64),
                                   torch.tensor([label_of[r["category_id"]] for r in rows], dtype=torch.int64))
    return out


def fuse(members: Sequence[dict[int, Detections]], images: Sequence[dict[str, Any]], weights: np.ndarray,
         cat_ids: Sequence[int], iou_thr: float, max_dets: int) -> Results:
    """WBF of the members' detections on every image (members with weight 0 left out)."""
    keep = [i for i, w in enumerate(weights) if w > 1e-9]
    results: Results = []
    for image in images:
        views = [members[i].get(image["id"], Detections.empty()) for i in keep]
        fused = merge_wbf(views, (image["height"], image["width"]), iou_thr=iou_thr,
                          weights=[float(weights[i]) for i in keep], max_dets=max_dets)
        results += to_coco_results(fused.to_dict(), image["id"], cat_ids)
    return results


class DetectionBlendObjective:
    """weights → COCO AP of the WBF-fused OOF detections."""

    def __init__(self, members: Sequence[dict[int, Detections]], gt: dict[str, Any], cat_ids: Sequence[int],
                 iou_thr: float = 0.55, max_dets: int = 100) -> None:
        self.members, self.gt, self.cat_ids, self.iou_thr, self.max_dets = members, gt, list(cat_ids), iou_thr, max_dets
        self.n_evals = 0

    def fused(self, weights: np.ndarray) -> Results:
        return fuse(self.members, self.gt["images"], np.asarray(weights, dtype=np.float64), self.cat_ids,
                    self.iou_thr, self.max_dets)

    def __call__(self, weights: np.ndarray) -> float:
        self.n_evals += 1
        return float(coco_bbox_eval(self.gt, self.fused(weights), validate=False)["AP"])


def member_oof(exp_dir: Path) -> Results:
    paths = sorted(exp_dir.glob("fold*/oof/detections.json"))
    if not paths:
        raise OOFError(f"{exp_dir}: no fold*/oof/detections.json; run the member's folds first")
    return [r for p in paths for r in load_json(p)]


def oof_ground_truth(task: DetectionTask, n_folds: int) -> dict[str, Any]:
    """The validation images of every fold (fixed split: the val split) with their annotations."""
    if task.cfg.split_mode == "fixed":
        return task.coco("val")
    ids = [im["id"] for k in range(n_folds) for im in task.fold_split(k)[2]["images"]]
    return select_images(task.coco("train"), ids)


def blend_detections(tasks: Sequence[DetectionTask], exp_dirs: Sequence[Path], method: str,
                     iou_thr: float = 0.55) -> dict[str, Any]:
    """Search WBF weights on the OOF detections; fuse the test detections with them."""
    task = tasks[0]
    if any(t.cat_ids != task.cat_ids or t.cfg.split_mode != task.cfg.split_mode for t in tasks):
        raise OOFError("detection ensemble members must share categories and split_mode")
    gt = oof_ground_truth(task, task.cfg.n_folds)
    members = [by_image(member_oof(d), task.cat_ids) for d in exp_dirs]
    covered = {im["id"] for im in gt["images"]}
    for d, m in zip(exp_dirs, members):
        if not set(m) <= covered:
            raise OOFError(f"{d}: OOF detections on images outside the validation set; members use other splits")
    objective = DetectionBlendObjective(members, gt, task.cat_ids, iou_thr, task.cfg.detections_per_image)
    result = search_weights(objective, len(tasks), method, final_score_fn=objective)  # + uniform / single checks
    out = {"weights": [float(w) for w in result.weights], "blend_oof_score": 100 * float(result.score),
           "member_oof_score": [100 * float(s) for s in result.member_scores],
           "objective_evaluations": int(objective.n_evals), "search_history": [float(h) for h in result.history],
           "oof_detections": objective.fused(result.weights), "gt": gt}
    test = task.coco("test")
    tests = [d / "fold0" / "evaluation" / "test" / "coco_instances_results.json" for d in exp_dirs]
    if test is not None and task.cfg.split_mode == "fixed" and all(p.exists() for p in tests):
        test_members = [by_image(load_json(p), task.cat_ids) for p in tests]
        out["test_detections"] = fuse(test_members, test["images"], result.weights, task.cat_ids, iou_thr,
                                      task.cfg.detections_per_image)
        out["test_gt"] = test
    return out
