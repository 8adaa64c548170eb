"""Report figures (PNG): training history, per-class bars, confusion matrix, and the shared
look every task's pictures use.

Rendering uses matplotlib's Agg backend explicitly (``FigureCanvasAgg`` attached to a bare
``matplotlib.figure.Figure``), so nothing is ever displayed and the process-wide pyplot backend
of the caller (e.g. a notebook's inline backend) is left untouched; no pyplot figure registry is
involved, so figures cannot leak. Each PNG is rendered into memory and written atomically with
``kagglekit.io.write_bytes``.

House style (one place for it):

* the font is set explicitly: :data:`FONT_FAMILY` (DejaVu Sans, bundled with matplotlib, has
  every glyph the reports use: arrows, ×, ·, ≥) at sizes ≥ 9 pt, through :func:`plot_style`
  around building *and* saving (tick labels are made at draw time);
  :func:`missing_glyphs` lists any character of a figure's texts its font lacks;
* every figure is titled with the experiment and the fold (:func:`figure_title`);
* a class (or attribute) index has one colour in every picture of a task: :func:`class_color`
  (index → RGB, independent of how many classes a picture shows);
* integer axes (epochs, iterations) get integer ticks (:func:`integer_ticks`).
"""
from __future__ import annotations

import colorsys
import contextlib
import io
import os
import re
from pathlib import Path
from typing import Iterator, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kagglekit.io import write_bytes

PathLike = str | os.PathLike
DPI = 100
DEFAULT_LOSS_COLS = ("train_loss", "valid_loss")
DEFAULT_METRIC_COLS = ("valid_miou", "valid_pixel_acc", "valid_dice", "valid_score", "valid_metric")
MAX_ANNOTATED_CLASSES = 30  # confusion cells get numbers only up to this many classes
FONT_FAMILY = "DejaVu Sans"  # matplotlib's bundled font: every glyph used here (→ × · ≥) is in it
MIN_FONT_PT = 9
STYLE = {"font.family": [FONT_FAMILY], "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
         "xtick.labelsize": MIN_FONT_PT, "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT,
         "figure.titlesize": 12, "savefig.facecolor": "white", "axes.unicode_minus": True}
# Class palette: tab10, then tab20's lighter partners; beyond 20, golden-ratio hues.
_BASE_PALETTE = [matplotlib.colormaps["tab10"](i)[:3] for i in range(10)] + \
                [matplotlib.colormaps["tab20"](2 * i + 1)[:3] for i in range(10)]
_FOLD_DIR = re.compile(r"^fold(\d+)$")


@contextlib.contextmanager
def plot_style() -> Iterator[None]:
    """The reports' matplotlib settings (font family and sizes), for building and saving."""
    with matplotlib.rc_context(STYLE):
        yield


def class_color(index: int) -> tuple[float, float, float]:
    """RGB in [0, 1] of class / attribute ``index`` — the same in every picture of a task."""
    if index < 0:
        raise ValueError(f"class index must be >= 0, got {index}")
    if index < len(_BASE_PALETTE):
        return tuple(float(c) for c in _BASE_PALETTE[index])  # type: ignore[return-value]
    return colorsys.hsv_to_rgb((index * 0.6180339887) % 1.0, 0.7, 0.85)


def class_palette(n: int) -> np.ndarray:
    """(n, 3) uint8 colours of classes 0..n-1 (:func:`class_color`), e.g. for label overlays."""
    return np.array([[round(255 * c) for c in class_color(i)] for i in range(n)], dtype=np.uint8).reshape(n, 3)


def figure_title(experiment: str | None, fold: int | str | None, what: str) -> str:
    """``"<experiment> fold <k>: <what>"``; fold None → ``"all folds (OOF)"``; no experiment → ``what``."""
    if not experiment:
        return what if fold is None else f"fold {fold}: {what}"
    where = "all folds (OOF)" if fold is None else (f"fold {fold}" if isinstance(fold, int) or str(fold).isdigit()
                                                    else str(fold))
    return f"{experiment} {where}: {what}"


def run_of_path(path: PathLike) -> tuple[str | None, int | None]:
    """(experiment, fold) read off ``output/<exp>/fold<k>/<file>``; (None, None) elsewhere. The
    fallback for callers that do not pass them yet."""
    parent = Path(path).parent
    match = _FOLD_DIR.match(parent.name)
    return (parent.parent.name or None, int(match.group(1))) if match else (None, None)


def integer_ticks(ax: Axes, values: np.ndarray) -> None:
    """Integer-only x ticks; a single x value gets a ±0.5 window, so one epoch shows tick 1."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() == finite.max():
        ax.set_xlim(finite.min() - 0.5, finite.max() + 0.5)


def new_figure(width: float, height: float, layout: str | None = None) -> Figure:
    """A bare Agg ``Figure`` of ``width`` × ``height`` inches (no pyplot), made in :func:`plot_style`."""
    with plot_style():
        fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(fig)  # Agg, explicitly: never a GUI/display backend
    return fig


_new_figure = new_figure  # the name other modules used before it was public


def save_figure(fig: Figure, path: PathLike) -> Path:
    """Render ``fig`` to PNG in memory (in :func:`plot_style`), write it atomically to ``path``,
    then clear the figure."""
    buffer = io.BytesIO()
    try:
        with plot_style():
            fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        fig.clear()
    return write_bytes(path, buffer.getvalue())


def missing_glyphs(fig: Figure) -> list[tuple[str, str]]:
    """(character, font file) for every character of the figure's texts that the font matplotlib
    picks for that text does not have (draws the figure first: tick labels exist after a draw)."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font
    from matplotlib.text import Text
    with plot_style():
        fig.canvas.draw()
        missing, charmaps = [], {}
        for text in fig.findobj(Text):
            content = text.get_text()
            if not content or not text.get_visible():
                continue
            font = font_manager.findfont(text.get_fontproperties(), fallback_to_default=False)
            charmap = charmaps.setdefault(font, FT2Font(font).get_charmap())
            missing += [(ch, font) for ch in sorted(set(content)) if not ch.isspace() and ord(ch) not in charmap]
    return sorted(set(missing))


def _present_numeric(history: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    return [c for c in columns if c in history.columns and pd.api.types.is_numeric_dtype(history[c])]


def _history_panels(history: pd.DataFrame, x: str, loss_cols: Sequence[str],
                    metric_cols: Sequence[str]) -> list[tuple[str, list[str]]]:
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
    return panels


def _build_history_figure(
    history: pd.DataFrame, x: str, loss_cols: Sequence[str], metric_cols: Sequence[str],
    experiment: str | None = None, fold: int | str | None = None,
) -> Figure:
    """One panel for the present loss columns, one for the present metric columns (absent or
    non-numeric columns are skipped; a panel with nothing to draw is left out); suptitle names
    the experiment and fold; x ticks are integers (epochs / iterations)."""
    panels = _history_panels(history, x, loss_cols, metric_cols)
    fig = new_figure(6.0 * len(panels), 4.0, layout="constrained")
    xs = history[x].to_numpy()
    with plot_style():
        fig.suptitle(figure_title(experiment, fold, "training history"))
        for i, (title, cols) in enumerate(panels):
            ax = fig.add_subplot(1, len(panels), i + 1)
            for col in cols:
                ax.plot(xs, history[col].to_numpy(dtype=float), marker="o", markersize=4, label=col)
            ax.set_xlabel(x)
            ax.set_ylabel(title)
            ax.set_title(title)
            integer_ticks(ax, xs)
            ax.grid(alpha=0.3)
            ax.legend()
    return fig


def plot_history(
    history: pd.DataFrame,
    path: PathLike,
    *,
    x: str = "epoch",
    loss_cols: Sequence[str] = DEFAULT_LOSS_COLS,
    metric_cols: Sequence[str] = DEFAULT_METRIC_COLS,
    experiment: str | None = None,
    fold: int | str | None = None,
) -> Path:
    """PNG of a training history (one row per epoch): losses panel and metrics panel, each
    drawing only the listed columns present in ``history``, titled ``<experiment> fold <k>``
    (not passed: read off ``output/<exp>/fold<k>/`` when ``path`` lies there). Returns ``path``."""
    if experiment is None and fold is None:
        experiment, fold = run_of_path(path)
    return save_figure(_build_history_figure(history, x, loss_cols, metric_cols, experiment, fold), path)


def _build_bar_figure(names: Sequence[str], values: np.ndarray, title: str, ylabel: str) -> Figure:
    """Bars (n_classes,), each in its class colour; NaN values get no bar and the tick label
    ``<name> (n/a)``."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) != len(names):
        raise ValueError(
            f"plot_per_class_bars: values must be 1-D with one value per name, got shape "
            f"{values.shape} for {len(names)} names"
        )
    missing = np.isnan(values)
    positions = np.arange(len(values))
    fig = new_figure(max(6.0, 0.4 * len(values) + 2.0), 4.5, layout="constrained")
    with plot_style():
        ax = fig.add_subplot(1, 1, 1)
        ax.bar(positions[~missing], values[~missing], color=[class_color(i) for i in positions[~missing]])
        ax.set_xticks(positions)
        labels = [f"{n} (n/a)" if m else str(n) for n, m in zip(names, missing)]
        ax.set_xticklabels(labels, rotation=60, ha="right")
        ax.set_xlim(-0.6, len(values) - 0.4)
        ax.set_title(title)
        ax.set_xlabel("class")
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    return fig


def plot_per_class_bars(
    names: Sequence[str], values: np.ndarray, path: PathLike, *, title: str = "", ylabel: str = "",
    experiment: str | None = None, fold: int | str | None = None,
) -> Path:
    """PNG bar chart of one value per class (``values`` shape (n_classes,)), bars in the class
    colours; NaN classes are drawn without a bar and tick-labelled ``n/a``. With ``experiment``
    (and ``fold``; None = all folds; neither passed: read off ``output/<exp>/fold<k>/``) the title
    is ``<experiment> fold <k>: <title>``. Returns ``path``."""
    if experiment is None and fold is None:
        experiment, fold = run_of_path(path)
        experiment = None if experiment and experiment in title else experiment
    if experiment is not None:
        title = figure_title(experiment, fold, title or ylabel or "per class")
    return save_figure(_build_bar_figure(list(names), values, title, ylabel), path)


def _normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Row-normalised confusion (rows = true class); rows with no samples become NaN."""
    totals = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, cm / np.where(totals > 0, totals, 1), np.nan)


def _build_confusion_figure(cm: np.ndarray, names: Sequence[str], normalize: bool,
                            title: str | None = None) -> Figure:
    """Heat map of ``cm`` (n_classes, n_classes), rows = true class, columns = predicted class."""
    cm = np.asarray(cm, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(names):
        raise ValueError(
            f"plot_confusion: cm must be square (n_classes, n_classes) matching {len(names)} "
            f"names, got shape {cm.shape}"
        )
    shown = _normalize_rows(cm) if normalize else cm
    n = len(names)
    side = max(6.0, 0.5 * n + 3.0)
    fig = new_figure(side, side, layout="constrained")
    with plot_style():
        ax = fig.add_subplot(1, 1, 1)
        image = ax.imshow(np.ma.masked_invalid(shown), cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                     label="share of the true class's pixels" if normalize else "count")
        ax.set_xticks(np.arange(n), [str(s) for s in names], rotation=60, ha="right")
        ax.set_yticks(np.arange(n), [str(s) for s in names])
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        what = "confusion (rows normalised)" if normalize else "confusion (counts)"
        ax.set_title(title or what)
        if n <= MAX_ANNOTATED_CLASSES:
            _annotate_cells(ax, shown, normalize)
    return fig


def _annotate_cells(ax: Axes, shown: np.ndarray, normalize: bool) -> None:
    """The value in each cell, white on the dark half of the colour scale (0..1 normalised,
    0..max for counts), black elsewhere."""
    top = 1.0 if normalize else (np.nanmax(shown) if np.isfinite(shown).any() else 1.0)
    for (i, j), v in np.ndenumerate(shown):
        if np.isnan(v):
            continue
        text = f"{v:.2f}" if normalize else f"{v:.0f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=MIN_FONT_PT,
                color="white" if v > 0.5 * top else "black")


def plot_confusion(
    cm: np.ndarray, names: Sequence[str], path: PathLike, normalize: bool = True, *,
    experiment: str | None = None, fold: int | str | None = None,
) -> Path:
    """PNG heat map of a confusion matrix (n_classes, n_classes; rows true, columns predicted),
    row-normalised when ``normalize`` (empty true-class rows left blank), titled with the
    experiment and fold (None = all folds; neither passed: read off ``output/<exp>/fold<k>/``).
    Returns ``path``."""
    if experiment is None and fold is None:
        experiment, fold = run_of_path(path)
    what = "confusion (rows normalised)" if normalize else "confusion (counts)"
    title = figure_title(experiment, fold, what) if experiment is not None else None
    return save_figure(_build_confusion_figure(cm, list(names), normalize, title), path)
