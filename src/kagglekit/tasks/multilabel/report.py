"""Reports shaped like seed 000 (door_state): the version comparison table (best vs SWA-N),
per-attribute metrics, training history, sample inference per state, an FP audit (the images
with the highest-scoring false positives: each image with its truth, per-attribute scores and
thresholds, the false positives outlined red, in one PNG grid), and the run config JSON with the
seed's fields."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextPath
from PIL import Image

from kagglekit.io import save_json, write_text
from kagglekit.report.markdown import markdown_table
from kagglekit.report.plots import (FONT_FAMILY, MIN_FONT_PT, class_color, figure_title, new_figure, plot_style,
                                    save_figure)

AUDIT_K = 8  # images in the FP audit
AUDIT_CELL_IN = 3.4  # inches of image width per audit cell, at least
AUDIT_MAX_IMAGE_IN = 5.0  # ... and at most
AUDIT_IMAGE_PX = 680  # longest side the audit images are read at


def version_table(cfg, metrics: dict[str, Any], others: dict[str, dict[str, Any]] | None = None) -> str:
    """Columns: earlier experiments (``compare_to``, their best), then this run's best.pt and SWA-N."""
    rows: dict[str, list[Any]] = {"schema": [], "OOF accuracy": [], "OOF mAP (active heads)": [], "OOF macro F1": [],
                                  "ckpt thresholds": []}
    columns = [(name, r) for name, r in (others or {}).items()]
    columns += [(f"{cfg.name} {'best.pt' if n == 'best' else f'SWA-{cfg.swa_n}'}", r) for n, r in metrics["versions"].items()]
    for _, r in columns:
        softmax = "per_class" in r
        rows["schema"].append(f"{len(r['per_class'])}-class softmax" if softmax else f"{len(r['per_attr'])} binary heads")
        rows["OOF accuracy"].append(r.get("accuracy", float("nan")))
        rows["OOF mAP (active heads)"].append(r.get("mAP", float("nan")))
        rows["OOF macro F1"].append(f"{r['macro_f1']:.4f}* ({r['macro_f1_active']:.4f} active)" if softmax else r["macro_f1"])
        rows["ckpt thresholds"].append("none (argmax)" if softmax else "per-attr val-best F1")
    table = pd.DataFrame(rows, index=[name for name, _ in columns]).T
    note = "\n\n\\* macro F1 over all classes incl. zero-support ones; in brackets: classes with support only." \
        if any("per_class" in r for _, r in columns) else ""
    return "## Version comparison\n" + markdown_table(table.reset_index().rename(columns={"index": ""})) + note


def per_attribute_table(metrics: dict[str, Any]) -> str:
    rows = []
    for version, r in metrics["versions"].items():
        for attr, m in r.get("per_attr", {}).items():
            rows.append({"version": version, "attr": attr, "AP": m["ap"], "F1": m["f1"], "P": m["p"], "R": m["r"],
                         "thr": m["thr"], "n": m["n"], "valid": m["valid"], "tp": m["tp"], "fp": m["fp"], "fn": m["fn"]})
        for cls, m in r.get("per_class", {}).items():
            rows.append({"version": version, "class": cls, "P": m["precision"], "R": m["recall"], "F1": m["f1"],
                         "support": m["support"]})
    return "## Per-attribute metrics (OOF)\n" + markdown_table(rows)


def history_table(history: pd.DataFrame) -> str:
    keep = [c for c in ("epoch", "train_loss", "valid_loss", "valid_mAP", "valid_macro_f1", "valid_accuracy") if c in history]
    frame = history[keep].copy()
    frame["epoch"] = frame["epoch"].astype(int)
    return "## Training history\n" + markdown_table(frame) + "\n![history](history.png)"


def sample_lines(states_true: Sequence[str], states_pred: Sequence[str], probs: np.ndarray, names: Sequence[str],
                 thresholds: Sequence[float], k: int = 4) -> list[str]:
    lines = []
    for state in sorted(set(states_true)):
        for i in [j for j, s in enumerate(states_true) if s == state][:k]:
            p = " ".join(f"{n}={100 * probs[i, a]:.0f}%" for a, n in enumerate(names))
            t = " ".join(f"thr_{n}={thr:.2f}" for n, thr in zip(names, thresholds))
            lines.append(f"truth={state} pred={states_pred[i]} {p} {t}".strip())
    return lines


@dataclass(frozen=True)
class FalsePositive:
    """One false positive: OOF row, the column it fired on (an attribute, or the predicted
    class of the softmax kind) and its score there."""

    row: int
    column: int
    score: float


def false_positives(probs: np.ndarray, targets: np.ndarray, thresholds: Sequence[float] | None,
                    kind: str = "multilabel") -> list[FalsePositive]:
    """Every false positive, highest score first (ties: row, then column).

    multilabel: ``probs`` (N, K), ``targets`` (N, K) in {1, 0, -1 = missing}: a labelled negative
    (0) scored at or above its column's threshold. softmax: ``targets`` (N,) class indices: the
    argmax class when it is not the true one, scored by its probability."""
    probs = np.asarray(probs, dtype=float)
    if kind == "softmax":
        pred = probs.argmax(1)
        rows = np.flatnonzero(pred != np.asarray(targets).astype(int))
        found = [FalsePositive(int(r), int(pred[r]), float(probs[r, pred[r]])) for r in rows]
    else:
        thr = np.asarray(thresholds, dtype=float)[None]
        rows, cols = np.nonzero((np.asarray(targets) == 0) & (probs >= thr))
        found = [FalsePositive(int(r), int(c), float(probs[r, c])) for r, c in zip(rows, cols)]
    return sorted(found, key=lambda f: (-f.score, f.row, f.column))


def audit_rows(fps: Sequence[FalsePositive], k: int) -> list[int]:
    """The ``k`` images with the highest-scoring false positives (each image once, ranked by its
    highest false positive)."""
    rows: list[int] = []
    for fp in fps:
        if fp.row not in rows:
            rows.append(fp.row)
            if len(rows) == k:
                break
    return rows


@dataclass
class AuditCell:
    """One image of the FP audit: scores (K,), truth (K,) (multilabel: 1/0/-1; softmax: one-hot
    of the true class), thresholds (K,) or None (softmax: argmax), which columns are FPs."""

    id: str
    image: np.ndarray | None  # (H, W, 3) uint8; None: unreadable
    scores: np.ndarray
    truth: np.ndarray
    thresholds: np.ndarray | None
    fp: np.ndarray  # (K,) bool
    caption: str


def read_display_image(path: Path, long_side: int = AUDIT_IMAGE_PX) -> np.ndarray | None:
    """RGB uint8 at most ``long_side`` pixels on its longer side; None when it cannot be read."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((long_side, long_side))
            return np.asarray(img)
    except (OSError, ValueError):
        return None


def _short(text: str, limit: int = 38) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def _draw_scores(ax: Axes, cell: AuditCell, names: Sequence[str]) -> None:
    """Horizontal bars of the scores (attribute colours), threshold marks, FP bars outlined red."""
    k = len(names)
    y = np.arange(k)
    edges = ["red" if f else "none" for f in cell.fp]
    ax.barh(y, cell.scores, color=[class_color(a) for a in range(k)], edgecolor=edges,
            linewidth=[2.5 if f else 0 for f in cell.fp], height=0.7)
    if cell.thresholds is not None:
        ax.vlines(cell.thresholds, y - 0.42, y + 0.42, colors="black", linewidth=2)
    for a in range(k):
        text = f"{cell.scores[a]:.2f}"
        if cell.fp[a]:
            text += f" ≥ {cell.thresholds[a]:.2f} FP" if cell.thresholds is not None else " FP"
        ax.text(1.02, a, text, va="center", ha="left", color="red" if cell.fp[a] else "black",
                fontweight="bold" if cell.fp[a] else "normal", transform=ax.get_yaxis_transform())
    truth = ["?" if t < 0 else str(int(t)) for t in cell.truth]
    ax.set_yticks(y, [f"{n}  truth {t}" for n, t in zip(names, truth)])
    for label, f in zip(ax.get_yticklabels(), cell.fp):
        label.set_color("red" if f else "black")
    ax.set_xlim(0, 1)
    ax.set_ylim(k - 0.5, -0.5)
    ax.set_xlabel("score (black mark: threshold)" if cell.thresholds is not None else "probability")
    ax.grid(axis="x", alpha=0.3)


@dataclass(frozen=True)
class AuditGeometry:
    """Inches of one audit cell: caption, image (w × h), the bars' label gutter, bars, score texts."""

    image_w: float
    image_h: float
    label_w: float
    bars_h: float
    text_w: float
    bars_w: float = 2.0
    caption_h: float = 0.5
    xlabel_h: float = 0.5
    gap: float = 0.15
    row_gap: float = 0.2

    @property
    def width(self) -> float:
        return self.image_w + self.gap + self.label_w + self.bars_w + self.text_w

    @property
    def height(self) -> float:
        return self.caption_h + max(self.image_h, self.bars_h + self.xlabel_h) + self.row_gap


def text_width_in(text: str, size: float = MIN_FONT_PT, bold: bool = False) -> float:
    """Inches ``text`` takes in the reports' font at ``size`` points."""
    prop = FontProperties(family=FONT_FAMILY, size=size, weight="bold" if bold else "normal")
    return TextPath((0, 0), text, size=size, prop=prop).get_extents().width / 72


def audit_geometry(cells: Sequence[AuditCell], names: Sequence[str]) -> AuditGeometry:
    """Bars ~0.32 in each; images at their own aspect (the tallest one's), at least
    :data:`AUDIT_CELL_IN` wide and as tall as the bars block when that keeps them under
    :data:`AUDIT_MAX_IMAGE_IN` wide (wide images get wider, not letterboxed); label gutter and
    score column as wide as their texts."""
    bars_h = 0.32 * len(names) + 0.1
    aspect = max([c.image.shape[0] / c.image.shape[1] for c in cells if c.image is not None], default=0.75)
    image_w = min(max(AUDIT_CELL_IN, (bars_h + 0.5) / aspect), AUDIT_MAX_IMAGE_IN)
    label_w = max(text_width_in(f"{n}  truth 0") for n in names) + 0.2
    widest = "0.00 ≥ 0.00 FP" if any(c.thresholds is not None for c in cells) else "0.00 FP"
    return AuditGeometry(image_w, image_w * aspect, label_w, bars_h, text_width_in(widest, bold=True) + 0.35)


def build_audit_figure(cells: Sequence[AuditCell], names: Sequence[str], title: str, max_cols: int = 2) -> Figure:
    """Grid of cells (``max_cols`` per row): the image (caption: id, truth → prediction) beside
    its per-attribute score bars; axes placed in inches, so no space is left between cells."""
    if not cells:
        raise ValueError("build_audit_figure: no cells")
    cols, geo, margin, head = min(max_cols, len(cells)), audit_geometry(cells, names), 0.2, 0.45
    rows = -(-len(cells) // cols)
    width, height = 2 * margin + cols * geo.width, head + margin + rows * geo.height
    fig = new_figure(width, height)

    def box(x: float, y: float, w: float, h: float) -> list[float]:  # inches from the top-left → figure fraction
        return [x / width, 1 - (y + h) / height, w / width, h / height]

    with plot_style():
        fig.suptitle(title, y=1 - 0.12 / height, va="top")
        for i, cell in enumerate(cells):
            x0, y0 = margin + (i % cols) * geo.width, head + (i // cols) * geo.height + geo.caption_h
            ax = fig.add_axes(box(x0, y0, geo.image_w, geo.image_h))
            if cell.image is not None:
                ax.imshow(cell.image)
            else:
                ax.text(0.5, 0.5, "image unreadable", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(cell.caption, loc="left")
            ax.set_axis_off()
            bars = fig.add_axes(box(x0 + geo.image_w + geo.gap + geo.label_w, y0, geo.bars_w, geo.bars_h))
            ax.set_anchor("N")
            _draw_scores(bars, cell, names)
    return fig


def audit_cells(probs: np.ndarray, targets: np.ndarray, thresholds: Sequence[float] | None, kind: str,
                ids: Sequence[str], states: tuple[Sequence[str], Sequence[str]], image_path: Callable[[str], Path],
                k: int = AUDIT_K) -> list[AuditCell]:
    """The :class:`AuditCell` of the ``k`` images with the highest-scoring false positives."""
    fps = false_positives(probs, targets, thresholds, kind)
    n_cols = probs.shape[1]
    cells = []
    for row in audit_rows(fps, k):
        fired = np.zeros(n_cols, bool)
        fired[[f.column for f in fps if f.row == row]] = True
        truth = (np.eye(n_cols, dtype=int)[int(targets[row])] if kind == "softmax" else np.asarray(targets[row], int))
        thr = None if kind == "softmax" else np.asarray(thresholds, dtype=float)
        caption = f"{_short(str(ids[row]))}\ntruth {states[0][row]} → pred {states[1][row]}"
        cells.append(AuditCell(str(ids[row]), read_display_image(image_path(str(ids[row]))),
                               np.asarray(probs[row], float), truth, thr, fired, caption))
    return cells


def audit_lines(cells: Sequence[AuditCell], names: Sequence[str]) -> list[str]:
    """One text line per audited image for report.md: id, states, its FPs, every score."""
    lines = []
    for cell in cells:
        fired = []
        for a in np.flatnonzero(cell.fp):
            limit = f" ≥ thr {cell.thresholds[a]:.2f}" if cell.thresholds is not None else ""
            fired.append(f"{names[a]} {cell.scores[a]:.2f}{limit}")
        scores = " ".join(f"{n}={100 * s:.0f}%" for n, s in zip(names, cell.scores))
        lines.append(f"{cell.id}: {cell.caption.splitlines()[-1]}; FP {', '.join(fired)}; {scores}")
    return lines


def write_fp_audit(out: Path, cells: Sequence[AuditCell], names: Sequence[str], experiment: str,
                   fold: int | None) -> Path | None:
    """``fp_audit.png`` of the cells (None and nothing written when there is no false positive)."""
    if not cells:
        return None
    what = f"FP audit: the {len(cells)} images with the highest-scoring false positives"
    return save_figure(build_audit_figure(cells, names, figure_title(experiment, fold, what)), out)


def run_config(cfg, metrics: dict[str, Any], history: pd.DataFrame, params_m: float) -> dict[str, Any]:
    best = metrics["versions"].get("best", {})
    return {"version": cfg.name, "backbone_name": cfg.backbone,
            "arch": f"{cfg.backbone} {len(best.get('per_attr', best.get('per_class', {})))} heads ({cfg.kind}), loss {cfg.loss}"
                    + (f", SWA-{cfg.swa_n}" if cfg.swa_n else ""),
            "params_M": params_m, "attrs": list(best.get("per_attr", best.get("per_class", {}))), "img_size": cfg.image_size,
            "best_val_metric": metrics.get(f"best_{cfg.monitor}"), "best_epoch": metrics.get("best_epoch"),
            "epochs_run": int(len(history)), "oof_metrics_best": best, "oof_metrics_swa": metrics["versions"].get("swa"),
            "swa_n": cfg.swa_n, "swa_source_ckpts": metrics.get("swa_sources", []),
            "hyperparams": {"batch": cfg.batch_size, "epochs": cfg.epochs, "lr": cfg.lr, "wd": cfg.weight_decay,
                            "img_size": cfg.image_size, "loss": cfg.loss, "weighted_sampler": cfg.weighted_sampler,
                            "cam_erase_p": cfg.cam_erase_p}}


def fp_audit_section(audit: Sequence[str], has_png: bool) -> str:
    head = "## FP audit — highest-scoring false positives (OOF)\n"
    if not audit:
        return head + "No false positive in this fold's OOF predictions."
    legend = ("\n\nEach cell: the image (id, truth state → predicted state), its score per attribute "
              "(bars in the attribute colours), the threshold (black mark) and the truth; false positives "
              "outlined and labelled red.")
    return head + "```\n" + "\n".join(audit) + "\n```" + ("\n![fp audit](fp_audit.png)" + legend if has_png else "")


def write_fold_report(cfg, fold_dir: Path, history: pd.DataFrame, metrics: dict[str, Any], samples: list[str],
                      audit: list[str], params_m: float, others: dict[str, dict[str, Any]] | None = None) -> Path:
    save_json(fold_dir / "run_config.json", run_config(cfg, metrics, history, params_m))
    parts = [f"# {cfg.name} fold {metrics['fold']}", version_table(cfg, metrics, others), per_attribute_table(metrics),
             history_table(history),
             f"## Sample inference (OOF, {metrics['final']} + val thresholds)\n```\n" + "\n".join(samples) + "\n```",
             fp_audit_section(audit, (fold_dir / "fp_audit.png").exists()),
             "## Config\nSee `run_config.json` (same fields as the seed's run config)."]
    return write_text(fold_dir / "report.md", "\n\n".join(parts) + "\n")
