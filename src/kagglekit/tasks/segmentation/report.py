"""Markdown reports shaped like seed 003 (configuration, results summary, TTA-by-temperature table,
training progression table, notes) plus PNG plots, for one fold and for a whole experiment, and
the OOF error analysis (confusion at the best T, the worst OOF images; see
:mod:`kagglekit.tasks.segmentation.error_analysis`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from kagglekit.io import save_csv, write_text
from kagglekit.report.markdown import markdown_kv, markdown_table
from kagglekit.report.plots import plot_confusion, plot_history, plot_per_class_bars
from kagglekit.store.arrays import read_predictions
from kagglekit.tasks.segmentation.config import SegmentationConfig
from kagglekit.tasks.segmentation.error_analysis import plot_worst_images

ImageReader = Callable[[str], np.ndarray]  # image id → (H, W, 3) uint8
WORST_K = 8
ARCH_NAMES = {"fpn": "FPN", "deeplabv3plus": "DeepLabV3Plus", "unet": "Unet"}


def configuration_lines(cfg: SegmentationConfig) -> dict[str, Any]:
    loss = "BoundaryAwareCELoss" if cfg.boundary_weight != 1.0 else "CrossEntropyLoss"
    if cfg.depth_aux:
        loss += f" + {cfg.depth_loss_weight:g} * Depth L1 Loss"
    weighted = {i: w for i, w in enumerate(cfg.class_weights) if w != 1.0}
    items = {
        "Script": f"`exp/{cfg.name}.py`",
        "Model Architecture": f"{ARCH_NAMES.get(cfg.arch, cfg.arch)} with {cfg.backbone} encoder "
                              f"({'pretrained: ' + cfg.pretrained if cfg.pretrained else 'random init, pretrained=False'})",
        "Input Channels": "4 (RGB + Inverse Depth)" if cfg.use_depth_input else "3 (RGB)",
        "Input Size": f"{cfg.input_h} (H) x {cfg.input_w} (W)",
        "Crop Size": f"{cfg.crop_h} x {cfg.crop_w}",
        "Classes": f"{cfg.num_classes} (NYUv2)",
        "Optimizer": f"{'AdamW' if cfg.optimizer == 'adamw' else cfg.optimizer} (lr={cfg.lr:g}, weight_decay={cfg.weight_decay:g})",
        "Scheduler": f"{cfg.scheduler} ({cfg.epochs} epochs, warmup {cfg.warmup_epochs:g})",
        "Batch Size": cfg.batch_size,
        "Loss Function": loss + (f" (boundary weight {cfg.boundary_weight:g})" if cfg.boundary_weight != 1.0 else ""),
        "Class Weights": ", ".join(f"{w:g}x for class {i}" for i, w in weighted.items()) or "uniform",
        "EMA": f"Decay {cfg.ema_decay:g}" if cfg.ema_decay > 0 else "off",
        "TTA": f"{len(cfg.tta_scales) * (2 if cfg.tta_flip else 1)} Combinations (Scales: "
               f"{', '.join(f'{s:g}' for s in cfg.tta_scales)}{' × Horizontal Flip' if cfg.tta_flip else ''}; "
               f"averaging {cfg.tta_average})",
        "OOF store": f"probabilities at scale {cfg.oof_scale:g}, {cfg.oof_dtype}",
    }
    return items


def temperature_section(table: list[dict[str, Any]], best_t: float, search: dict[str, Any] | None = None) -> str:
    """The temperature table (best row bold) and, from ``search`` (metrics' ``temperature_search``),
    whether the best T is an interior optimum and how far the grid was widened to find it."""
    frame = pd.DataFrame(table)[["temperature", "miou"]].rename(columns={"temperature": "Temperature", "miou": "mIoU"})
    frame = frame.sort_values("Temperature", kind="stable").reset_index(drop=True)
    bold = int(np.argmin(np.abs(frame["Temperature"].to_numpy() - best_t)))
    frame["Temperature"] = [f"{t:g}" for t in frame["Temperature"]]
    text = "### TTA Performance (OOF)\n" + markdown_table(frame, bold_row=bold, float_fmt="{:.4f}")
    if search and search.get("sentence"):
        text += "\n\n" + search["sentence"]
    return text


def progression_section(history: pd.DataFrame, best_epoch: int) -> str:
    cols = {"epoch": "Epoch", "train_loss": "Train Loss", "valid_loss": "Valid Loss",
            "valid_miou": "Valid mIoU", "valid_pixel_acc": "Pixel Acc"}
    frame = history[[c for c in cols if c in history]].rename(columns=cols)
    frame["Epoch"] = frame["Epoch"].astype(int)
    bold = int(np.flatnonzero(frame["Epoch"].to_numpy() == best_epoch)[0]) if best_epoch in set(frame["Epoch"]) else None
    return "## Training Progression\n" + markdown_table(frame, bold_row=bold)


def per_class_section(per_class: dict[str, float | None]) -> str:
    rows = [{"Class": name, "IoU": np.nan if v is None else v} for name, v in per_class.items()]
    return "### Per-class IoU (OOF, best T)\n" + markdown_table(rows)


def write_fold_report(cfg: SegmentationConfig, fold_dir: Path, history: pd.DataFrame, metrics: dict[str, Any],
                      read_image: ImageReader | None = None) -> Path:
    """``report.md`` of one fold with its pictures: history, per-class IoU, the confusion at the
    best temperature and the worst OOF images (``read_image``: id → (H, W, 3) uint8)."""
    fold = metrics["fold"]
    names = list(metrics["per_class_iou"])
    values = np.array([np.nan if v is None else v for v in metrics["per_class_iou"].values()], dtype=float)
    plot_history(history, fold_dir / "history.png", loss_cols=("train_loss", "valid_loss"),
                 metric_cols=("valid_miou", "valid_pixel_acc"), experiment=cfg.name, fold=fold)
    plot_per_class_bars(names, values, fold_dir / "per_class_iou.png", title="per-class IoU (OOF, best T)",
                        ylabel="IoU", experiment=cfg.name, fold=fold)
    summary = {"OOF mIoU (Best T)": f"**{metrics['oof_miou']:.4f}**", "Best Temperature": f"{metrics['best_temperature']:g}",
               "Chance mIoU (majority class)": f"{metrics['chance_miou']:.4f}",
               "OOF Pixel Acc": f"{metrics['oof_pixel_acc']:.4f}", "Best epoch (per-epoch validation)": metrics["best_epoch"]}
    text = "\n\n".join([
        f"# {cfg.name} fold {fold} Report",
        "## Experiment Configuration\n" + markdown_kv(configuration_lines(cfg)),
        "## Results Summary\n" + markdown_kv(summary),
        temperature_section(metrics["temperature_table"], metrics["best_temperature"], metrics.get("temperature_search")),
        progression_section(history, metrics["best_epoch"]),
        per_class_section(metrics["per_class_iou"]),
        "## Plots\n![history](history.png)\n\n![per-class IoU](per_class_iou.png)",
        error_analysis_section(cfg, fold_dir, names, fold, best_confusion(metrics), fold_dir / "oof", read_image),
        "## Notes\n" + "\n".join(fold_notes(cfg, history, metrics)),
    ])
    return write_text(fold_dir / "report.md", text + "\n")


def best_confusion(metrics: dict[str, Any]) -> np.ndarray | None:
    """The fold's (C, C) confusion at its best temperature (None when the metrics lack it)."""
    by_t = metrics.get("confusion_by_temperature") or {}
    matrix = by_t.get(f"{metrics['best_temperature']:g}")
    return None if matrix is None else np.asarray(matrix, dtype=np.int64)


def error_analysis_section(cfg: SegmentationConfig, out_dir: Path, names: list[str], fold: int | None,
                           confusion: np.ndarray | None, store_dir: Path, read_image: ImageReader | None,
                           k: int = WORST_K) -> str:
    """``confusion.png`` (rows normalised), ``worst_images.png`` + ``oof_image_scores.csv`` from
    the OOF store at ``store_dir``, and the markdown linking them."""
    parts = ["## OOF error analysis"]
    if confusion is not None:
        plot_confusion(confusion, names, out_dir / "confusion.png", normalize=True, experiment=cfg.name, fold=fold)
        parts.append("### Confusion (rows = true class, normalised; best T)\n![confusion](confusion.png)")
    if not (store_dir / "manifest.json").exists():
        return "\n\n".join(parts + [f"No OOF store at `{store_dir.name}/`: no per-image analysis."])
    store = read_predictions(store_dir)
    if store.targets is None:
        return "\n\n".join(parts + ["The OOF store has no targets: no per-image analysis."])
    png, table = plot_worst_images(store.probs, store.targets, store.ids, names, out_dir / "worst_images.png",
                                   experiment=cfg.name, fold=fold, read_image=read_image, k=k)
    save_csv(out_dir / "oof_image_scores.csv", table)
    worst = table.head(k).rename(columns={"id": "Image", "miou": "mIoU", "pixel_acc": "Pixel Acc"})
    parts.append(f"### {min(k, len(table))} worst OOF images (per-image mIoU, ascending)\n"
                 + markdown_table(worst) + ("\n![worst OOF images](worst_images.png)" if png else "")
                 + f"\n\nEvery image's scores: `oof_image_scores.csv` (at the OOF store's size, scale {cfg.oof_scale:g}).")
    return "\n\n".join(parts)


def fold_notes(cfg: SegmentationConfig, history: pd.DataFrame, metrics: dict[str, Any]) -> list[str]:
    notes = [f"- Per-epoch validation uses {'the EMA weights' if cfg.ema_decay > 0 and cfg.eval_ema else 'the live weights'} "
             f"at {cfg.infer_h}x{cfg.infer_w} without TTA; the OOF numbers use {len(metrics['tta_views'])}-view TTA at the original resolution."]
    table = pd.DataFrame(metrics["temperature_table"])
    spread = float(table["miou"].max() - table["miou"].min())
    notes.append(f"- Temperature changes OOF mIoU by at most {spread:.4f} across T in {list(table['temperature'])}.")
    if metrics.get("stopped_early"):
        notes.append(f"- Early stopping after epoch {int(history['epoch'].iloc[-1])}.")
    return notes


def write_experiment_report(cfg: SegmentationConfig, exp_dir: Path, summary: dict[str, Any], fold_rows: list[dict[str, Any]],
                            confusion: np.ndarray, read_image: ImageReader | None = None) -> Path:
    """The experiment's ``report.md``: per-class IoU, the summed confusion at the experiment's
    best T and the worst images of the merged OOF (``oof_merged/``)."""
    names = list(summary["per_class_iou"])
    values = np.array([np.nan if v is None else v for v in summary["per_class_iou"].values()], dtype=float)
    plot_per_class_bars(names, values, exp_dir / "per_class_iou.png", title="per-class IoU (OOF, best T)",
                        ylabel="IoU", experiment=cfg.name, fold=None)
    results = {"OOF mIoU (Best T)": f"**{summary['oof_miou']:.4f}**", "Best Temperature": f"{summary['best_temperature']:g}",
               "Chance mIoU (majority class)": f"{summary['chance_miou']:.4f}",
               "OOF Pixel Acc": f"{summary['oof_pixel_acc']:.4f}", "Folds": len(fold_rows),
               "Submission": f"`{summary['submission']}`" if summary.get("submission") else "not written (predict_test off)"}
    text = "\n\n".join([
        f"# {cfg.name} Report",
        "## Experiment Configuration\n" + markdown_kv(configuration_lines(cfg)),
        "## Results Summary\n" + markdown_kv(results),
        temperature_section(summary["temperature_table"], summary["best_temperature"], summary.get("temperature_search")),
        "### Folds\n" + markdown_table(fold_rows),
        per_class_section(summary["per_class_iou"]),
        "## Plots\n![per-class IoU](per_class_iou.png)",
        error_analysis_section(cfg, exp_dir, names, None, np.asarray(confusion, dtype=np.int64),
                               exp_dir / "oof_merged", read_image),
        "## Notes\n- OOF mIoU is computed from the confusion matrices of all folds summed per temperature "
        "(every training image scored once, at its original resolution).\n- LB score: record it with the ledger once submitted.",
    ])
    return write_text(exp_dir / "report.md", text + "\n")
