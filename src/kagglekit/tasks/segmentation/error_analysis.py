"""OOF error analysis of a segmentation fold or experiment: per-image scores over the OOF store,
the k worst images as a grid (image / truth / prediction, overlays in the class palette of
:func:`kagglekit.report.plots.class_color`), and the table of them for the report.

Scores are computed at the OOF store's resolution (``oof_scale`` of the image): argmax of the
stored probabilities against the stored targets (255 = ignored), image by image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from kagglekit.report.plots import (class_color, class_palette, figure_title, new_figure,
                                    plot_style, save_figure)

IGNORE = 255
METRICS = ("miou", "pixel_acc")
METRIC_LABELS = {"miou": "mIoU", "pixel_acc": "pixel accuracy"}
DISPLAY_LONG_SIDE = 360  # pixels of the longer side of each shown image
PANEL_WIDTH_IN = 3.2


def image_confusions(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore: int = IGNORE) -> np.ndarray:
    """(B, C, C) int64 confusion per image (rows = truth) of ``pred`` / ``target`` (B, h, w)."""
    b, c = pred.shape[0], num_classes
    valid = target != ignore
    image = np.broadcast_to(np.arange(b)[:, None, None], target.shape)[valid]
    flat = (image * c + target[valid].astype(np.int64)) * c + pred[valid].astype(np.int64)
    return np.bincount(flat, minlength=b * c * c).reshape(b, c, c)


def scores_from_confusions(cms: np.ndarray) -> dict[str, np.ndarray]:
    """Per image (B,): ``miou`` (mean IoU over the classes in its truth or prediction) and
    ``pixel_acc``; NaN for an image without a scored pixel."""
    tp = np.diagonal(cms, axis1=1, axis2=2).astype(float)
    union = cms.sum(2) + cms.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
        present = (union > 0).sum(1)
        miou = np.where(present > 0, np.nansum(iou, 1) / np.maximum(present, 1), np.nan)
        total = cms.sum((1, 2))
        acc = np.where(total > 0, tp.sum(1) / np.maximum(total, 1), np.nan)
    return {"miou": miou, "pixel_acc": acc}


def per_image_scores(probs: np.ndarray, targets: np.ndarray, num_classes: int,
                     chunk: int = 16) -> dict[str, np.ndarray]:
    """``miou`` and ``pixel_acc`` (N,) of every OOF image: ``probs`` (N, C, h, w) any dtype
    (a memmap is read ``chunk`` images at a time), ``targets`` (N, h, w) uint8, 255 = ignored."""
    if probs.ndim != 4 or targets.shape != (probs.shape[0], *probs.shape[2:]):
        raise ValueError(f"need probs (N, C, h, w) and targets (N, h, w); got {probs.shape}, {targets.shape}")
    parts: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    for start in range(0, probs.shape[0], chunk):
        pred = np.asarray(probs[start:start + chunk]).argmax(1)
        scores = scores_from_confusions(image_confusions(pred, np.asarray(targets[start:start + chunk]), num_classes))
        for m in METRICS:
            parts[m].append(scores[m])
    return {m: np.concatenate(v) if v else np.zeros(0) for m, v in parts.items()}


def worst_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` lowest-scoring rows, ascending: ``np.argsort(scores)`` (stable) with NaN rows
    (nothing scored) left out."""
    order = np.argsort(np.asarray(scores, dtype=float), kind="stable")
    return order[np.isfinite(np.asarray(scores, dtype=float)[order])][:k]


def label_overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.6,
                  ignore: int = IGNORE) -> np.ndarray:
    """(H, W, 3) uint8: ``image`` (H, W, 3) with each pixel of ``labels`` (H, W) tinted in its
    class colour (``palette`` (C, 3) uint8); ignored pixels shown as the image, darkened."""
    out = image.astype(np.float32)
    valid = labels != ignore
    colours = palette[np.where(valid, labels, 0).astype(np.int64)].astype(np.float32)
    out = np.where(valid[..., None], (1 - alpha) * out + alpha * colours, 0.5 * out)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass
class ShownImage:
    """One row of the grid: id, scores, and the image / truth / prediction at display size."""

    id: str
    miou: float
    pixel_acc: float
    image: np.ndarray  # (H, W, 3) uint8
    truth: np.ndarray  # (H, W) class indices, 255 = ignored
    pred: np.ndarray  # (H, W) class indices


def display_size(hw: tuple[int, int], long_side: int = DISPLAY_LONG_SIDE) -> tuple[int, int]:
    h, w = hw
    scale = long_side / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def _resized(array: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
    mode = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(np.ascontiguousarray(array)).resize((hw[1], hw[0]), mode))


def shown_image(frame_id: str, probs: np.ndarray, target: np.ndarray, scores: tuple[float, float],
                read_image: Callable[[str], np.ndarray] | None) -> ShownImage:
    """Image (its own size, or grey when it cannot be read) and store-size truth / argmax
    prediction, all resized to :func:`display_size` (labels nearest)."""
    image = None
    if read_image is not None:
        try:
            image = np.asarray(read_image(frame_id))
        except (OSError, ValueError, KeyError):  # a missing / changed file must not stop the report
            image = None
    if image is None or image.ndim != 3:
        image = np.full((*target.shape, 3), 128, np.uint8)
    hw = display_size(image.shape[:2])
    pred = np.asarray(probs).argmax(0).astype(np.uint8)
    return ShownImage(frame_id, scores[0], scores[1], _resized(image[..., :3].astype(np.uint8), hw, False),
                      _resized(target.astype(np.uint8), hw, True), _resized(pred, hw, True))


def _legend_handles(rows: Sequence[ShownImage], names: Sequence[str]) -> list[Patch]:
    """One patch per class present in the shown truths / predictions (+ ignored), palette colours."""
    present = sorted({int(v) for r in rows for v in np.unique(np.concatenate([r.truth.ravel(), r.pred.ravel()]))})
    handles = [Patch(color=class_color(c), label=names[c] if c < len(names) else str(c))
               for c in present if c != IGNORE]
    if IGNORE in present:
        handles.append(Patch(color=(0.25, 0.25, 0.25), label="ignored (not scored)"))
    return handles


def build_worst_figure(rows: Sequence[ShownImage], names: Sequence[str], title: str, metric: str = "miou") -> Figure:
    """One row per image: image / truth overlay / prediction overlay; the image panel's title is
    the id and its score, a class legend (palette colours) under the grid."""
    if not rows:
        raise ValueError("build_worst_figure: no images to show")
    palette = class_palette(max(len(names), 1 + max(int(r.pred.max()) for r in rows)))
    aspect = max(r.image.shape[0] / r.image.shape[1] for r in rows)
    legend_rows = -(-len(_legend_handles(rows, names)) // 5)
    fig = new_figure(3 * PANEL_WIDTH_IN, len(rows) * (PANEL_WIDTH_IN * aspect + 0.3) + 0.6 + 0.3 * legend_rows,
                      layout="constrained")
    with plot_style():
        fig.suptitle(title)
        axes = fig.subplots(len(rows), 3, squeeze=False)
        for row, ax_row in zip(rows, axes):
            score = row.miou if metric == "miou" else row.pixel_acc
            panels = [(row.image, f"{row.id}: {METRIC_LABELS[metric]} {score:.3f}"),
                      (label_overlay(row.image, row.truth, palette), "truth"),
                      (label_overlay(row.image, row.pred, palette), f"prediction (pixel acc {row.pixel_acc:.2f})")]
            for ax, (picture, caption) in zip(ax_row, panels):
                ax.imshow(picture, interpolation="nearest")
                ax.set_title(caption)
                ax.set_axis_off()
        fig.legend(handles=_legend_handles(rows, names), loc="outside lower center", ncol=5, frameon=False)
    return fig


def scores_table(ids: Sequence[str], scores: dict[str, np.ndarray], metric: str = "miou") -> pd.DataFrame:
    """Every image's ``id, miou, pixel_acc``, ascending by ``metric`` (the order of
    :func:`worst_indices`; images without a scored pixel last)."""
    order = np.argsort(np.asarray(scores[metric], dtype=float), kind="stable")
    table = pd.DataFrame({"id": [str(i) for i in ids], "miou": scores["miou"], "pixel_acc": scores["pixel_acc"]})
    return table.iloc[order].reset_index(drop=True)


def plot_worst_images(probs: np.ndarray, targets: np.ndarray, ids: Sequence[str], names: Sequence[str],
                      path: Path, *, experiment: str, fold: int | None,
                      read_image: Callable[[str], np.ndarray] | None, k: int = 8,
                      metric: str = "miou") -> tuple[Path | None, pd.DataFrame]:
    """The k worst OOF images by per-image ``metric`` as a PNG at ``path`` (None: no image has a
    scored pixel) and the scores of all images, worst first (:func:`scores_table`). ``probs``
    (N, C, h, w), ``targets`` (N, h, w) as stored; ``read_image``: id → (H, W, 3) uint8."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r}; use one of {METRICS}")
    scores = per_image_scores(probs, targets, len(names))
    worst = worst_indices(scores[metric], k)
    table = scores_table(ids, scores, metric)
    if not len(worst):
        return None, table
    rows = [shown_image(str(ids[i]), probs[i], np.asarray(targets[i]),
                        (float(scores["miou"][i]), float(scores["pixel_acc"][i])), read_image) for i in worst]
    what = f"{len(rows)} worst OOF images by per-image {METRIC_LABELS[metric]} (scored at the OOF store's size)"
    return save_figure(build_worst_figure(rows, names, figure_title(experiment, fold, what), metric), path), table
