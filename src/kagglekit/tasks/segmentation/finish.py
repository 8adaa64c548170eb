"""Segmentation's side of the experiment lifecycle: fold confusions summed into the experiment's
OOF mIoU (temperature re-chosen on the sum), the fold-averaged test submission, the report, and
the ensemble objective (SLSQP/greedy on the blended OOF probabilities)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from kagglekit.calibrate import TemperatureSearch, best_temperature, temperature_status, temperature_table
from kagglekit.ensemble.search import SegmentationBlendObjective
from kagglekit.store.arrays import (OOFError, StoredPredictions, iter_blended_test_mean, merged_oof, missing_stores,
                                    read_predictions, require_folds, require_same_ids)
from kagglekit.submission import nyuv2 as nyu
from kagglekit.submission.rle import SubmissionError
from kagglekit.submission.validate import validate, write_submission
from kagglekit.tasks.segmentation import submission as S


def write_segmentation_submission(task: Any, pairs: Sequence[tuple[str, np.ndarray]],
                                  sizes: dict[str, tuple[int, int]], out_path: Path) -> Path:
    """Competition-id label maps → the configured format, validated (nothing written if invalid)."""
    frame = S.submission_frame(pairs, task.table(), task.cfg)
    if task.cfg.submission_format == "nyuv2":
        shape = next(iter(sizes.values())) if len(set(sizes.values())) == 1 else None
        return write_submission(frame, out_path, task.sample_path(), image_shape=shape, overwrite=True)
    return S.write_rle_submission(frame, sizes, task.table(), task.cfg, task.sample_path(), out_path)


def validation_problems(task: Any, path: Path, sample_csv: Path, sizes: dict[str, tuple[int, int]]) -> list[str]:
    """Every problem of submission ``path`` (empty: valid)."""
    if task.cfg.submission_format == "rle":
        try:
            frame = S.read_rle_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            return [f"{path} is not a readable CSV: {exc}"]
        return S.format_problems(frame, sizes, task.table(), task.cfg, sample_csv)
    shapes = set(sizes.values())
    try:
        validate(path, sample_csv, image_shape=shapes.pop() if len(shapes) == 1 else None)
    except SubmissionError as exc:
        return list(exc.problems) or [str(exc)]
    return []


def decode_submission(task: Any, path: Path, sizes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """A valid submission → id → (H, W) competition-id label map (SubmissionError when invalid)."""
    if problems := validation_problems(task, path, task.sample_path(), sizes):
        raise SubmissionError(f"{path}: {len(problems)} problem(s): " + "; ".join(problems[:5]), problems)
    frame = S.read_rle_csv(path)
    if task.cfg.submission_format == "nyuv2":
        return {i: nyu.decode_nyuv2_submission(frame, i, shape=hw) for i, hw in sizes.items()}
    return S.decode_mask_submission(frame, sizes, task.mask_format(), background=task.table().background)


def score_submission(task: Any, path: Path, solution: Path) -> dict[str, Any]:
    sizes = task.test_sizes()
    predicted = decode_submission(task, path, sizes)
    truth = S.truth_masks(solution, list(sizes), sizes, task.cfg)
    return S.score_label_maps(predicted, truth, task.table())


def score_experiment(task: Any, exp_dir: Path, fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Confusions of all folds summed per temperature → best T → OOF mIoU; merged OOF written."""
    cfg = task.cfg
    summed = summed_confusions(fold_metrics)
    table = temperature_table(summed)
    best_t, _ = best_temperature(table)
    summary = task._confusion_metrics(summed[best_t], table, best_t)
    merged = merged_oof(exp_dir, task.folds()["id"].astype(str).tolist(), cfg.n_folds)
    return {"cv": summary["oof_miou"], **summary, "oof_path": str(merged.probs.filename),
            "fold_miou": [f["oof_miou"] for f in fold_metrics], "confusion": summed[best_t].tolist(),
            "temperature_search": experiment_temperature_search(cfg, table, fold_metrics)}


def summed_confusions(fold_metrics: Sequence[dict[str, Any]]) -> dict[float, np.ndarray]:
    """T → (C, C) confusion summed over the folds, for every T all folds evaluated (a fold whose
    search widened its grid has more temperatures than the others)."""
    keys = set.intersection(*(set(f["confusion_by_temperature"]) for f in fold_metrics))
    return {float(t): sum(np.asarray(f["confusion_by_temperature"][t], dtype=np.int64) for f in fold_metrics)
            for t in sorted(keys, key=float)}


def experiment_temperature_search(cfg: Any, table: pd.DataFrame, fold_metrics: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The experiment-level temperature choice (summed confusions over the temperatures every
    fold evaluated) described like a fold's search, plus each fold's own search sentence
    (older fold metrics without one: none)."""
    scores = dict(zip(table["temperature"].astype(float), table["miou"].astype(float)))
    grid = sorted(float(t) for t in cfg.temperatures)
    ts = sorted(scores)
    best = best_temperature(table)[0]
    passes = min(int(f.get("temperature_search", {}).get("extra_passes", 0)) for f in fold_metrics)
    search = TemperatureSearch(best, scores[best], scores, temperature_status(scores), (grid[0], grid[-1]),
                               (ts[0], ts[-1]), passes)
    return {**search.summary("mIoU"), "folds": [f.get("temperature_search", {}).get("sentence") for f in fold_metrics]}


def test_sizes(exp_dir: Path) -> dict[str, tuple[int, int]]:
    """Test id → (H, W) the predictions are written back to (fold 0's test manifest)."""
    store = read_predictions(exp_dir / "fold0" / "test")
    return store.manifest.sizes_by_id(store.ids)


def write_blended_submission(task: Any, tasks: Sequence[Any], member_dirs: Sequence[Path], weights: Any,
                             path: Path) -> Path | None:
    """Σ wᵢ · (member i's fold-mean test probabilities), chunk by chunk, each image at its own
    size → the validated submission (None when a member has no test predictions)."""
    if any(missing_stores(d, t.cfg.n_folds, "test") for t, d in zip(tasks, member_dirs)):
        return None
    sizes = test_sizes(member_dirs[0])
    chunks = iter_blended_test_mean(member_dirs, [t.cfg.n_folds for t in tasks], weights)
    pairs = list(S.upsampled_labels(chunks, sizes, task.table()))
    return write_segmentation_submission(task, pairs, sizes, path)


def report_experiment(task: Any, exp_dir: Path, summary: dict[str, Any], fold_metrics: Sequence[dict[str, Any]]) -> None:
    from kagglekit.tasks.segmentation.report import write_experiment_report
    rows = [{"Fold": f["fold"], "Best Epoch": f["best_epoch"], "OOF mIoU": f["oof_miou"],
             "Best T": f"{f['best_temperature']:g}", "Pixel Acc": f["oof_pixel_acc"]} for f in fold_metrics]
    write_experiment_report(task.cfg, exp_dir, summary, rows, np.asarray(summary["confusion"], dtype=np.int64),
                            read_image=task.image_reader())


def check_aligned(names: Sequence[str], stores: Sequence[StoredPredictions]) -> None:
    """Members' merged OOF: the same ids in the same order and the same array shape."""
    first = stores[0]
    require_same_ids(names, [s.ids for s in stores], "OOF ids",
                     "members must be trained on the same input/<comp>/folds.csv")
    for name, store in zip(names[1:], stores[1:]):
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
        names = [t.cfg.name for t in self.tasks]
        fold_ids = [sorted(i for s in require_folds(d, t.cfg.n_folds, "oof") for i in s.ids)
                    for d, t in zip(self.member_dirs, self.tasks)]  # before merging: name the members' id difference
        require_same_ids(names, fold_ids, "OOF ids (sorted)", "members must be trained on the same input/<comp>/folds.csv")
        stores = [merged_oof(d, order, t.cfg.n_folds) for d, t in zip(self.member_dirs, self.tasks)]
        check_aligned(names, stores)
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
