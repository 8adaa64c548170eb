"""The detection Task (seed 004): COCO-format splits (converted from YOLO once), Faster R-CNN in the
common iteration-based loop, COCO bbox evaluation every ``eval_period``, then validation (and test)
predictions with optional multi-scale + flip TTA merged by NMS/WBF, seed-shaped results files
(``evaluation/<split>/coco_instances_results.json``, ``results.json``) and report.

Modes: ``split_mode=fixed`` validates on the ``val`` split (one "fold"); ``kfold`` makes folds over
the train split (stratified on per-image class presence) so every train image gets an OOF prediction.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from kagglekit import paths
from kagglekit.cv import fold_ids, get_or_make_folds
from kagglekit.engine.distributed import local_device
from kagglekit.experiment.contract import MetricSpec
from kagglekit.io import file_lock, load_json, save_json
from kagglekit.submission.boxes import box_submission_problems, image_key, read_box_submission, write_box_submission
from kagglekit.metrics.detection import coco_bbox_eval, detectron2_results_json, prediction_stats
from kagglekit.tasks.detection import convert as C
from kagglekit.tasks.detection.config import DetectionConfig
from kagglekit.tasks.detection.data import DetectionDataset, class_presence, repeat_factors, select_images, subset_classes
from kagglekit.tasks.detection.model import DetectionModel, DetectorSpec, build_detector, load_local_weights
from kagglekit.tta.detection import predict_tta

log = logging.getLogger("kagglekit.detection")


def to_coco_results(det: dict[str, torch.Tensor], image_id: int, cat_ids: Sequence[int]) -> list[dict[str, Any]]:
    """torchvision detections (boxes (n, 4) xyxy, scores (n,), labels (n,) in 1..C) → COCO results."""
    boxes = det["boxes"].detach().cpu().double().numpy()
    scores, labels = det["scores"].detach().cpu().tolist(), det["labels"].detach().cpu().tolist()
    return [{"image_id": int(image_id), "category_id": int(cat_ids[label - 1]),
             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])], "score": float(score)}
            for b, score, label in zip(boxes, scores, labels)]


def summary_percent(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    """AP/AP50/AP75/APs/APm/APl in percent (NaN = no ground truth in that size bucket)."""
    return {f"{prefix}{k}": 100.0 * float(metrics[k]) for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}


class DetectionEvaluator:
    """Streams the loop's eval outputs into COCO results, then COCO bbox AP (percent)."""

    def __init__(self, gt: dict[str, Any], cat_ids: Sequence[int]) -> None:
        self.gt, self.cat_ids, self.results = gt, list(cat_ids), []

    def update(self, outputs: dict[str, Any], batch: dict[str, Any]) -> None:
        for det, image_id in zip(outputs["detections"], batch["image_id"].tolist()):
            self.results += to_coco_results(det, image_id, self.cat_ids)

    def compute(self) -> dict[str, float]:
        m = coco_bbox_eval(self.gt, self.results)
        return {"valid_bbox_AP": 100 * m["AP"], "valid_bbox_AP50": 100 * m["AP50"], "valid_bbox_AP75": 100 * m["AP75"]}


class DetectionTask:
    """The detection side of :class:`kagglekit.experiment.contract.Task`."""

    metric = MetricSpec("bbox mAP (%)", "max", fold_key="score")

    def __init__(self, cfg: DetectionConfig) -> None:
        if cfg.split_mode not in ("fixed", "kfold"):
            raise ValueError(f"split_mode {cfg.split_mode!r} unknown; use fixed or kfold")
        if cfg.split_mode == "fixed" and cfg.n_folds != 1:
            raise ValueError(f"split_mode=fixed validates on the val split: set n_folds=1 (got {cfg.n_folds}) or split_mode=kfold")
        self.cfg = cfg
        self.root = Path(cfg.data_dir) if cfg.data_dir else paths.input_root() / cfg.comp
        self.work = paths.input_root() / cfg.comp  # converted JSON + folds.csv (data_dir may be read-only)
        self.device = local_device(cfg.device)
        self._coco: dict[str, dict[str, Any] | None] = {}

    # ---- data -------------------------------------------------------------------------------
    def prepare_demo(self) -> None:
        from kagglekit.demo.detection import prepare_detection_demo
        prepare_detection_demo(self.cfg, self.root)

    def annotations_path(self, split: str) -> Path:
        base = self.work if self.cfg.data_format == "yolo" else self.root
        return base / "annotations" / f"instances_{split}.json"

    def _convert_yolo(self) -> None:
        names_file = next((p for p in (self.root / "classes.txt", self.root / "data.yaml") if p.exists()), None)
        if names_file is None:
            raise FileNotFoundError(f"{self.root}: no classes.txt or data.yaml; a YOLO dataset needs its class names")
        log.info("converting YOLO labels under %s to COCO JSON in %s", self.root, self.work / "annotations")
        C.export_coco_splits(self.root, C.read_class_names(names_file), self.cfg.splits, out_dir=self.work / "annotations")

    def _yolo_split_exists(self, split: str) -> bool:
        """A YOLO split is a folder ``images/<split>`` or a split file ``<split>.txt`` of image paths."""
        return (self.root / "images" / split).is_dir() or (self.root / f"{split}.txt").is_file()

    def coco(self, split: str) -> dict[str, Any] | None:
        """The split's COCO dict (class subset applied), or None when the split does not exist."""
        if split not in self._coco:
            path = self.annotations_path(split)
            if self.cfg.data_format == "yolo" and not path.exists() and self._yolo_split_exists(split):
                with file_lock(self.work / ".convert.lock"):  # processes sharing input/ convert once
                    if not path.exists():
                        self._convert_yolo()
            if self.cfg.data_format not in ("yolo", "coco"):
                raise ValueError(f"data_format {self.cfg.data_format!r} unknown; use yolo or coco")
            coco = C.load_coco(path) if path.exists() else None
            if coco is not None and self.cfg.class_subset:
                coco = subset_classes(coco, self.cfg.class_subset)
            self._coco[split] = coco
        return self._coco[split]

    def image_dir(self, split: str) -> Path:
        """Where ``file_name``s of the split are relative to: ``image_dir`` when set, else what the
        YOLO conversion recorded (``images/<split>``, or the root for split files)."""
        if self.cfg.image_dir:
            return Path(self.cfg.image_dir.replace("{split}", split))
        recorded = ((self.coco(split) or {}).get("info") or {}).get("image_dir")
        return self.root / (recorded or f"images/{split}")

    @property
    def categories(self) -> list[dict[str, Any]]:
        train = self.coco("train")
        if train is None:
            raise FileNotFoundError(f"{self.annotations_path('train')} not found (and no YOLO train split under {self.root})")
        return sorted(train["categories"], key=lambda c: c["id"])

    @property
    def cat_ids(self) -> list[int]:
        return [c["id"] for c in self.categories]

    @property
    def class_names(self) -> dict[int, str]:
        return {c["id"]: c["name"] for c in self.categories}

    def folds(self) -> pd.DataFrame:
        ids, presence = class_presence(self.coco("train"))
        table = pd.DataFrame(presence, columns=[f"c{j}" for j in range(presence.shape[1])])
        table.insert(0, "id", ids)
        y = [c for c in table.columns[1:] if table[c].any()]
        return get_or_make_folds(self.work / "folds.csv", table, "id", self.cfg.n_folds, self.cfg.fold_strategy,
                                 y=y, seed=self.cfg.fold_seed)

    def fold_split(self, fold: int) -> tuple[dict[str, Any], Path, dict[str, Any], Path]:
        """(train COCO, its image dir, validation COCO, its image dir) of ``fold``."""
        train = self.coco("train")
        if self.cfg.split_mode == "fixed":
            valid = self.coco("val")
            if valid is None:
                raise FileNotFoundError(f"{self.annotations_path('val')}: no val split; add one or use split_mode=kfold")
            return train, self.image_dir("train"), valid, self.image_dir("val")
        train_ids, valid_ids = fold_ids(self.folds(), fold, "id")
        return select_images(train, train_ids), self.image_dir("train"), select_images(train, valid_ids), self.image_dir("train")

    def preflight(self, fold: int) -> list[str]:
        """Every problem with the files fold ``fold`` reads: the train annotations (converted from
        YOLO first when needed), the val split's in fixed mode, the test split's when it exists, and
        every image they list (exists, decodes)."""
        from kagglekit.tasks.detection.data import coco_image_problems
        problems: list[str] = []
        for split in ("train", "val", "test") if self.cfg.split_mode == "fixed" else ("train", "test"):
            try:
                coco = self.coco(split)
            except (ValueError, OSError) as exc:  # LabelError (annotations, YOLO lines, class_subset) is a ValueError
                problems.append(str(exc))
                continue
            if coco is None:
                if split != "test":
                    problems.append(f"{self.annotations_path(split)}: {split} annotations not found (and no YOLO {split} "
                                    f"split under {self.root}); add them or fix data_dir / data_format")
                continue
            problems += coco_image_problems(coco, self.image_dir(split), str(self.annotations_path(split)))
        return problems

    def fold_datasets(self, fold: int) -> tuple[DetectionDataset, DetectionDataset]:
        c = self.cfg
        train, train_dir, valid, valid_dir = self.fold_split(fold)
        train_ds = DetectionDataset(train, train_dir, train=True, hflip_p=c.hflip_p, seed=c.seed, filter_empty=c.filter_empty)
        if c.repeat_factor_threshold > 0:
            train_ds.repeat_factors = repeat_factors(train_ds.coco, c.repeat_factor_threshold)
        return train_ds, DetectionDataset(valid, valid_dir, train=False)

    # ---- model ------------------------------------------------------------------------------
    def detector_spec(self) -> DetectorSpec:
        c = self.cfg
        return DetectorSpec(num_classes=len(self.cat_ids), architecture=c.architecture, backbone=c.backbone,
                            trainable_backbone_layers=c.trainable_backbone_layers, anchor_sizes=c.anchor_sizes,
                            aspect_ratios=c.aspect_ratios, train_min_sizes=c.train_min_sizes, test_min_size=c.test_min_size,
                            max_size=c.max_size, roi_batch_per_image=c.roi_batch_per_image, score_thresh=c.score_thresh,
                            nms_thresh=c.nms_thresh, detections_per_image=c.detections_per_image,
                            rpn_pre_nms_top_n=c.rpn_pre_nms_top_n, rpn_post_nms_top_n=c.rpn_post_nms_top_n,
                            roi_loss=c.roi_loss, focal_alpha=c.focal_alpha, focal_gamma=c.focal_gamma,
                            pretrained=bool(c.pretrained or c.init_weights))

    def build_model(self, initial_weights: bool = True) -> DetectionModel:
        c = self.cfg
        detector = build_detector(self.detector_spec())  # frozen BatchNorm when either file is configured
        if (c.pretrained or c.init_weights) and initial_weights:
            load_local_weights(detector, c.pretrained, c.init_weights)
        elif initial_weights:
            log.info("pretrained=False: %s detector randomly initialised (set pretrained= or "
                     "init_weights=<local file>; nothing is downloaded)", c.backbone)
        return DetectionModel(detector, c.train_min_sizes, c.test_min_size)

    def make_evaluator(self, valid_ds: DetectionDataset) -> DetectionEvaluator:
        return DetectionEvaluator(valid_ds.coco, self.cat_ids)

    # ---- fold epilogue ----------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: DetectionModel, dataset: DetectionDataset, tta: bool) -> list[dict[str, Any]]:
        """COCO results for every image of ``dataset`` (TTA views merged when ``tta``)."""
        c = self.cfg
        model = model.to(self.device).eval()
        results: list[dict[str, Any]] = []
        for i in tqdm(range(len(dataset)), desc="predict" + (" (TTA)" if tta else ""), leave=False):
            image = dataset.load_image(i).to(self.device)
            if tta:
                det = predict_tta(model.predictor(), image, c.tta_sizes, c.tta_flip, c.tta_merge,
                                  iou_thr=c.tta_iou, max_dets=c.detections_per_image).to_dict()
            else:
                det = model.predict_sized([image], c.test_min_size)[0]
            results += to_coco_results(det, dataset.images[i]["id"], self.cat_ids)
        return results

    def evaluate_split(self, results: list[dict[str, Any]], gt: dict[str, Any], out: Path) -> dict[str, Any]:
        """Write ``coco_instances_results.json`` (+ ``results.json`` when ``gt`` has annotations)
        under ``out``; return COCO metrics (percent), per-class AP and prediction statistics."""
        save_json(out / "coco_instances_results.json", results)
        stats = prediction_stats(results, [im["id"] for im in gt["images"]])
        if not gt["annotations"]:
            return {"stats": stats}
        m = coco_bbox_eval(gt, results)
        save_json(out / "results.json", detectron2_results_json(m, self.class_names))
        per_class = {self.class_names[k]: 100.0 * v for k, v in m["per_class"].items()}
        return {**summary_percent(m, ""), "per_class": per_class, "stats": stats}

    def finalize(self, model: DetectionModel, fold: int, fold_dir: Path) -> dict[str, Any]:
        c = self.cfg
        _, _, valid, valid_dir = self.fold_split(fold)
        valid_ds = DetectionDataset(valid, valid_dir, train=False)
        out: dict[str, Any] = {}
        plain = self.predict(model, valid_ds, tta=False)
        out["val_plain"] = self.evaluate_split(plain, valid, fold_dir / "evaluation" / "val_plain")
        chosen = self.predict(model, valid_ds, tta=True) if c.tta_sizes else plain
        out["val"] = self.evaluate_split(chosen, valid, fold_dir / "evaluation" / "val")
        save_json(fold_dir / "oof" / "detections.json", chosen)  # this fold's OOF (the ensemble reads it)
        if self.predict_test(model, fold, fold_dir, out):
            out["test"] = self.evaluate_split(load_json(self.fold_test_path(fold_dir)), self.coco("test"),
                                              fold_dir / "evaluation" / "test")
        out["tta"] = {"sizes": list(c.tta_sizes), "flip": c.tta_flip, "merge": c.tta_merge} if c.tta_sizes else None
        out["score"] = out["val"].get("AP")
        return out

    @staticmethod
    def fold_test_path(fold_dir: Path) -> Path:
        return fold_dir / "evaluation" / "test" / "coco_instances_results.json"

    def predict_test(self, model: DetectionModel, fold: int, fold_dir: Path, fold_metrics: dict[str, Any]) -> bool:
        """COCO results of the test split (TTA when configured) → ``fold_dir/evaluation/test/coco_instances_results.json``."""
        test = self.coco("test")
        if test is None:
            log.info("%s not found (and no YOLO test split under %s): no test split to predict",
                     self.annotations_path("test"), self.root)
            return False
        test_ds = DetectionDataset(test, self.image_dir("test"), train=False)
        save_json(self.fold_test_path(fold_dir), self.predict(model, test_ds, tta=bool(self.cfg.tta_sizes)))
        return True

    def final_checkpoint(self, fold_dir: Path, fold_metrics: dict[str, Any]) -> Path:
        return fold_dir / "checkpoints" / "best.pt"

    def report_fold(self, fold_dir: Path, history: pd.DataFrame, metrics: dict[str, Any]) -> None:
        from kagglekit.tasks.detection.report import write_fold_report
        write_fold_report(fold_dir, self.cfg, history, metrics, self.compare_metrics())

    def compare_metrics(self) -> dict[str, dict[str, Any]]:
        """Each ``compare_to`` experiment's summary (``output/<exp>/metrics.json``) that exists, by name."""
        found = {}
        for name in self.cfg.compare_to:
            path = Path(self.cfg.output_dir or paths.output_root()) / name / "metrics.json"
            if path.exists():
                found[name] = load_json(path)
            else:
                log.warning("compare_to %s: %s not found; report without that comparison", name, path)
        return found

    def score_experiment(self, exp_dir: Path, fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
        summary = self.experiment_summary(exp_dir, list(fold_metrics))
        return {"cv": summary["val"].get("AP"), **summary}

    def test_detections(self, exp_dir: Path) -> list[dict[str, Any]] | None:
        """The experiment's test detections: fold 0's (fixed split) or the folds' boxes fused by WBF
        (k-fold: uniform weights, ``tta_iou``); None when the data has no test split or a fold has
        no test predictions."""
        test = self.coco("test")
        files = [self.fold_test_path(exp_dir / f"fold{k}") for k in range(self.cfg.n_folds)]
        if test is None or not all(f.exists() for f in files):
            return None
        if self.cfg.split_mode == "fixed":
            return load_json(files[0])
        from kagglekit.tasks.detection.blend import by_image, fuse
        members = [by_image(load_json(f), self.cat_ids) for f in files]
        return fuse(members, test["images"], np.full(len(members), 1.0 / len(members)), self.cat_ids,
                    self.cfg.tta_iou, self.cfg.detections_per_image)

    def write_submission(self, exp_dir: Path, summary: dict[str, Any], path: Path) -> Path | None:
        return self.write_blend_submission([self], [exp_dir], [1.0], summary, path)

    def write_blend_submission(self, tasks: Sequence["DetectionTask"], member_dirs: Sequence[Path], weights: Any,
                               decisions: dict[str, Any], path: Path) -> Path | None:
        """Each member's :meth:`test_detections`; several members fused per image by WBF with
        ``weights`` at ``decisions["iou_thr"]`` (default 0.55); one member written as it is →
        validated ``image_id,PredictionString`` CSV."""
        test = self.coco("test")
        members = [t.test_detections(d) for t, d in zip(tasks, member_dirs)]
        if test is None or any(m is None for m in members):
            return None
        results = members[0]
        if len(members) > 1:
            from kagglekit.tasks.detection.blend import by_image, fuse
            results = fuse([by_image(m, self.cat_ids) for m in members], test["images"], np.asarray(weights, dtype=np.float64),
                           self.cat_ids, float(decisions.get("iou_thr", 0.55)), self.cfg.detections_per_image)
        return write_box_submission(results, test["images"], self.cat_ids, path)

    def validate_submission(self, path: Path, reference: Path | None = None) -> list[str]:
        """``image_id,PredictionString`` against the test images (or ``reference``'s image_id column)."""
        try:
            frame = read_box_submission(Path(path))
        except (OSError, ValueError) as exc:
            return [f"{path}: cannot read the CSV ({exc})"]
        if reference:
            ids = pd.read_csv(reference, dtype=str)["image_id"].tolist()
        else:
            test = self.coco("test")
            if test is None:
                return ["this experiment's data has no test split; pass the sample submission as the reference"]
            ids = [image_key(im) for im in test["images"]]
        return box_submission_problems(frame, ids, self.cat_ids)

    def report_experiment(self, exp_dir: Path, summary: dict[str, Any], fold_metrics: Sequence[dict[str, Any]]) -> None:
        from kagglekit.tasks.detection.report import write_experiment_report
        write_experiment_report(exp_dir, self.cfg, summary, self.compare_metrics())

    def blend_objective(self, tasks: Sequence["DetectionTask"], member_dirs: Sequence[Path]) -> Any:
        from kagglekit.tasks.detection.blend import DetectionBlendObjective
        return DetectionBlendObjective.from_members(tasks, member_dirs)

    def experiment_summary(self, exp_dir: Path, folds: list[dict[str, Any]]) -> dict[str, Any]:
        """Fixed split: fold 0's numbers. K-fold: the merged OOF detections of folds 0..K-1 scored
        on exactly those folds' validation images of the train GT."""
        summary: dict[str, Any] = {"experiment": self.cfg.name, "folds": len(folds)}
        if self.cfg.split_mode == "fixed":
            return {**summary, "val": folds[0]["val"], "val_plain": folds[0]["val_plain"],
                    "test": folds[0].get("test"), "best_valid_bbox_AP": folds[0].get("best_valid_bbox_AP")}
        n = len(folds)
        oof = [r for k in range(n) for r in load_json(exp_dir / f"fold{k}" / "oof" / "detections.json")]
        train = self.coco("train")
        covered = sorted({im["id"] for k in range(n) for im in self.fold_split(k)[2]["images"]})
        summary["val"] = self.evaluate_split(oof, select_images(train, covered), exp_dir / "evaluation" / "oof")
        summary["fold_AP"] = [f["val"].get("AP") for f in folds]
        fused = self.test_detections(exp_dir)  # the fold models' test boxes, WBF-fused
        if fused is not None:
            summary["test"] = self.evaluate_split(fused, self.coco("test"), exp_dir / "evaluation" / "test")
        return summary
