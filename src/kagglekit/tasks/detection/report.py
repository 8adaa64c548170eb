"""Reports shaped like seed 004 (Faster R-CNN training record): configuration, validation/test
tables (N/A for an empty size bucket), per-class AP with the seed's performance labels, prediction
statistics, model stability (val vs test), and — for each earlier run named in ``compare_to`` — the
"Changes from" delta tables (overall and per class, with improved/degraded counts)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kagglekit.io import write_text
from kagglekit.report.markdown import markdown_kv, markdown_table
from kagglekit.report.plots import plot_history, plot_per_class_bars

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
LABELS = {"AP": "mAP (AP@0.50:0.95)", "AP50": "AP@0.50", "AP75": "AP@0.75", "APs": "AP (small objects)",
          "APm": "AP (medium objects)", "APl": "AP (large objects)"}


def pct(value: Any) -> str:
    """``41.65%``, or N/A for NaN/None (a size bucket without ground truth, as the seed shows)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "N/A"
    return f"{value:.2f}%"


def performance_label(ap: float) -> str:
    """The seed's words: < 30 Poor, < 50 Medium, < 70 Good, else Excellent (AP in percent)."""
    if ap is None or math.isnan(ap):
        return "N/A"
    return "Poor" if ap < 30 else "Medium" if ap < 50 else "Good" if ap < 70 else "Excellent"


def configuration_section(cfg) -> str:
    items = {"Architecture": f"{cfg.architecture} (backbone {cfg.backbone}, FPN)",
             "Pre-trained weights": cfg.init_weights or cfg.pretrained or "none (random init)",
             "Anchors per FPN level": cfg.anchor_sizes, "Aspect ratios": list(cfg.aspect_ratios),
             "Batch size": cfg.batch_size, "Base learning rate": cfg.lr,
             "Schedule": f"{cfg.scheduler}, steps {list(cfg.lr_milestones)} x{cfg.lr_gamma}",
             "Warmup": f"linear, factor {cfg.warmup_factor}, {cfg.warmup_iters} iterations",
             "Optimizer": f"{cfg.optimizer.upper()} momentum {cfg.momentum}, weight decay {cfg.weight_decay}",
             "Iterations": f"{cfg.max_iters} (evaluation + checkpoint every {cfg.eval_period})",
             "Train min size": f"{list(cfg.train_min_sizes)}, max {cfg.max_size}",
             "Test min size": f"{cfg.test_min_size}, max {cfg.max_size}", "Horizontal flip": f"p={cfg.hflip_p:g}",
             "RoI batch per image": cfg.roi_batch_per_image, "Score threshold (test)": cfg.score_thresh,
             "Detections per image": cfg.detections_per_image, "RoI classification loss":
             cfg.roi_loss if cfg.roi_loss == "ce" else f"focal (alpha {cfg.focal_alpha}, gamma {cfg.focal_gamma})",
             "Repeat-factor sampling": cfg.repeat_factor_threshold or "off",
             "TTA": f"sizes {list(cfg.tta_sizes)}, flip {cfg.tta_flip}, merge {cfg.tta_merge}" if cfg.tta_sizes else "off"}
    return "## Configuration\n" + markdown_kv(items, float_fmt="{:g}")


def metrics_table(split: dict[str, Any]) -> str:
    return markdown_table([{"Metric": LABELS[k], "Value": pct(split.get(k))} for k in SUMMARY_KEYS])


def per_class_table(split: dict[str, Any]) -> str:
    rows = [{"Class": name, "AP (%)": "N/A" if math.isnan(ap) else f"{ap:.2f}", "Performance": performance_label(ap)}
            for name, ap in split.get("per_class", {}).items()]
    return markdown_table(rows)


def stats_lines(stats: dict[str, Any]) -> str:
    """The seed's three prediction-statistics bullets (from ``prediction_stats(...)["text"]``)."""
    return "".join(f"- {part}\n" for part in stats["text"].split("; "))


def delta_tables(current: dict[str, Any], previous: dict[str, Any], prev_name: str, name: str) -> str:
    """Overall and per-class change vs an earlier run, with the improved/degraded counts."""
    overall = [{"Metric": k, prev_name: pct(previous.get(k)), name: pct(current.get(k)),
                "Change": _signed(current.get(k), previous.get(k))} for k in SUMMARY_KEYS
               if not (_nan(current.get(k)) and _nan(previous.get(k)))]
    rows, improved, degraded = [], 0, 0
    for cls, ap in current.get("per_class", {}).items():
        before = previous.get("per_class", {}).get(cls)
        if before is None or _nan(ap) or _nan(before):
            continue
        improved, degraded = improved + (ap > before), degraded + (ap < before)
        rows.append({"Class": cls, prev_name: pct(before), name: pct(ap), "Change": _signed(ap, before)})
    return (f"### Overall\n{markdown_table(overall)}\n### Per-class performance changes\n{markdown_table(rows)}\n"
            f"Classes improved: {improved}, Classes degraded: {degraded}\n")


def _nan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _signed(a: Any, b: Any) -> str:
    return "N/A" if _nan(a) or _nan(b) else f"{a - b:+.2f}%"


def results_sections(metrics: dict[str, Any], cfg, compare: dict[str, dict[str, Any]] | None) -> list[str]:
    parts = []
    val = metrics.get("val", {})
    parts.append("## Validation set performance\n" + metrics_table(val) if "AP" in val else "## Validation set\n(no annotations)")
    if metrics.get("val_plain") and cfg.tta_sizes and "AP" in metrics["val_plain"]:
        parts.append(f"Without TTA (test size {cfg.test_min_size} only): mAP {pct(metrics['val_plain']['AP'])}, "
                     f"AP50 {pct(metrics['val_plain']['AP50'])}")
    test = metrics.get("test") or {}
    if "AP" in test:
        parts.append("## Test set performance (final evaluation)\n" + metrics_table(test))
        parts.append("### Per-class performance (test set)\n" + per_class_table(test))
        if "AP" in val:
            parts.append(f"### Model stability\n- Validation mAP: {pct(val['AP'])}\n- Test mAP: {pct(test['AP'])}\n"
                         f"- Difference: {_signed(test['AP'], val['AP'])}\n")
    elif "AP" in val:
        parts.append("### Per-class performance (validation set)\n" + per_class_table(val))
    split = "test" if "AP" in test else "val"
    chosen = test if "AP" in test else val
    if "stats" in chosen:
        parts.append(f"## Predictions ({split})\n" + stats_lines(chosen["stats"]))
    for name, previous in (compare or {}).items():  # the compare_to experiments found
        if "AP" in chosen and "AP" in (previous.get(split) or {}):
            parts.append(f"## Changes from {name} ({split} set)\n" + delta_tables(chosen, previous[split], name, cfg.name))
    return parts


def write_fold_report(fold_dir: Path, cfg, history: pd.DataFrame, metrics: dict[str, Any],
                      compare: dict[str, dict[str, Any]] | None) -> Path:
    x = "iter" if "iter" in history else "epoch"
    plot_history(history, fold_dir / "history.png", x=x, loss_cols=("train_loss",),
                 metric_cols=("valid_bbox_AP", "valid_bbox_AP50", "valid_bbox_AP75"))
    best = metrics.get("val", {}).get("per_class") or {}
    if best:
        plot_per_class_bars(list(best), np.array(list(best.values())), fold_dir / "per_class_ap.png",
                            title="Per-class AP (validation)", ylabel="AP (%)")
    hist = history.drop(columns=[c for c in ("seconds",) if c in history])
    parts = [f"# {cfg.name} — fold {metrics.get('fold', 0)} (Faster R-CNN training record)", configuration_section(cfg),
             "## Training progression (evaluation every period)\n" + markdown_table(hist) + "\n![history](history.png)",
             *results_sections(metrics, cfg, compare)]
    if best:
        parts.append("![per-class AP](per_class_ap.png)")
    parts.append("## Output files\n- `evaluation/val/coco_instances_results.json`, `evaluation/val/results.json`\n"
                 "- `evaluation/test/...` when a test split exists\n- `checkpoints/best.pt`, `checkpoints/last.pt`"
                 + (f", one per {cfg.eval_period} iterations (epochNNN.pt)" if cfg.keep_epoch_checkpoints else ""))
    return write_text(fold_dir / "report.md", "\n\n".join(parts) + "\n")


def write_experiment_report(exp_dir: Path, cfg, summary: dict[str, Any],
                            compare: dict[str, dict[str, Any]] | None) -> Path:
    parts = [f"# {cfg.name} — experiment summary ({summary['folds']} fold(s), split_mode={cfg.split_mode})",
             configuration_section(cfg), *results_sections(summary, cfg, compare)]
    if "fold_AP" in summary:
        parts.append("## Per-fold validation mAP\n" + markdown_table(
            [{"fold": i, "mAP": pct(v)} for i, v in enumerate(summary["fold_AP"])]))
    return write_text(exp_dir / "report.md", "\n\n".join(parts) + "\n")

