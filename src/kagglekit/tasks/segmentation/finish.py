"""Experiment epilogue: fold metrics summed into experiment OOF metrics, the merged OOF (in
folds.csv order, for ensembling), the fold-averaged test submission, and the experiment report."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from kagglekit import paths
from kagglekit.calibrate import best_temperature, temperature_table
from kagglekit.io import load_json, save_json
from kagglekit.oof import OOFError, iter_test_mean, merged_oof
from kagglekit.submission import nyuv2 as nyu
from kagglekit.submission.validate import write_submission


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


def load_fold_metrics(exp_dir: Path, n_folds: int) -> list[dict[str, Any]]:
    missing = [k for k in range(n_folds) if not (exp_dir / f"fold{k}" / "metrics.json").exists()]
    if missing:
        raise OOFError(f"{exp_dir}: folds {missing} not finished yet")
    return [load_json(exp_dir / f"fold{k}" / "metrics.json") for k in range(n_folds)]


def finish_experiment(task, exp_dir: Path) -> dict[str, Any]:
    from kagglekit.tasks.segmentation.report import write_experiment_report
    cfg = task.cfg
    folds = load_fold_metrics(exp_dir, cfg.n_folds)
    temps = folds[0]["confusion_by_temperature"].keys()
    summed = {float(t): sum(np.asarray(f["confusion_by_temperature"][t], dtype=np.int64) for f in folds) for t in temps}
    table = temperature_table(summed)
    best_t, _ = best_temperature(table)
    summary = task._confusion_metrics(summed[best_t], table, best_t)
    order = task.folds()["id"].astype(str).tolist()
    merged = merged_oof(exp_dir, order, cfg.n_folds)
    summary.update({"experiment": cfg.name, "n_folds": cfg.n_folds, "oof_path": str(merged.probs.filename),
                    "fold_miou": [f["oof_miou"] for f in folds]})
    if cfg.predict_test:
        out = Path(cfg.submissions_dir or paths.submissions_root()) / f"{cfg.name}.csv"
        write_segmentation_submission(iter_test_mean(exp_dir, cfg.n_folds), tuple(merged.manifest.orig_hw),
                                      task.root / "sample_submission.csv", out)
        summary["submission"] = str(out)
    save_json(exp_dir / "metrics.json", summary)
    rows = [{"Fold": f["fold"], "Best Epoch": f["best_epoch"], "OOF mIoU": f["oof_miou"], "Best T": f"{f['best_temperature']:g}",
             "Pixel Acc": f["oof_pixel_acc"]} for f in folds]
    write_experiment_report(cfg, exp_dir, summary, rows, summed[best_t])
    return {k: summary[k] for k in ("oof_miou", "chance_miou", "best_temperature")} | {"report": str(exp_dir / "report.md")}
