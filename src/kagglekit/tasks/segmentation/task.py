"""The segmentation Task: what the engine needs (datasets, model, evaluator) and the fold /
experiment epilogues (TTA + temperature search + OOF store, test predictions, submission, report)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from kagglekit.experiment.setup import workspace_for
from kagglekit.calibrate import search_temperature, temperature_table
from kagglekit.cv import fold_ids, get_or_make_folds
from kagglekit.metrics.segmentation import ConfusionMatrix, iou_from_confusion
from kagglekit.experiment.contract import MetricSpec
from kagglekit.store.arrays import Manifest, PredictionWriter
from kagglekit.tasks.segmentation import data as D
from kagglekit.tasks.segmentation import finish
from kagglekit.tasks.segmentation import predict as P
from kagglekit.formats.images import image_hw
from kagglekit.tasks.segmentation.classes import ClassTable, class_table
from kagglekit.tasks.segmentation.config import SegmentationConfig
from kagglekit.tasks.segmentation.source import SplitFiles, has_split, split_files_for, split_marker
from kagglekit.tasks.segmentation.submission import mask_format, rle_labels
from kagglekit.tasks.segmentation.model import LossSpec, build_segmentation_model
from kagglekit.tta.segmentation import make_views

log = logging.getLogger("kagglekit.segmentation")


def majority_class_miou(matrix: np.ndarray) -> float:
    """mIoU of predicting the most frequent target class everywhere: the chance level to beat
    (IoU of that class = its pixel share; every other class present scores 0)."""
    totals = matrix.sum(1)
    present = int((totals > 0).sum())
    return float(totals.max() / max(1, totals.sum()) / max(1, present))


class SegmentationEvaluator:
    """Per-epoch validation: streaming confusion of argmax(logits) vs the (resized) mask."""

    def __init__(self, num_classes: int) -> None:
        self.cm = ConfusionMatrix(num_classes, ignore_index=D.IGNORE_INDEX)

    def update(self, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> None:
        pred = outputs["logits"].argmax(1).to(torch.uint8).cpu().numpy()
        self.cm.update(pred, batch["mask"].cpu().numpy().astype(np.uint8))

    def compute(self) -> dict[str, float]:
        result = self.cm.compute()
        return {"valid_miou": float(result["miou"]), "valid_pixel_acc": float(result["pixel_acc"])}


class SegmentationTask:
    """The segmentation side of :class:`kagglekit.experiment.contract.Task`."""

    metric = MetricSpec("mIoU", "max", fold_key="oof_miou")

    def __init__(self, cfg: SegmentationConfig) -> None:
        self.cfg = cfg
        self.workspace = workspace_for(cfg)
        self.root, self.device, self.inference = self.workspace.root, self.workspace.device, self.workspace.inference

    # ---- data -------------------------------------------------------------------------------
    def prepare_demo(self) -> None:
        if not (self.root / "train.csv").exists():
            from kagglekit.demo.nyuv2 import generate_nyuv2
            log.info("demo: generating procedural RGB-D rooms into %s", self.root)
            generate_nyuv2(self.root, n_train=self.cfg.demo_train, n_test=self.cfg.demo_test, seed=0)

    def table(self) -> ClassTable:
        """Competition class ids ↔ model indices (config: class_ids / classes_csv / ignore_ids)."""
        c = self.cfg
        csv = str(self.root / c.classes_csv) if c.classes_csv and not Path(c.classes_csv).is_absolute() else c.classes_csv
        return class_table(c.num_classes, c.class_ids, c.class_names, c.ignore_ids, csv)

    def mask_format(self):
        return mask_format(self.cfg)

    def split_files(self, split: str) -> SplitFiles:
        if not has_split(self.cfg, self.root, split):
            hint = ("build it with the converter (python -m kagglekit.tasks.segmentation.convert) or run with --demo"
                    if self.cfg.layout == "nyuv2" else f"set {split}_images to the folder of the {split} images")
            raise FileNotFoundError(f"{self.root}: no {split} split ({split}.csv / {split} image folder); {hint}")
        return split_files_for(self.cfg, self.root, split)

    def _ids(self, split: str) -> list[str]:
        return list(self.split_files(split).ids)

    def folds(self) -> pd.DataFrame:
        frame = pd.DataFrame({"id": self._ids("train")})
        return get_or_make_folds(self.workspace.folds_csv, frame, "id", self.cfg.n_folds,
                                 self.cfg.fold_strategy, seed=self.cfg.fold_seed)

    def _dataset(self, ids: Sequence[str], split: str, train: bool, with_labels: bool = True) -> D.SegmentationDataset:
        c = self.cfg
        transform = (D.build_train_transform((c.input_h, c.input_w), (c.crop_h, c.crop_w), (c.scale_min, c.scale_max), c.hflip_p)
                     if train else D.build_valid_transform((c.infer_h, c.infer_w)))
        files, table = self.split_files(split).subset(ids), self.table()
        readers = D.nyuv2_readers(max(table.ids)) if c.layout == "nyuv2" else D.GENERIC_READERS
        labels = rle_labels(files, c, self.mask_format()) if files.masks_csv is not None and with_labels else None
        return D.SegmentationDataset(files, table, transform, c.use_depth_input, with_labels, readers, labels)

    def preflight(self, fold: int) -> list[str]:
        """Every problem with the files fold ``fold`` reads: every train frame (its training and
        validation frames; mask values in the class table) and, with predict_test, the test frames."""
        splits = ["train"] + (["test"] if self.cfg.predict_test else [])
        problems: list[str] = []
        for split in splits:
            try:
                dataset = self._dataset(self._ids(split), split, False, with_labels=split == "train")
            except (FileNotFoundError, ValueError) as exc:
                problems.append(str(exc))
                continue
            problems += D.preflight_dataset(dataset, strict_nyuv2=self.cfg.layout == "nyuv2")
        return problems

    def fold_datasets(self, fold: int):
        train_ids, valid_ids = fold_ids(self.folds(), fold, "id")
        return self._dataset(train_ids, "train", True), self._dataset(valid_ids, "train", False)

    # ---- model ------------------------------------------------------------------------------
    def build_model(self, initial_weights: bool = True) -> torch.nn.Module:
        c = self.cfg
        if c.class_weights and len(c.class_weights) != c.num_classes:
            raise ValueError(f"class_weights has {len(c.class_weights)} values; need {c.num_classes} (one per class)")
        loss = LossSpec(D.IGNORE_INDEX, tuple(c.class_weights) or None, c.boundary_weight, c.depth_loss_weight)
        depth_head = c.depth_aux and (c.layout == "nyuv2" or bool(c.train_depth))  # no depth data: no depth head
        return build_segmentation_model(c.arch, c.backbone, 4 if c.use_depth_input else 3, self.table().num_classes,
                                        loss, depth_head, c.pretrained if initial_weights else "")

    def make_evaluator(self, valid_ds: Any = None) -> SegmentationEvaluator:
        return SegmentationEvaluator(self.cfg.num_classes)

    # ---- fold epilogue: TTA, temperature, OOF, test -------------------------------------------
    def _tta(self) -> P.TTASpec:
        c = self.cfg
        return P.TTASpec(tuple(make_views(c.tta_scales, c.tta_flip)), tuple(c.temperatures), c.tta_average)

    def _forward(self, model: torch.nn.Module):
        """images (B, C, H, W) → logits (B, K, H, W) float32 (the shared inference set-up)."""
        return self.inference.forward(model, "logits")

    def _target_loader(self, dataset: D.SegmentationDataset):
        """id → target (H, W) uint8 at the original resolution (untransformed mask)."""
        def load(frame_id: str) -> torch.Tensor:
            mask, where = dataset._mask(frame_id)
            return torch.from_numpy(dataset.table.to_target(mask, where))
        return load

    def _store_layout(self, dataset: D.SegmentationDataset) -> tuple[tuple[int, int], list[list[int]]]:
        """(store (h, w), per-image sizes): one size for all images → ``oof_scale`` of it (the
        seed's layout); sizes that vary → ``oof_scale`` of the inference size, each image's own
        size recorded in the manifest."""
        from kagglekit.experiment.preflight import parallel_map
        sizes = parallel_map(lambda i: image_hw(dataset.files.images[i]), dataset.ids)
        if len(set(sizes)) == 1:
            return P.scaled_hw(sizes[0], self.cfg.oof_scale), []
        return P.scaled_hw((self.cfg.infer_h, self.cfg.infer_w), self.cfg.oof_scale), [list(s) for s in sizes]

    def _manifest(self, fold: int, kind: str, dataset: D.SegmentationDataset, t: float = 1.0) -> Manifest:
        c, table = self.cfg, self.table()
        (h, w), sizes = self._store_layout(dataset)
        orig_hw = sizes[0] if sizes else list(image_hw(dataset.files.images[dataset.ids[0]]))
        return Manifest(c.name, fold, kind, list(table.names), c.oof_scale, c.oof_dtype, [len(dataset), table.num_classes, h, w],
                        list(orig_hw), [v.name for v in self._tta().views], t, orig_sizes=sizes)

    def _loader(self, dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=self.cfg.valid_batch_size, shuffle=False, num_workers=self.workspace.num_workers,
                          pin_memory=self.device.type == "cuda")

    def finalize(self, model: torch.nn.Module, fold: int, fold_dir: Path) -> dict[str, Any]:
        _, valid_ids = fold_ids(self.folds(), fold, "id")
        dataset = self._dataset(valid_ids, "train", False)
        tta, forward, manifest = self._tta(), self._forward(model), self._manifest(fold, "oof", dataset)
        passes = P.ValidationPasses(forward, lambda: self._loader(dataset), self._target_loader(dataset), tta, manifest,
                                    fold_dir / "oof", self.device)
        try:  # the grid is widened while its best T is at an edge (each widening: one more TTA pass)
            search = search_temperature(passes, tta.temperatures)
        except BaseException:
            passes.abort()
            raise
        passes.commit(search.best, "miou", search.score)
        confusions = passes.confusions
        table = temperature_table({t: cm.matrix for t, cm in confusions.items()})
        metrics = self._confusion_metrics(confusions[search.best].matrix, table, search.best)
        metrics["confusion_by_temperature"] = {f"{t:g}": cm.matrix.tolist() for t, cm in confusions.items()}
        metrics["temperature_search"] = search.summary("mIoU")
        if self.cfg.predict_test and not self.predict_test(model, fold, fold_dir, metrics):
            self._ids("test")  # raises: predict_test=true needs test.csv
        return metrics

    def _confusion_metrics(self, matrix: np.ndarray, table: pd.DataFrame, best_t: float) -> dict[str, Any]:
        miou, per_class = iou_from_confusion(matrix)
        names = self.table().names
        return {"oof_miou": float(miou), "chance_miou": majority_class_miou(matrix), "best_temperature": float(best_t),
                "oof_pixel_acc": float(np.trace(matrix) / max(1, matrix.sum())),
                "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, per_class)},
                "temperature_table": table.to_dict(orient="records"),
                "tta_views": [v.name for v in self._tta().views]}

    def predict_test(self, model: torch.nn.Module, fold: int, fold_dir: Path, fold_metrics: dict[str, Any]) -> bool:
        """Test TTA at the fold's OOF-chosen temperature → ``fold_dir/test`` (False: no test.csv)."""
        if not has_split(self.cfg, self.root, "test"):
            log.info("%s not found: no test split to predict", split_marker(self.cfg, self.root, "test"))
            return False
        self._predict_test(self._forward(model), fold, fold_dir, float(fold_metrics["best_temperature"]))
        return True

    def final_checkpoint(self, fold_dir: Path, fold_metrics: dict[str, Any]) -> Path:
        return fold_dir / "checkpoints" / "best.pt"

    def _predict_test(self, forward, fold: int, fold_dir: Path, temperature: float) -> None:
        dataset = self._dataset(self._ids("test"), "test", False, with_labels=False)
        manifest = self._manifest(fold, "test", dataset, temperature)
        with PredictionWriter(fold_dir / "test", manifest, with_targets=False) as writer:
            P.predict_test(forward, self._loader(dataset), self._tta(), temperature, tuple(manifest.shape[2:]), writer,
                           self.device)

    # ---- reports and the experiment epilogue ---------------------------------------------------
    def image_reader(self) -> Callable[[str], np.ndarray]:
        """Train image id → (H, W, 3) uint8 RGB, read as the layout's dataset reads it (reports)."""
        files = self.split_files("train")
        readers = D.nyuv2_readers(max(self.table().ids)) if self.cfg.layout == "nyuv2" else D.GENERIC_READERS
        return lambda frame_id: readers.image(files.images[frame_id])

    def report_fold(self, fold_dir: Path, history: pd.DataFrame, metrics: dict[str, Any]) -> None:
        from kagglekit.tasks.segmentation.report import write_fold_report
        write_fold_report(self.cfg, fold_dir, history, metrics, read_image=self.image_reader())

    def score_experiment(self, exp_dir: Path, fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return finish.score_experiment(self, exp_dir, fold_metrics)

    def write_submission(self, exp_dir: Path, summary: dict[str, Any], path: Path) -> Path | None:
        return self.write_blend_submission([self], [exp_dir], [1.0], summary, path)

    def write_blend_submission(self, tasks: Sequence["SegmentationTask"], member_dirs: Sequence[Path], weights: Any,
                               decisions: dict[str, Any], path: Path) -> Path | None:
        """argmax of Σ wᵢ · (member i's fold-mean test probabilities) at the test images' size,
        validated against ``sample_submission.csv``; no decisions read (each fold's temperature
        was applied when its test store was written)."""
        return finish.write_blended_submission(self, tasks, member_dirs, weights, path)

    def test_sizes(self) -> dict[str, tuple[int, int]]:
        """Test id → (H, W) of its image (file headers)."""
        from kagglekit.tasks.segmentation.submission import image_sizes
        return image_sizes(self.split_files("test"))

    def sample_path(self, reference: Path | None = None) -> Path:
        return Path(reference) if reference else self.root / self.cfg.sample_submission

    def validate_submission(self, path: Path, reference: Path | None = None) -> list[str]:
        """NYUv2: against ``sample_submission.csv`` (or ``reference``) at the test images' size;
        rle: the configured format at each test image's own size (+ the sample's columns)."""
        return finish.validation_problems(self, Path(path), self.sample_path(reference), self.test_sizes())

    def score_submission(self, path: Path, solution: Path) -> dict[str, Any]:
        """The file decoded at each test image's size → mIoU against ``solution`` (a mask folder
        or an RLE CSV in the configured format) over the class table."""
        return finish.score_submission(self, Path(path), Path(solution))

    def report_experiment(self, exp_dir: Path, summary: dict[str, Any], fold_metrics: Sequence[dict[str, Any]]) -> None:
        finish.report_experiment(self, exp_dir, summary, fold_metrics)

    def blend_objective(self, tasks: Sequence["SegmentationTask"], member_dirs: Sequence[Path],
                        max_pixels_per_image: int | None = 4096, seed: int = 0) -> finish.SegmentationBlend:
        return finish.SegmentationBlend(tasks, member_dirs, max_pixels_per_image, seed)
