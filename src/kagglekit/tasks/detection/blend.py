"""Ensembling detection experiments: each image's boxes from every member fused by weighted boxes
fusion (Solovyev et al. 2021), member weights searched (SLSQP / greedy from
:mod:`kagglekit.ensemble.search`) on COCO mAP of the fused validation (OOF) detections; the same weights
then fuse the members' test detections. Members must cover the same validation images."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Collection, Sequence

import numpy as np
import torch

from kagglekit.metrics.detection import coco_bbox_eval
from kagglekit.store.arrays import OOFError
from kagglekit.store.records import has_records, read_records, records_path
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
    """Weights → COCO AP (%) of the members' validation (OOF) boxes fused per image by weighted
    boxes fusion; the same weights fuse the members' test boxes into the submission."""

    def __init__(self, members: Sequence[dict[int, Detections]], gt: dict[str, Any], cat_ids: Sequence[int],
                 iou_thr: float = 0.55, max_dets: int = 100, tasks: Sequence[DetectionTask] = (),
                 member_dirs: Sequence[Path] = ()) -> None:
        self.members, self.gt, self.cat_ids, self.iou_thr, self.max_dets = members, gt, list(cat_ids), iou_thr, max_dets
        self.tasks, self.member_dirs = list(tasks), list(member_dirs)
        self.n_evals = 0

    @classmethod
    def from_members(cls, tasks: Sequence[DetectionTask], member_dirs: Sequence[Path],
                     iou_thr: float = 0.55) -> "DetectionBlendObjective":
        task = tasks[0]
        if any(t.cat_ids != task.cat_ids or t.cfg.split_mode != task.cfg.split_mode for t in tasks):
            raise OOFError("detection ensemble members must share categories and split_mode")
        gt = oof_ground_truth(task, task.cfg.n_folds)
        covered = {im["id"] for im in gt["images"]}
        members = [by_image(member_oof(d, t.cfg.n_folds, covered), task.cat_ids) for t, d in zip(tasks, member_dirs)]
        for d, m in zip(member_dirs, members):
            if not set(m) <= covered:
                raise OOFError(f"{d}: OOF detections on images outside the validation set; members use other splits")
        return cls(members, gt, task.cat_ids, iou_thr, task.cfg.detections_per_image, tasks, member_dirs)

    def fused(self, weights: np.ndarray) -> Results:
        return fuse(self.members, self.gt["images"], np.asarray(weights, dtype=np.float64), self.cat_ids,
                    self.iou_thr, self.max_dets)

    def __call__(self, weights: np.ndarray) -> float:
        self.n_evals += 1
        return 100.0 * float(coco_bbox_eval(self.gt, self.fused(weights), validate=False)["AP"])

    def full_score(self, weights: np.ndarray) -> float:
        return self(weights)

    def extras(self, weights: np.ndarray, out: Path | None = None) -> dict[str, Any]:
        """The fused validation (and test) boxes evaluated into ``out/evaluation/{val,test}``."""
        result: dict[str, Any] = {"iou_thr": self.iou_thr}
        if out is None:
            return result
        task = self.tasks[0]
        result["val_metrics"] = task.evaluate_split(self.fused(weights), self.gt, out / "evaluation" / "val",
                                                    experiment=out.name)
        test = task.coco("test")
        members = [t.test_detections(d) for t, d in zip(self.tasks, self.member_dirs)]
        if test is not None and all(m is not None for m in members):
            fused = fuse([by_image(m, self.cat_ids) for m in members], test["images"],
                         np.asarray(weights, dtype=np.float64), self.cat_ids, self.iou_thr, self.max_dets)
            result["test_metrics"] = task.evaluate_split(fused, test, out / "evaluation" / "test", experiment=out.name)
        return result

    def write_submission(self, weights: np.ndarray, path: Path) -> Path | None:
        """Each member's experiment-level test boxes (fixed: fold 0; k-fold: its folds' fusion), fused."""
        return self.tasks[0].write_blend_submission(self.tasks, self.member_dirs, weights, {"iou_thr": self.iou_thr}, path)


def member_oof(exp_dir: Path, n_folds: int, expected_ids: Collection[int] | None = None) -> Results:
    """The member's OOF boxes, every fold's ``oof/`` records store (``oof/detections.json`` of older
    outputs). With ``expected_ids``: when every fold has a manifest, the images they predicted
    together must be exactly those (else OOFError: a fold that skipped images, another split)."""
    dirs = [exp_dir / f"fold{k}" / "oof" for k in range(n_folds)]
    if missing := [d for d in dirs if not has_records(d, "bbox")]:
        raise OOFError(f"{records_path(missing[0], 'bbox')} not found; run the member's folds first")
    stores = [read_records(d, "bbox") for d in dirs]
    if expected_ids is not None and all(m is not None for _, m in stores):
        predicted, expected = {i for _, m in stores for i in m.image_ids}, {int(i) for i in expected_ids}
        if predicted != expected:
            raise OOFError(f"{exp_dir}: the folds' OOF predicted {len(predicted)} images, the validation set has "
                           f"{len(expected)} ({len(expected - predicted)} never predicted, {len(predicted - expected)} "
                           "outside it); members use other splits, or rerun the member's folds")
    return [r for results, _ in stores for r in results]


def oof_ground_truth(task: DetectionTask, n_folds: int) -> dict[str, Any]:
    """The validation images of every fold (fixed split: the val split) with their annotations."""
    if task.cfg.split_mode == "fixed":
        return task.coco("val")
    ids = [im["id"] for k in range(n_folds) for im in task.fold_split(k)[2]["images"]]
    return select_images(task.coco("train"), ids)
