"""The detection Task (seed 004): COCO-format splits (converted from YOLO once), Faster R-CNN in the
common iteration-based loop, COCO bbox evaluation every ``eval_period``, then validation (and test)
predictions with optional multi-scale + flip TTA merged by NMS/WBF, seed-shaped results files
(``evaluation/<split>/coco_instances_results.json``, ``results.json``) and report. Each split folder
and the fold's ``oof/`` is a records store (:mod:`kagglekit.store.records`: results + manifest.json).

Modes: ``split_mode=fixed`` validates on the ``val`` split (one "fold"; without one, a seeded
``val_fraction`` of the train images held out once, :func:`layouts.holdout_ids`); ``kfold`` makes
folds over the train split (stratified on per-image class presence) so every train image gets an
OOF prediction. Data: ``data_format`` yolo / coco / darknet / ultralytics (:mod:`.layouts`), an
optional ``test_images`` folder as the test split. Submissions: the config's ``submission_*``
fields → :class:`kagglekit.submission.boxes.BoxFormat`; :meth:`DetectionTask.score_submission`
parses a file with it and scores COCO bbox AP against a COCO JSON (or labelled images).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from kagglekit.experiment.setup import workspace_for
from kagglekit.weights import any_pretrained
from kagglekit import paths
from kagglekit.cv import fold_ids, get_or_make_folds
from kagglekit.experiment.contract import MetricSpec
from kagglekit.io import file_lock, load_json, save_json
from kagglekit.store.records import RecordsManifest, has_records, read_records, records_path, require_image_ids, write_records
from kagglekit.submission.boxes import (BoxFormat, box_submission_problems, parse_box_submission, read_box_submission,
                                       write_box_submission)
from kagglekit.metrics.detection import coco_bbox_eval, detectron2_results_json, prediction_stats
from kagglekit.tasks.detection import convert as C
from kagglekit.tasks.detection import layouts as L
from kagglekit.tasks.detection.config import DetectionConfig
from kagglekit.tasks.detection.data import DetectionDataset, class_presence, repeat_factors, select_images, subset_classes
from kagglekit.tasks.detection.model import DetectionModel, DetectorSpec, build_detector, load_local_weights
from kagglekit.tta.detection import DetectionView, make_detection_views, predict_tta

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
        if not 0.0 <= cfg.val_fraction < 1.0 or (cfg.val_fraction and cfg.split_mode != "fixed"):
            raise ValueError(f"val_fraction={cfg.val_fraction}: a share in [0, 1) of the train images held out in "
                             "split_mode=fixed (k-fold validates on every fold instead: leave it 0)")
        if cfg.data_format not in ("yolo", "coco", "darknet", "ultralytics"):
            raise ValueError(f"data_format {cfg.data_format!r} unknown; use yolo, coco, darknet or ultralytics")
        self.cfg = cfg
        self.box_format()  # a bad submission template fails here, before any training
        self.workspace = workspace_for(cfg)
        self.root, self.device, self.inference = self.workspace.root, self.workspace.device, self.workspace.inference
        self.work = self.workspace.work  # converted JSON + folds.csv (data_dir may be read-only)
        self._coco: dict[str, dict[str, Any] | None] = {}
        self._raw: dict[str, dict[str, Any] | None] = {}

    # ---- data -------------------------------------------------------------------------------
    def prepare_demo(self) -> None:
        from kagglekit.demo.detection import prepare_detection_demo
        prepare_detection_demo(self.cfg, self.root)

    def annotations_path(self, split: str) -> Path:
        """The split's COCO JSON: converted ones (yolo / darknet / ultralytics, ``test_images``)
        under ``work/annotations``, COCO data's own under ``data_dir/annotations``."""
        if split == "test" and self.cfg.test_images:
            return self.work / "annotations" / "instances_test_images.json"
        base = self.root if self.cfg.data_format == "coco" else self.work
        return base / "annotations" / f"instances_{split}.json"

    def _path(self, value: str) -> Path:
        return Path(value) if Path(value).is_absolute() else self.root / value

    def _convert_yolo(self) -> None:
        names_file = next((p for p in (self.root / "classes.txt", self.root / "data.yaml") if p.exists()), None)
        if names_file is None:
            raise FileNotFoundError(f"{self.root}: no classes.txt or data.yaml; a YOLO dataset needs its class names")
        log.info("converting YOLO labels under %s to COCO JSON in %s", self.root, self.work / "annotations")
        C.export_coco_splits(self.root, C.read_class_names(names_file), self.cfg.splits, out_dir=self.work / "annotations")

    def _yolo_split_exists(self, split: str) -> bool:
        """A YOLO split is a folder ``images/<split>`` or a split file ``<split>.txt`` of image paths."""
        return (self.root / "images" / split).is_dir() or (self.root / f"{split}.txt").is_file()

    def _convert(self, split: str, path: Path) -> None:
        """Write ``path`` (the split's COCO JSON) from the data's own format when the split exists."""
        c = self.cfg
        if split == "test" and c.test_images:
            if self.raw_coco("train") is None:
                raise FileNotFoundError(f"{self.annotations_path('train')}: no train split under {self.root}; "
                                        "test_images takes its categories from it")
            categories = C.load_coco(self.annotations_path("train"))["categories"]  # all, before class_subset
            coco = L.test_images_coco(self._path(c.test_images), self.root, categories)
        elif c.data_format == "yolo" and self._yolo_split_exists(split):
            coco = None
        elif c.data_format in ("darknet", "ultralytics") and split in self.descriptor().splits:
            coco = None
        else:
            return
        with file_lock(self.work / ".convert.lock"):  # processes sharing input/ convert once
            if path.exists():
                return
            if coco is not None:
                save_json(path, coco)
            elif c.data_format == "yolo":
                self._convert_yolo()
            else:
                L.export_descriptor_splits(self.descriptor(), self.root, path.parent)

    def descriptor(self) -> Any:
        """The darknet / Ultralytics descriptor (:class:`kagglekit.formats.yolo.YoloDataset`)."""
        return L.read_descriptor(self.cfg.data_format, self.root, self.cfg.data_file)

    def raw_coco(self, split: str) -> dict[str, Any] | None:
        """The split as the data defines it (class subset applied, no hold-out), or None."""
        if split not in self._raw:
            path = self.annotations_path(split)
            if self.cfg.data_format != "coco" or (split == "test" and self.cfg.test_images):
                if not path.exists():
                    self._convert(split, path)
            coco = C.load_coco(path) if path.exists() else None
            if coco is not None and self.cfg.class_subset:
                coco = subset_classes(coco, self.cfg.class_subset)
            self._raw[split] = coco
        return self._raw[split]

    def holdout_active(self) -> bool:
        """Fixed mode, ``val_fraction`` > 0 and no val split in the data."""
        if self.cfg.split_mode != "fixed" or self.cfg.val_fraction <= 0:
            return False
        if self.raw_coco("val") is not None:
            log.warning("val_fraction=%g ignored: the data has a val split", self.cfg.val_fraction)
            return False
        return self.raw_coco("train") is not None

    def coco(self, split: str) -> dict[str, Any] | None:
        """The split's COCO dict (class subset applied; in fixed mode with ``val_fraction`` and no
        val split, train and val are the two parts of the recorded hold-out), or None when the
        split does not exist."""
        if split not in self._coco:
            coco = self.raw_coco(split)
            if split in ("train", "val") and self.holdout_active():
                train = self.raw_coco("train")
                parts = L.holdout_ids(train, self.cfg.val_fraction, self.cfg.fold_seed, self.work / "holdout.csv")
                coco = select_images(train, parts[0] if split == "train" else parts[1])
            self._coco[split] = coco
        return self._coco[split]

    def image_dir(self, split: str) -> Path:
        """Where ``file_name``s of the split are relative to: ``image_dir`` when set (not for the
        ``test_images`` split), else what the conversion recorded (``images/<split>``, the root for
        split files and darknet / Ultralytics data, the ``test_images`` folder)."""
        if self.cfg.image_dir and not (split == "test" and self.cfg.test_images):
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
        train = self.coco("train")
        if train is None:
            raise FileNotFoundError(f"{self.annotations_path('train')}: no train split under {self.root} "
                                    f"(data_format={self.cfg.data_format}; a flat images/ + labels/ folder is "
                                    "data_format=darknet); k-fold needs the images to split")
        ids, presence = class_presence(train)
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
                raise FileNotFoundError(f"{self.annotations_path('val')}: no val split; add one, set val_fraction=0.2 "
                                        "(a seeded hold-out) or use split_mode=kfold")
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
                    fix = " or set val_fraction=0.2 / split_mode=kfold" if split == "val" else ""
                    problems.append(f"{self.annotations_path(split)}: {split} annotations not found (and no "
                                    f"{self.cfg.data_format} {split} split under {self.root}); add them, fix data_dir / "
                                    f"data_format{fix}")
                continue
            problems += coco_image_problems(coco, self.image_dir(split), str(self.annotations_path(split)))
        if not problems and not self.box_format().has("cls") and len(self.cat_ids) > 1:
            problems.append(f"submission_template {self.cfg.submission_template!r} has no {{cls}} but the data has "
                            f"{len(self.cat_ids)} classes; add {{cls}} or keep one class (class_subset)")
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
                            pretrained=any_pretrained(c.pretrained, c.init_weights))

    def build_model(self, initial_weights: bool = True) -> DetectionModel:
        c = self.cfg
        detector = build_detector(self.detector_spec())  # frozen BatchNorm when either file is configured
        if any_pretrained(c.pretrained, c.init_weights) and initial_weights:
            load_local_weights(detector, c.pretrained, c.init_weights)
        elif initial_weights:
            log.info("pretrained off: %s detector randomly initialised (set pretrained=<torchvision enum | file> "
                     "for the backbone or init_weights=<enum | file> for the whole model)", c.backbone)
        return DetectionModel(detector, c.train_min_sizes, c.test_min_size)

    def make_evaluator(self, valid_ds: DetectionDataset) -> DetectionEvaluator:
        return DetectionEvaluator(valid_ds.coco, self.cat_ids)

    # ---- fold epilogue ----------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model: DetectionModel, dataset: DetectionDataset, tta: bool) -> list[dict[str, Any]]:
        """COCO results for every image of ``dataset`` (TTA views merged when ``tta``)."""
        model = self.inference.prepare(model)
        results: list[dict[str, Any]] = []
        for i in tqdm(range(len(dataset)), desc="predict" + (" (TTA)" if tta else ""), leave=False):
            image = dataset.load_image(i).to(self.device)
            with self.inference.autocast():
                det = self._predict_image(model, image, tta)
            results += to_coco_results(det, dataset.images[i]["id"], self.cat_ids)
        return results

    def _predict_image(self, model: DetectionModel, image: torch.Tensor, tta: bool) -> dict[str, torch.Tensor]:
        """image (3, H, W) → {"boxes" (N, 4) xyxy pixels, "scores" (N,), "labels" (N,)}."""
        c = self.cfg
        if tta:
            return predict_tta(model.predictor(), image, c.tta_sizes, c.tta_flip, c.tta_merge,
                               iou_thr=c.tta_iou, max_dets=c.detections_per_image).to_dict()
        return model.predict_sized([image], c.test_min_size)[0]

    def tta_views(self, tta: bool) -> list[str]:
        """Names of the views :meth:`predict` merges (``m<min_size>[-flip]``)."""
        c = self.cfg
        views = make_detection_views(c.tta_sizes, c.tta_flip) if tta else [DetectionView(c.test_min_size, False)]
        return [v.name for v in views]

    def evaluate_split(self, results: list[dict[str, Any]], gt: dict[str, Any], out: Path, fold: int = -1,
                       tta_views: Sequence[str] = (), experiment: str | None = None) -> dict[str, Any]:
        """Write ``results`` as the records store ``out`` (``coco_instances_results.json`` +
        ``manifest.json``: every image of ``gt`` predicted, kind = the folder name, AP when ``gt``
        has annotations; ``experiment`` defaults to this config's name, ``fold`` -1 = experiment
        level) and ``results.json`` when ``gt`` has annotations; return COCO metrics (percent),
        per-class AP and prediction statistics."""
        image_ids = [im["id"] for im in gt["images"]]
        stats = prediction_stats(results, image_ids)
        m = coco_bbox_eval(gt, results) if gt["annotations"] else None
        write_records(out, results, RecordsManifest(
            experiment or self.cfg.name, fold, Path(out).name, "bbox", image_ids, self.cat_ids, tta_views=list(tta_views),
            metric_name=self.metric.name if m else "", metric=100.0 * float(m["AP"]) if m else None))
        if m is None:
            return {"stats": stats}
        save_json(out / "results.json", detectron2_results_json(m, self.class_names))
        per_class = {self.class_names[k]: 100.0 * v for k, v in m["per_class"].items()}
        return {**summary_percent(m, ""), "per_class": per_class, "stats": stats}

    def finalize(self, model: DetectionModel, fold: int, fold_dir: Path) -> dict[str, Any]:
        c = self.cfg
        _, _, valid, valid_dir = self.fold_split(fold)
        valid_ds = DetectionDataset(valid, valid_dir, train=False)
        out: dict[str, Any] = {}
        plain = self.predict(model, valid_ds, tta=False)
        out["val_plain"] = self.evaluate_split(plain, valid, fold_dir / "evaluation" / "val_plain", fold,
                                               self.tta_views(False))
        chosen = self.predict(model, valid_ds, tta=True) if c.tta_sizes else plain
        views = self.tta_views(bool(c.tta_sizes))
        out["val"] = self.evaluate_split(chosen, valid, fold_dir / "evaluation" / "val", fold, views)
        write_records(fold_dir / "oof", chosen, RecordsManifest(  # this fold's OOF (the ensemble reads it)
            c.name, fold, "oof", "bbox", [im["id"] for im in valid["images"]], self.cat_ids, tta_views=views,
            metric_name=self.metric.name, metric=out["val"].get("AP")))
        if self.predict_test(model, fold, fold_dir, out):
            test_dir = self.fold_test_path(fold_dir).parent
            results, manifest = read_records(test_dir, "bbox", require_manifest=True)
            out["test"] = self.evaluate_split(results, self.coco("test"), test_dir, fold, manifest.tta_views)
        out["tta"] = {"sizes": list(c.tta_sizes), "flip": c.tta_flip, "merge": c.tta_merge} if c.tta_sizes else None
        out["score"] = out["val"].get("AP")
        return out

    @staticmethod
    def fold_test_path(fold_dir: Path) -> Path:
        """The results file of the fold's test records store ``fold_dir/evaluation/test/``."""
        return records_path(fold_dir / "evaluation" / "test", "bbox")

    @staticmethod
    def read_fold_oof(fold_dir: Path, images: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The fold's OOF boxes (``oof/`` records store, or ``oof/detections.json`` of older outputs);
        with ``images``, ValueError when the store's manifest lists other images (a crash, another split)."""
        results, manifest = read_records(fold_dir / "oof", "bbox")
        if images is not None:
            require_image_ids(fold_dir / "oof", manifest, [im["id"] for im in images])
        return results

    def predict_test(self, model: DetectionModel, fold: int, fold_dir: Path, fold_metrics: dict[str, Any]) -> bool:
        """COCO results of the test split (TTA when configured) → the records store
        ``fold_dir/evaluation/test/`` (``coco_instances_results.json`` + ``manifest.json``)."""
        test = self.coco("test")
        if test is None:
            log.info("%s not found (and no YOLO test split under %s): no test split to predict",
                     self.annotations_path("test"), self.root)
            return False
        test_ds = DetectionDataset(test, self.image_dir("test"), train=False)
        tta = bool(self.cfg.tta_sizes)
        write_records(self.fold_test_path(fold_dir).parent, self.predict(model, test_ds, tta=tta), RecordsManifest(
            self.cfg.name, fold, "test", "bbox", [im["id"] for im in test_ds.images], self.cat_ids,
            tta_views=self.tta_views(tta)))
        return True

    def final_checkpoint(self, fold_dir: Path, fold_metrics: dict[str, Any]) -> Path:
        return fold_dir / "checkpoints" / "best.pt"

    def report_fold(self, fold_dir: Path, history: pd.DataFrame, metrics: dict[str, Any]) -> None:
        from kagglekit.tasks.detection.report import write_fold_report
        errors = self.error_analysis(fold_dir, int(metrics.get("fold", 0)))
        write_fold_report(fold_dir, self.cfg, history, metrics, self.compare_metrics(), errors)

    def error_analysis(self, fold_dir: Path, fold: int) -> str:
        """The fold report's error analysis of its OOF boxes vs the fold's validation ground truth
        (:func:`kagglekit.tasks.detection.report.error_analysis_section`); when the inputs cannot be
        read, one section saying why (the report is written either way)."""
        from kagglekit.tasks.detection.report import error_analysis_section
        try:
            _, _, valid, valid_dir = self.fold_split(fold)
            results = self.read_fold_oof(fold_dir, valid["images"])
        except (OSError, ValueError) as exc:
            log.warning("error analysis of %s not drawn: %s", fold_dir, exc)
            return f"## Error analysis\nNot drawn: {exc}\n"
        return error_analysis_section(fold_dir, self.cfg.name, fold, valid, results, valid_dir, self.cat_ids,
                                      self.class_names)

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
        dirs = [self.fold_test_path(exp_dir / f"fold{k}").parent for k in range(self.cfg.n_folds)]
        if test is None or not all(has_records(d, "bbox") for d in dirs):
            return None
        folds = []
        for d in dirs:
            results, manifest = read_records(d, "bbox")
            require_image_ids(d, manifest, [im["id"] for im in test["images"]])
            folds.append(results)
        if self.cfg.split_mode == "fixed":
            return folds[0]
        from kagglekit.tasks.detection.blend import by_image, fuse
        members = [by_image(f, self.cat_ids) for f in folds]
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
        return write_box_submission(results, test["images"], self.class_tokens(), path, self.box_format())

    # ---- submission format ------------------------------------------------------------------
    def box_format(self) -> BoxFormat:
        """The competition's box layout from the config's ``submission_*`` fields."""
        c = self.cfg
        try:
            return BoxFormat(c.submission_template, c.submission_id_column, c.submission_pred_column, c.submission_empty,
                             c.submission_image_id, c.submission_coords)
        except ValueError as exc:
            raise ValueError(f"submission_* config: {exc}") from None

    def class_tokens(self) -> dict[int, str]:
        """``{category_id: class token}`` written in the file (``submission_class``): the COCO
        category id, the id of the data's own label files (YOLO-family data: ``category_id - 1``,
        the 0-based class index; COCO data: the category id), or the name (spaces → ``_``)."""
        how = self.cfg.submission_class
        if how == "name":
            return {cid: "_".join(name.split()) for cid, name in self.class_names.items()}
        offset = 1 if how == "source_id" and self.cfg.data_format != "coco" else 0
        return {cid: str(cid - offset) for cid in self.cat_ids}

    def _sizes(self, coco: dict[str, Any] | None) -> dict[str, tuple[int, int]]:
        fmt = self.box_format()
        return {fmt.key(im): (im["width"], im["height"]) for im in (coco or {}).get("images", [])}

    def validate_submission(self, path: Path, reference: Path | None = None) -> list[str]:
        """The file in the experiment's :meth:`box_format` against the test images (their sizes:
        boxes inside each image) or ``reference``'s id column."""
        fmt = self.box_format()
        try:
            frame = read_box_submission(Path(path), fmt)
        except (OSError, ValueError) as exc:
            return [f"{path}: cannot read the CSV ({exc})"]
        test = self.coco("test")
        if reference:
            sample = pd.read_csv(reference, dtype=str, keep_default_na=False)
            if fmt.id_column not in sample.columns:
                return [f"{reference}: no {fmt.id_column!r} column (has {list(sample.columns)})"]
            ids = sample[fmt.id_column].tolist()
        elif test is None:
            return ["this experiment's data has no test split; pass the sample submission as the reference"]
        else:
            ids = [fmt.key(im) for im in test["images"]]
        return box_submission_problems(frame, ids, self.class_tokens(), fmt, self._sizes(test))

    def solution_coco(self, solution: Path) -> dict[str, Any]:
        """Held-out labels as COCO: a COCO instances JSON, a split name of the data (``val``,
        ``test``), or (YOLO-family data) an image folder / list file with YOLO labels."""
        solution = Path(solution)
        if not solution.exists() and str(solution) in ("train", "val", "test"):
            gt = self.coco(str(solution))
            if gt is None:
                raise FileNotFoundError(f"the data has no {solution} split to score against")
            return gt
        if solution.suffix.lower() == ".json":
            gt = C.load_coco(solution)
        elif self.cfg.data_format == "coco":
            raise ValueError(f"{solution}: expected a COCO instances JSON as the solution")
        else:
            from kagglekit.formats.yolo import label_file, list_image_files, read_list_file
            paths = list_image_files(solution) if solution.is_dir() else read_list_file(solution, [solution.parent, self.root])
            base = solution if solution.is_dir() else self.root
            pairs = [(p.relative_to(base).as_posix() if p.is_relative_to(base) else p.as_posix(), p, label_file(p)) for p in paths]
            gt = C.pairs_to_coco(pairs, self.yolo_names(), {"description": f"solution {solution}"})
        return subset_classes(gt, self.cfg.class_subset) if self.cfg.class_subset else gt

    def yolo_names(self) -> list[str]:
        """Class names in YOLO class-id order of YOLO-family data."""
        if self.cfg.data_format == "yolo":
            names_file = next((p for p in (self.root / "classes.txt", self.root / "data.yaml") if p.exists()), None)
            if names_file is None:
                raise FileNotFoundError(f"{self.root}: no classes.txt or data.yaml; a YOLO dataset needs its class names")
            return C.read_class_names(names_file)
        return list(self.descriptor().names)

    def _solution_categories(self, results: list[dict[str, Any]], gt: dict[str, Any]) -> list[dict[str, Any]]:
        """The experiment's category ids → the solution's, by name when the two number them differently."""
        by_name = {c["name"]: c["id"] for c in gt["categories"]}
        mapping = {cid: by_name.get(name) for cid, name in self.class_names.items()}
        if all(mapping[cid] == cid for cid in mapping):
            return results
        if not any(v is not None for v in mapping.values()):
            raise ValueError(f"the solution's categories {sorted(by_name)[:10]} share no name with the experiment's "
                             f"classes {sorted(self.class_names.values())[:10]}")
        return [{**r, "category_id": mapping[r["category_id"]]} for r in results if mapping.get(r["category_id"]) is not None]

    def score_submission(self, path: Path, solution: Path) -> dict[str, Any]:
        """A file in the experiment's :meth:`box_format` (validated against the solution's images:
        problems → ``SubmissionError``) → COCO results → COCO bbox AP (%) against ``solution``
        (:meth:`solution_coco`), as :func:`kagglekit.metrics.detection.coco_bbox_eval` computes it."""
        from kagglekit.submission.rle import SubmissionError
        fmt, tokens, gt = self.box_format(), self.class_tokens(), self.solution_coco(solution)
        try:
            frame = read_box_submission(Path(path), fmt)
        except (OSError, ValueError) as exc:
            raise SubmissionError(f"{path}: cannot read the CSV ({exc})", [f"cannot read the CSV ({exc})"]) from None
        if problems := box_submission_problems(frame, [fmt.key(im) for im in gt["images"]], tokens, fmt, self._sizes(gt)):
            raise SubmissionError("\n".join([f"{path} has {len(problems)} problem(s):", *problems]), problems)
        results = self._solution_categories(parse_box_submission(frame, gt["images"], tokens, fmt), gt)
        m = coco_bbox_eval(gt, results)
        return {self.metric.name: 100.0 * float(m["AP"]), **summary_percent(m, ""),
                "images": len(gt["images"]), "boxes": len(results)}

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
        valid_images = [self.fold_split(k)[2]["images"] for k in range(n)]
        oof = [r for k in range(n) for r in self.read_fold_oof(exp_dir / f"fold{k}", valid_images[k])]
        train = self.coco("train")
        covered = sorted({im["id"] for images in valid_images for im in images})
        views = self.tta_views(bool(self.cfg.tta_sizes))
        summary["val"] = self.evaluate_split(oof, select_images(train, covered), exp_dir / "evaluation" / "oof",
                                             tta_views=views)
        summary["fold_AP"] = [f["val"].get("AP") for f in folds]
        fused = self.test_detections(exp_dir)  # the fold models' test boxes, WBF-fused
        if fused is not None:
            summary["test"] = self.evaluate_split(fused, self.coco("test"), exp_dir / "evaluation" / "test",
                                                  tta_views=views)
        return summary
