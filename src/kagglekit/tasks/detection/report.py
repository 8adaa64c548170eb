"""Reports shaped like seed 004 (Faster R-CNN training record): configuration, validation/test
tables (N/A for an empty size bucket), per-class AP with the seed's performance labels, prediction
statistics, model stability (val vs test), and — for each earlier run named in ``compare_to`` — the
"Changes from" delta tables (overall and per class, with improved/degraded counts).

The fold report also carries an error analysis of the fold's validation predictions: at
:data:`ERROR_SCORE_THRESHOLD`, predictions matched to the ground truth as COCOeval does at IoU 0.5
(:func:`count_errors`), per-class TP / FP / missed counts, and galleries of the images with the most
false positives and the most missed boxes (``errors_fp.png``, ``errors_fn.png``)."""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from kagglekit.io import write_text
from kagglekit.report.gallery import Box, LegendEntry, Tile, box_xyxy, plot_gallery, read_image_or_none
from kagglekit.report.markdown import markdown_kv, markdown_table
from kagglekit.report.plots import class_color, figure_title, plot_history, plot_per_class_bars

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
                      compare: dict[str, dict[str, Any]] | None, errors: str = "") -> Path:
    """The fold's report.md (+ history / per-class PNGs); ``errors``: the error-analysis section
    (:func:`error_analysis_section`, or a line saying why it was not drawn)."""
    x = "iter" if "iter" in history else "epoch"
    plot_history(history, fold_dir / "history.png", x=x, loss_cols=("train_loss",),
                 metric_cols=("valid_bbox_AP", "valid_bbox_AP50", "valid_bbox_AP75"),
                 experiment=cfg.name, fold=metrics.get("fold", 0))
    best = metrics.get("val", {}).get("per_class") or {}
    if best:
        plot_per_class_bars(list(best), np.array(list(best.values())), fold_dir / "per_class_ap.png",
                            title="Per-class AP (validation)", ylabel="AP (%)", experiment=cfg.name,
                            fold=metrics.get("fold", 0))
    hist = history.drop(columns=[c for c in ("seconds",) if c in history])
    parts = [f"# {cfg.name} — fold {metrics.get('fold', 0)} (Faster R-CNN training record)", configuration_section(cfg),
             "## Training progression (evaluation every period)\n" + markdown_table(hist) + "\n![history](history.png)",
             *results_sections(metrics, cfg, compare)]
    if best:
        parts.append("![per-class AP](per_class_ap.png)")
    if errors:
        parts.append(errors.rstrip())
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



# ---- error analysis: false positives / missed boxes of the fold's validation predictions -----------
ERROR_SCORE_THRESHOLD = 0.5  # predictions at or above this score are counted (TP / FP) and drawn
ERROR_IOU = 0.5
GALLERY_IMAGES = 6  # images per gallery
NEUTRAL = (0.25, 0.25, 0.25)


def coco_box_iou(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """(D, G) IoU of COCO boxes ``dets`` (D, 4) and ``gts`` (G, 4), both ``[x, y, w, h]``, as
    pycocotools' ``maskUtils.iou``: for a crowd gt (``crowd`` (G,) bool) the union is the
    detection's own area."""
    d, g = np.asarray(dets, float).reshape(-1, 4), np.asarray(gts, float).reshape(-1, 4)
    iw = np.minimum(d[:, None, 0] + d[:, None, 2], g[None, :, 0] + g[None, :, 2]) - np.maximum(d[:, None, 0], g[None, :, 0])
    ih = np.minimum(d[:, None, 1] + d[:, None, 3], g[None, :, 1] + g[None, :, 3]) - np.maximum(d[:, None, 1], g[None, :, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    d_area, g_area = d[:, 2] * d[:, 3], g[:, 2] * g[:, 3]
    union = np.where(np.asarray(crowd, bool)[None, :], d_area[:, None], d_area[:, None] + g_area[None, :] - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def coco_greedy_match(ious: np.ndarray, gt_ignore: np.ndarray, gt_crowd: np.ndarray, iou_thr: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """COCOeval.evaluateImg's matching at one IoU threshold. ``ious`` (D, G) with the detections
    already in descending score order; each takes the unmatched gt of highest IoU >= ``iou_thr``
    (ties: the later gt), non-ignored gts first (an ignored one only when no other qualifies); a
    crowd gt can take any number. Returns det → gt index (D,) (-1: unmatched) and (D,) bool
    matched to an ignored gt (neither TP nor FP)."""
    n_det, n_gt = ious.shape
    order = np.argsort(np.asarray(gt_ignore, bool), kind="mergesort")
    taken = np.zeros(n_gt, bool)
    det_gt, det_ignored = np.full(n_det, -1), np.zeros(n_det, bool)
    for d in range(n_det):
        best, m = min(iou_thr, 1 - 1e-10), -1
        for g in order:
            if taken[g] and not gt_crowd[g]:
                continue
            if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                break
            if ious[d, g] < best:
                continue
            best, m = ious[d, g], g
        if m > -1:
            taken[m], det_gt[d], det_ignored[d] = True, m, bool(gt_ignore[m])
    return det_gt, det_ignored


@dataclass
class ImageErrors:
    """One image at a score threshold: its predictions at or above it (best first) with their
    status ``tp`` / ``fp`` / ``ignored`` (matched a crowd region), its gt boxes with ``tp`` / ``fn``
    / ``ignored`` (crowd)."""
    image_id: int
    dets: list[dict[str, Any]] = field(default_factory=list)
    det_status: list[str] = field(default_factory=list)
    gts: list[dict[str, Any]] = field(default_factory=list)
    gt_status: list[str] = field(default_factory=list)

    @property
    def tp(self) -> int:
        return self.det_status.count("tp")

    @property
    def fp(self) -> int:
        return self.det_status.count("fp")

    @property
    def fn(self) -> int:
        return self.gt_status.count("fn")


def _match_group(errors: ImageErrors, dets: list[dict[str, Any]], gts: list[dict[str, Any]], iou_thr: float,
                 max_dets: int) -> None:
    """Match one image's predictions and gts of one category; append them with their status."""
    dets = [dets[i] for i in np.argsort([-float(r["score"]) for r in dets], kind="mergesort")][:max_dets]
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in gts], bool)
    ious = coco_box_iou(np.array([r["bbox"] for r in dets]), np.array([a["bbox"] for a in gts]), crowd)
    det_gt, det_ignored = coco_greedy_match(ious.reshape(len(dets), len(gts)), crowd, crowd, iou_thr)
    matched = set(det_gt[(det_gt >= 0) & ~det_ignored].tolist())
    errors.dets += dets
    errors.det_status += ["ignored" if ig else "tp" if g >= 0 else "fp" for g, ig in zip(det_gt, det_ignored)]
    errors.gts += gts
    errors.gt_status += ["ignored" if c else "tp" if j in matched else "fn" for j, c in enumerate(crowd)]


def count_errors(gt: dict[str, Any], results: Sequence[dict[str, Any]], score_thr: float = ERROR_SCORE_THRESHOLD,
                 iou_thr: float = ERROR_IOU, max_dets: int = 100) -> dict[int, ImageErrors]:
    """Per image of ``gt``: COCO results with score >= ``score_thr`` matched to the gt boxes per
    category as COCOeval does at IoU ``iou_thr`` (crowd boxes ignored; the first ``max_dets`` by
    score per image and category, as COCOeval). Since matching goes by descending score, the
    matches of the kept predictions are those of the full set: FP = unmatched kept predictions,
    FN = non-crowd gt boxes no kept prediction matched."""
    dets: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        if float(r["score"]) >= score_thr:
            dets[int(r["image_id"]), int(r["category_id"])].append(r)
    gts: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for a in gt["annotations"]:
        gts[int(a["image_id"]), int(a["category_id"])].append(a)
    out = {int(im["id"]): ImageErrors(int(im["id"])) for im in gt["images"]}
    for image_id, cat in sorted(set(dets) | set(gts)):
        if image_id in out:
            _match_group(out[image_id], dets.get((image_id, cat), []), gts.get((image_id, cat), []), iou_thr, max_dets)
    return out


def worst_images(errors: dict[int, ImageErrors], kind: str, n: int = GALLERY_IMAGES) -> list[ImageErrors]:
    """The ``n`` images with the most ``kind`` (``fp`` / ``fn``) errors, most first (ties: lower
    image id first); images without any are left out."""
    ranked = sorted(errors.values(), key=lambda e: (-getattr(e, kind), e.image_id))
    return [e for e in ranked if getattr(e, kind) > 0][:n]


def _error_boxes(e: ImageErrors, index: dict[int, int], names: dict[int, str]) -> list[Box]:
    """Truth dashed (missed: thick), predictions solid with their scores (false positives: thick)."""
    boxes = []
    for a, status in zip(e.gts, e.gt_status):
        cat = int(a["category_id"])
        colour = NEUTRAL if status == "ignored" else class_color(index[cat])
        label = "crowd" if status == "ignored" else f"missed {names[cat]}" if status == "fn" else ""
        boxes.append(Box(box_xyxy(a["bbox"]), colour, label, dashed=True, emphasis=status == "fn"))
    for r, status in zip(e.dets, e.det_status):
        cat = int(r["category_id"])
        label = f"{'FP ' if status == 'fp' else ''}{names[cat]} {float(r['score']):.2f}"
        boxes.append(Box(box_xyxy(r["bbox"]), class_color(index[cat]), label, emphasis=status == "fp"))
    return boxes


def error_tiles(chosen: Sequence[ImageErrors], images: dict[int, dict[str, Any]], image_dir: Path,
                cat_ids: Sequence[int], names: dict[int, str]) -> list[Tile]:
    """One gallery tile per image of ``chosen``: the image (blank when unreadable) with its boxes."""
    index = {cid: i for i, cid in enumerate(cat_ids)}
    tiles = []
    for e in chosen:
        im = images[e.image_id]
        tiles.append(Tile(read_image_or_none(Path(image_dir) / im["file_name"]), (int(im["width"]), int(im["height"])),
                          f"image {e.image_id} ({Path(im['file_name']).name})\n{e.fp} FP, {e.fn} missed, {e.tp} TP",
                          _error_boxes(e, index, names)))
    return tiles


def error_legend(cat_ids: Sequence[int], names: dict[int, str], shown: set[int]) -> list[LegendEntry]:
    """Line styles (truth / missed / prediction / false positive) + the shown classes' colours."""
    styles = [LegendEntry("truth", NEUTRAL, "--"), LegendEntry("missed truth", NEUTRAL, "--", linewidth=3.2),
              LegendEntry("prediction (score)", NEUTRAL), LegendEntry("false positive", NEUTRAL, linewidth=3.2)]
    return styles + [LegendEntry(names[c], class_color(i), "", "s") for i, c in enumerate(cat_ids) if c in shown][:12]


def per_class_errors(errors: dict[int, ImageErrors], cat_ids: Sequence[int], names: dict[int, str]) -> list[dict[str, Any]]:
    """Rows class, TP, FP, missed, precision, recall (NaN when undefined) at the report's threshold."""
    counts: Counter[tuple[int, str]] = Counter()
    for e in errors.values():
        counts.update((int(r["category_id"]), s) for r, s in zip(e.dets, e.det_status))
        counts.update((int(a["category_id"]), s) for a, s in zip(e.gts, e.gt_status) if s == "fn")
    rows = []
    for cid in cat_ids:
        tp, fp, fn = counts[cid, "tp"], counts[cid, "fp"], counts[cid, "fn"]
        rows.append({"Class": names[cid], "TP": tp, "FP": fp, "Missed": fn,
                     "Precision": tp / (tp + fp) if tp + fp else float("nan"),
                     "Recall": tp / (tp + fn) if tp + fn else float("nan")})
    return rows


def _error_gallery(chosen: Sequence[ImageErrors], heading: str, picture: str, title: str, fold_dir: Path,
                   gt: dict[str, Any], image_dir: Path, cat_ids: Sequence[int], names: dict[int, str]) -> str:
    """Table of ``chosen`` images + their gallery PNG ``fold_dir/picture`` (markdown)."""
    if not chosen:
        return f"### {heading}\nNone at this score.\n"
    images = {int(im["id"]): im for im in gt["images"]}
    rows = [{"Image id": e.image_id, "File": Path(images[e.image_id]["file_name"]).name, "FP": e.fp, "Missed": e.fn,
             "TP": e.tp} for e in chosen]
    tiles = error_tiles(chosen, images, image_dir, cat_ids, names)
    shown = {int(x["category_id"]) for e in chosen for x in e.dets + e.gts}
    plot_gallery(tiles, fold_dir / picture, title, error_legend(cat_ids, names, shown))
    blank = sum(t.image is None for t in tiles)
    note = (f"\n{blank} of {len(tiles)} image(s) could not be read under `{image_dir}`: their boxes are drawn on a "
            "blank canvas.\n" if blank else "")
    return f"### {heading}\n{markdown_table(rows)}\n![{heading}]({picture})\n{note}"


def error_analysis_section(fold_dir: Path, experiment: str, fold: int, gt: dict[str, Any],
                           results: Sequence[dict[str, Any]], image_dir: Path, cat_ids: Sequence[int],
                           names: dict[int, str], score_thr: float = ERROR_SCORE_THRESHOLD) -> str:
    """The fold report's error analysis (markdown) of its validation predictions ``results`` vs
    ``gt``: counts per class and the galleries ``errors_fp.png`` / ``errors_fn.png`` of the images
    with the most false positives / missed boxes."""
    head = f"## Error analysis (validation predictions, score >= {score_thr:.2f}, IoU {ERROR_IOU:g})"
    if not gt["annotations"]:
        return f"{head}\nNo ground-truth boxes in the validation images: nothing to count.\n"
    errors = count_errors(gt, results, score_thr)
    totals = {"Images": len(errors), f"Predictions with score >= {score_thr:.2f}": sum(len(e.dets) for e in errors.values()),
              "True positives": sum(e.tp for e in errors.values()),
              "False positives": sum(e.fp for e in errors.values()),
              "Missed ground-truth boxes": sum(e.fn for e in errors.values())}
    how = (f"Per image and class, predictions by descending score each take the unmatched ground-truth box of highest "
           f"IoU >= {ERROR_IOU:g} (COCOeval's greedy matching); crowd boxes absorb predictions without counting. "
           "In the pictures truth is dashed, predictions solid with their score, errors thick; colour = class.")
    fp = _error_gallery(worst_images(errors, "fp"), "Images with the most false positives", "errors_fp.png",
                        figure_title(experiment, fold, f"most false positives (score >= {score_thr:.2f})"), fold_dir,
                        gt, image_dir, cat_ids, names)
    fn = _error_gallery(worst_images(errors, "fn"), "Images with the most missed boxes", "errors_fn.png",
                        figure_title(experiment, fold, f"most missed ground-truth boxes (score >= {score_thr:.2f})"),
                        fold_dir, gt, image_dir, cat_ids, names)
    return "\n".join([head, markdown_kv(totals), how, "", "### Per class at this score",
                      markdown_table(per_class_errors(errors, cat_ids, names)), fp, fn])
