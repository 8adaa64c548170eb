"""The segmentation Task: what the engine needs (datasets, model, evaluator) and the fold /
experiment epilogues (TTA + temperature search + OOF store, test predictions, submission, report)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from kagglekit import paths
from kagglekit.calibrate import best_temperature, temperature_table
from kagglekit.cv import fold_ids, get_or_make_folds
from kagglekit.engine.distributed import local_device
from kagglekit.engine.fit import amp_dtype
from kagglekit.metrics.segmentation import ConfusionMatrix, iou_from_confusion
from kagglekit.experiment.contract import MetricSpec
from kagglekit.oof import Manifest, PredictionWriter
from kagglekit.tasks.segmentation import data as D
from kagglekit.tasks.segmentation import finish
from kagglekit.tasks.segmentation import predict as P
from kagglekit.tasks.segmentation.config import SegmentationConfig
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
        self.root = Path(cfg.data_dir) if cfg.data_dir else paths.input_root() / cfg.comp
        self.device = local_device(cfg.device)

    # ---- data -------------------------------------------------------------------------------
    def prepare_demo(self) -> None:
        if not (self.root / "train.csv").exists():
            from kagglekit.demo.nyuv2 import generate_nyuv2
            log.info("demo: generating procedural RGB-D rooms into %s", self.root)
            generate_nyuv2(self.root, n_train=self.cfg.demo_train, n_test=self.cfg.demo_test, seed=0)

    def _ids(self, split: str) -> list[str]:
        path = self.root / f"{split}.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path} not found; build input/{self.cfg.comp} with the converter "
                                    "(python -m kagglekit.tasks.segmentation.convert) or run with --demo")
        return pd.read_csv(path, dtype={"id": str})["id"].tolist()

    def folds(self) -> pd.DataFrame:
        frame = pd.DataFrame({"id": self._ids("train")})
        return get_or_make_folds(self.root / "folds.csv", frame, "id", self.cfg.n_folds,
                                 self.cfg.fold_strategy, seed=self.cfg.fold_seed)

    def _dataset(self, ids: Sequence[str], split: str, train: bool, with_labels: bool = True) -> D.NYUv2Dataset:
        c = self.cfg
        transform = (D.build_train_transform((c.input_h, c.input_w), (c.crop_h, c.crop_w), (c.scale_min, c.scale_max), c.hflip_p)
                     if train else D.build_valid_transform((c.infer_h, c.infer_w)))
        return D.NYUv2Dataset(self.root, list(ids), split=split, transform=transform,
                              use_depth_input=c.use_depth_input, with_labels=with_labels)

    def preflight(self, fold: int) -> list[str]:
        """Every problem with the files fold ``fold`` reads: all of train.csv (its training and
        validation frames; labels in 0..num_classes) and, with predict_test, test.csv's frames."""
        problems = D.preflight_split(self.root, "train", self.cfg.num_classes, with_labels=True)
        if self.cfg.predict_test:
            problems += D.preflight_split(self.root, "test", self.cfg.num_classes, with_labels=False)
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
        return build_segmentation_model(c.arch, c.backbone, 4 if c.use_depth_input else 3, c.num_classes, loss,
                                        c.depth_aux, c.pretrained if initial_weights else "")

    def make_evaluator(self, valid_ds: Any = None) -> SegmentationEvaluator:
        return SegmentationEvaluator(self.cfg.num_classes)

    # ---- fold epilogue: TTA, temperature, OOF, test -------------------------------------------
    def _tta(self) -> P.TTASpec:
        c = self.cfg
        return P.TTASpec(tuple(make_views(c.tta_scales, c.tta_flip)), tuple(c.temperatures), c.tta_average)

    def _forward(self, model: torch.nn.Module):
        model = model.to(self.device).eval()
        dtype = amp_dtype(self.cfg.amp, self.device)  # None on CPU: autocast below is then a no-op
        channels_last = self.cfg.channels_last and self.device.type == "cuda"

        def forward(x: torch.Tensor) -> torch.Tensor:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None):
                return model({"image": x})["logits"]
        return forward

    def _load_targets(self, split: str):
        def load(ids: Sequence[str]) -> torch.Tensor:
            labels = [D.read_label(self.root / split / "label" / f"{i}.png") for i in ids]
            return torch.from_numpy(np.stack([D.label_to_target(lab) for lab in labels]))
        return load

    def _manifest(self, fold: int, kind: str, n: int, orig_hw: tuple[int, int], t: float = 1.0) -> Manifest:
        c = self.cfg
        h, w = P.scaled_hw(orig_hw, c.oof_scale)
        return Manifest(c.name, fold, kind, list(D.NYUV2_CLASSES[: c.num_classes]), c.oof_scale, c.oof_dtype,
                        [n, c.num_classes, h, w], list(orig_hw), [v.name for v in self._tta().views], t)

    def _loader(self, dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=self.cfg.valid_batch_size, shuffle=False, num_workers=self.cfg.num_workers)

    def finalize(self, model: torch.nn.Module, fold: int, fold_dir: Path) -> dict[str, Any]:
        _, valid_ids = fold_ids(self.folds(), fold, "id")
        dataset = self._dataset(valid_ids, "train", False)
        orig_hw = tuple(int(v) for v in dataset[0]["orig_size"])
        tta, forward = self._tta(), self._forward(model)
        candidates = P.open_candidates(fold_dir / "oof", self._manifest(fold, "oof", len(valid_ids), orig_hw), tta.temperatures)
        try:
            confusions = P.predict_validation(forward, self._loader(dataset), self._load_targets("train"), tta,
                                              self.cfg.num_classes, self.cfg.oof_scale, candidates, self.device)
        except BaseException:
            for writer in candidates.values():
                writer.abort()
            raise
        table = temperature_table({t: cm.matrix for t, cm in confusions.items()})
        best_t, best_miou = best_temperature(table)
        P.keep_best_candidate(candidates, best_t, "miou", best_miou)
        metrics = self._confusion_metrics(confusions[best_t].matrix, table, best_t)
        metrics["confusion_by_temperature"] = {f"{t:g}": cm.matrix.tolist() for t, cm in confusions.items()}
        if self.cfg.predict_test and not self.predict_test(model, fold, fold_dir, metrics):
            self._ids("test")  # raises: predict_test=true needs test.csv
        return metrics

    def _confusion_metrics(self, matrix: np.ndarray, table: pd.DataFrame, best_t: float) -> dict[str, Any]:
        miou, per_class = iou_from_confusion(matrix)
        names = D.NYUV2_CLASSES[: self.cfg.num_classes]
        return {"oof_miou": float(miou), "chance_miou": majority_class_miou(matrix), "best_temperature": float(best_t),
                "oof_pixel_acc": float(np.trace(matrix) / max(1, matrix.sum())),
                "per_class_iou": {n: (None if np.isnan(v) else float(v)) for n, v in zip(names, per_class)},
                "temperature_table": table.to_dict(orient="records"),
                "tta_views": [v.name for v in self._tta().views]}

    def predict_test(self, model: torch.nn.Module, fold: int, fold_dir: Path, fold_metrics: dict[str, Any]) -> bool:
        """Test TTA at the fold's OOF-chosen temperature → ``fold_dir/test`` (False: no test.csv)."""
        if not (self.root / "test.csv").exists():
            log.info("%s not found: no test split to predict", self.root / "test.csv")
            return False
        self._predict_test(self._forward(model), fold, fold_dir, float(fold_metrics["best_temperature"]))
        return True

    def final_checkpoint(self, fold_dir: Path, fold_metrics: dict[str, Any]) -> Path:
        return fold_dir / "checkpoints" / "best.pt"

    def _predict_test(self, forward, fold: int, fold_dir: Path, temperature: float) -> None:
        ids = self._ids("test")
        dataset = self._dataset(ids, "test", False, with_labels=False)
        orig_hw = tuple(int(v) for v in dataset[0]["orig_size"])
        manifest = self._manifest(fold, "test", len(ids), orig_hw, temperature)
        with PredictionWriter(fold_dir / "test", manifest, with_targets=False) as writer:
            P.predict_test(forward, self._loader(dataset), self._tta(), temperature, self.cfg.oof_scale, writer, self.device)

    # ---- reports and the experiment epilogue ---------------------------------------------------
    def report_fold(self, fold_dir: Path, history: pd.DataFrame, metrics: dict[str, Any]) -> None:
        from kagglekit.tasks.segmentation.report import write_fold_report
        write_fold_report(self.cfg, fold_dir, history, metrics)

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

    def validate_submission(self, path: Path, reference: Path | None = None) -> list[str]:
        """Against ``sample_submission.csv`` (or ``reference``) at the test images' own size."""
        test_ids = self._ids("test")
        shape = tuple(int(v) for v in self._dataset(test_ids[:1], "test", False, with_labels=False)[0]["orig_size"])
        return finish.validation_problems(Path(path), Path(reference or self.root / "sample_submission.csv"), shape)

    def report_experiment(self, exp_dir: Path, summary: dict[str, Any], fold_metrics: Sequence[dict[str, Any]]) -> None:
        finish.report_experiment(self, exp_dir, summary, fold_metrics)

    def blend_objective(self, tasks: Sequence["SegmentationTask"], member_dirs: Sequence[Path],
                        max_pixels_per_image: int | None = 4096, seed: int = 0) -> finish.SegmentationBlend:
        return finish.SegmentationBlend(tasks, member_dirs, max_pixels_per_image, seed)
