"""Segmentation's side of the experiment lifecycle: fold confusions summed into the experiment's
OOF mIoU (temperature re-chosen on the sum), the fold-averaged test submission, the report, and
the ensemble objective (SLSQP/greedy on the blended OOF probabilities)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from kagglekit.calibrate import best_temperature, temperature_table
from kagglekit.ensemble import SegmentationBlendObjective
from kagglekit.oof import OOFError, StoredPredictions, iter_blended_test_mean, merged_oof, missing_stores, read_predictions
from kagglekit.submission import nyuv2 as nyu
from kagglekit.submission.rle import SubmissionError
from kagglekit.submission.validate import validate, write_submission


def upsampled_labels(chunks: Iterable[tuple[list[str], np.ndarray]], orig_hw: tuple[int, int]) -> Iterator[tuple[str, np.ndarray]]:
    """(ids, probs (B, C, h, w)) chunks → (id, NYUv2 label map (H, W) uint8 in 1..C) at ``orig_hw``."""
    for ids, probs in chunks:
        p = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32))
        if tuple(p.shape[-2:]) != tuple(orig_hw):
            p = F.interpolate(p, size=tuple(orig_hw), mode="bilinear", align_corners=False)
        labels = (p.argmax(1) + 1).to(torch.uint8).numpy()
        yield from zip(ids, labels)


def write_segmentation_submission(chunks: Iterable[tuple[list[str], np.ndarray]], orig_hw: tuple[int, int],
                                  sample_csv: Path, out_path: Path) -> Path:
    """Validate against ``sample_csv`` and write atomically (nothing is written if invalid)."""
    pairs = list(upsampled_labels(chunks, orig_hw))
    frame = nyu.nyuv2_submission([i for i, _ in pairs], [lab for _, lab in pairs], shape=tuple(orig_hw))
    return write_submission(frame, out_path, sample_csv, image_shape=tuple(orig_hw), overwrite=True)


def validation_problems(path: Path, sample_csv: Path, image_shape: tuple[int, int]) -> list[str]:
    """Every problem of submission ``path`` against ``sample_csv`` (empty: valid)."""
    try:
        validate(path, sample_csv, image_shape=tuple(image_shape))
    except SubmissionError as exc:
        return list(exc.problems) or [str(exc)]
    return []


def score_experiment(task: Any, exp_dir: Path, fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Confusions of all folds summed per temperature → best T → OOF mIoU; merged OOF written."""
    cfg = task.cfg
    temps = fold_metrics[0]["confusion_by_temperature"].keys()
    summed = {float(t): sum(np.asarray(f["confusion_by_temperature"][t], dtype=np.int64) for f in fold_metrics)
              for t in temps}
    table = temperature_table(summed)
    best_t, _ = best_temperature(table)
    summary = task._confusion_metrics(summed[best_t], table, best_t)
    merged = merged_oof(exp_dir, task.folds()["id"].astype(str).tolist(), cfg.n_folds)
    return {"cv": summary["oof_miou"], **summary, "oof_path": str(merged.probs.filename),
            "fold_miou": [f["oof_miou"] for f in fold_metrics], "confusion": summed[best_t].tolist()}


def test_image_shape(exp_dir: Path) -> tuple[int, int]:
    """(H, W) the test predictions are written back to (from fold 0's test manifest)."""
    return tuple(read_predictions(exp_dir / "fold0" / "test").manifest.orig_hw)


def write_blended_submission(task: Any, tasks: Sequence[Any], member_dirs: Sequence[Path], weights: Any,
                             path: Path) -> Path | None:
    """Σ wᵢ · (member i's fold-mean test probabilities), chunk by chunk → the validated NYUv2
    submission (None when a member has no test predictions)."""
    if any(missing_stores(d, t.cfg.n_folds, "test") for t, d in zip(tasks, member_dirs)):
        return None
    chunks = iter_blended_test_mean(member_dirs, [t.cfg.n_folds for t in tasks], weights)
    return write_segmentation_submission(chunks, test_image_shape(member_dirs[0]), task.root / "sample_submission.csv", path)


def report_experiment(task: Any, exp_dir: Path, summary: dict[str, Any], fold_metrics: Sequence[dict[str, Any]]) -> None:
    from kagglekit.tasks.segmentation.report import write_experiment_report
    rows = [{"Fold": f["fold"], "Best Epoch": f["best_epoch"], "OOF mIoU": f["oof_miou"],
             "Best T": f"{f['best_temperature']:g}", "Pixel Acc": f["oof_pixel_acc"]} for f in fold_metrics]
    write_experiment_report(task.cfg, exp_dir, summary, rows, np.asarray(summary["confusion"], dtype=np.int64))


def check_aligned(names: Sequence[str], stores: Sequence[StoredPredictions]) -> None:
    first = stores[0]
    for name, store in zip(names[1:], stores[1:]):
        if store.ids != first.ids:
            raise OOFError(f"OOF ids of {name} differ from {names[0]} (different folds.csv or missing rows); "
                           "members must be trained on the same input/<comp>/folds.csv")
        if store.probs.shape != first.probs.shape:
            raise OOFError(f"OOF shape of {name} {store.probs.shape} differs from {names[0]} {first.probs.shape}; "
                           "use the same oof_scale and classes")


@dataclass
class SegmentationBlend:
    """Weights → OOF mIoU of argmax Σ wᵢ pᵢ (search on a fixed pixel subsample, final score on
    every OOF pixel); the blended fold-averaged test probabilities → the NYUv2 submission."""

    tasks: Sequence[Any]
    member_dirs: Sequence[Path]
    max_pixels_per_image: int | None = 4096
    seed: int = 0
    search: SegmentationBlendObjective = field(init=False)

    def __post_init__(self) -> None:
        cfg = self.tasks[0].cfg
        order = self.tasks[0].folds()["id"].astype(str).tolist()
        stores = [merged_oof(d, order, t.cfg.n_folds) for d, t in zip(self.member_dirs, self.tasks)]
        check_aligned([t.cfg.name for t in self.tasks], stores)
        if stores[0].targets is None:
            raise OOFError(f"{self.member_dirs[0]}: OOF targets missing; re-run the member's folds")
        self.search = SegmentationBlendObjective([s.probs for s in stores], stores[0].targets, cfg.num_classes,
                                                 ignore_index=255, max_pixels_per_image=self.max_pixels_per_image,
                                                 seed=self.seed)

    @property
    def n_evals(self) -> int:
        return self.search.n_evals

    def __call__(self, weights: np.ndarray) -> float:
        return self.search(weights)

    def full_score(self, weights: np.ndarray) -> float:
        return self.search.full_score(weights)

    def extras(self, weights: np.ndarray, out: Path | None = None) -> dict[str, Any]:
        from kagglekit.tasks.segmentation.task import majority_class_miou
        return {"chance_miou": majority_class_miou(self.search.confusion(weights))}

    def write_submission(self, weights: np.ndarray, path: Path) -> Path | None:
        return self.tasks[0].write_blend_submission(self.tasks, self.member_dirs, weights, {}, path)
