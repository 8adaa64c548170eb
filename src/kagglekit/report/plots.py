"""Report figures (PNG): training history, per-class bars, confusion matrix.

Rendering uses matplotlib's Agg backend explicitly (``FigureCanvasAgg`` attached to a bare
``matplotlib.figure.Figure``), so nothing is ever displayed and the process-wide pyplot backend
of the caller (e.g. a notebook's inline backend) is left untouched; no pyplot figure registry is
involved, so figures cannot leak. Each PNG is rendered into memory and written atomically with
``kagglekit.io.write_bytes``.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from kagglekit.io import write_bytes

PathLike = str | os.PathLike
DPI = 100
DEFAULT_LOSS_COLS = ("train_loss", "valid_loss")
DEFAULT_METRIC_COLS = ("valid_miou", "valid_pixel_acc", "valid_dice", "valid_score", "valid_metric")
MAX_ANNOTATED_CLASSES = 30  # confusion cells get numbers only up to this many classes


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)  # Agg, explicitly: never a GUI/display backend
    return fig


def save_figure(fig: Figure, path: PathLike) -> Path:
    """Render ``fig`` to PNG in memory, write it atomically to ``path``, then clear the figure."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        fig.clear()
    return write_bytes(path, buffer.getvalue())


def _present_numeric(history: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    return [c for c in columns if c in history.columns and pd.api.types.is_numeric_dtype(history[c])]


def _build_history_figure(
    history: pd.DataFrame, x: str, loss_cols: Sequence[str], metric_cols: Sequence[str]
) -> Figure:
    """One panel for the present loss columns, one for the present metric columns (absent or
    non-numeric columns are skipped; a panel with nothing to draw is left out)."""
    if not isinstance(history, pd.DataFrame):
        raise ValueError(f"plot_history needs a DataFrame, got {type(history).__name__}")
    if x not in history.columns:
        raise ValueError(f"history has no x column {x!r} (columns: {list(history.columns)}); pass x=")
    panels = [(title, cols) for title, cols in
              (("loss", _present_numeric(history, loss_cols)),
               ("metric", _present_numeric(history, metric_cols))) if cols]
    if not panels:
        raise ValueError(
            f"history has none of the columns to plot (looked for {list(loss_cols) + list(metric_cols)}; "
            f"has {list(history.columns)}); pass loss_cols= / metric_cols="
        )
    fig = _new_figure(6.0 * len(panels), 4.0)
    for i, (title, cols) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for col in cols:
            ax.plot(history[x].to_numpy(), history[col].to_numpy(dtype=float), marker=".", label=col)
        ax.set_xlabel(x)
        ax.set_ylabel(title)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def plot_history(
    history: pd.DataFrame,
    path: PathLike,
    *,
    x: str = "epoch",
    loss_cols: Sequence[str] = DEFAULT_LOSS_COLS,
    metric_cols: Sequence[str] = DEFAULT_METRIC_COLS,
) -> Path:
    """PNG of a training history (one row per epoch): losses panel and metrics panel, each
    drawing only the listed columns present in ``history``. Returns ``path``."""
    return save_figure(_build_history_figure(history, x, loss_cols, metric_cols), path)


def _build_bar_figure(names: Sequence[str], values: np.ndarray, title: str, ylabel: str) -> Figure:
    """Bars (n_classes,); NaN values get no bar and the tick label ``<name> (n/a)``."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) != len(names):
        raise ValueError(
            f"plot_per_class_bars: values must be 1-D with one value per name, got shape "
            f"{values.shape} for {len(names)} names"
        )
    missing = np.isnan(values)
    positions = np.arange(len(values))
    fig = _new_figure(max(6.0, 0.35 * len(values) + 2.0), 4.5)
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(positions[~missing], values[~missing], color="tab:blue")
    ax.set_xticks(positions)
    labels = [f"{n} (n/a)" if m else str(n) for n, m in zip(names, missing)]
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(values) - 0.4)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_per_class_bars(
    names: Sequence[str], values: np.ndarray, path: PathLike, *, title: str = "", ylabel: str = ""
) -> Path:
    """PNG bar chart of one value per class (``values`` shape (n_classes,)); NaN classes are drawn
    without a bar and tick-labelled ``n/a``. Returns ``path``."""
    return save_figure(_build_bar_figure(list(names), values, title, ylabel), path)


def _normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Row-normalised confusion (rows = true class); rows with no samples become NaN."""
    totals = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, cm / np.where(totals > 0, totals, 1), np.nan)


def _build_confusion_figure(cm: np.ndarray, names: Sequence[str], normalize: bool) -> Figure:
    """Heat map of ``cm`` (n_classes, n_classes), rows = true class, columns = predicted class."""
    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(names):
        raise ValueError(
            f"plot_confusion: cm must be square (n_classes, n_classes) matching {len(names)} "
            f"names, got shape {cm.shape}"
        )
    shown = _normalize_rows(cm) if normalize else cm
    n = len(names)
    side = max(5.0, 0.4 * n + 3.0)
    fig = _new_figure(side, side)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.ma.masked_invalid(shown), cmap="Blues", vmin=0.0,
                      vmax=1.0 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(np.arange(n), [str(s) for s in names], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(np.arange(n), [str(s) for s in names], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion (row-normalised)" if normalize else "confusion (counts)")
    if n <= MAX_ANNOTATED_CLASSES:
        _annotate_cells(ax, shown, normalize)
    fig.tight_layout()
    return fig


def _annotate_cells(ax: Axes, shown: np.ndarray, normalize: bool) -> None:
    top = np.nanmax(shown) if np.isfinite(shown).any() else 1.0
    for (i, j), v in np.ndenumerate(shown):
        if np.isnan(v):
            continue
        text = f"{v:.2f}" if normalize else f"{v:.0f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=7,
                color="white" if v > 0.5 * top else "black")


def plot_confusion(
    cm: np.ndarray, names: Sequence[str], path: PathLike, normalize: bool = True
) -> Path:
    """PNG heat map of a confusion matrix (n_classes, n_classes; rows true, columns predicted),
    row-normalised when ``normalize`` (empty true-class rows left blank). Returns ``path``."""
    return save_figure(_build_confusion_figure(cm, list(names), normalize), path)
