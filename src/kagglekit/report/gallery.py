"""Error-analysis pictures shared by the task reports: a grid of image tiles with boxes and
points drawn and a caption per tile (:func:`plot_gallery`), and the :mod:`kagglekit.report.plots`
bar chart and confusion heat map with the axis words a caller needs.

The house style is :mod:`kagglekit.report.plots`'s: bare Agg figures (``plots.new_figure``) built
and saved inside ``plots.plot_style()`` (DejaVu Sans), one colour per class index
(``plots.class_color``: boxes, points, bars and rows of one class share it), titles
``<experiment> fold <k>: <what>`` (``plots.figure_title``), PNGs written atomically
(``plots.save_figure``); every text is raised to at least :data:`MIN_FONT` points before saving.
Nothing here names a task: callers pass pixels, boxes, points and words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from kagglekit.formats.images import FormatError, read_rgb
from kagglekit.report import plots
from kagglekit.report.plots import PathLike, plot_style, save_figure

RGB = tuple[float, float, float]
MIN_FONT = float(plots.MIN_FONT_PT)  # points: no text in a report picture is smaller
TILE_INCHES = 4.2  # width of one gallery tile
MAX_DISPLAY_SIDE = 900  # image pixels drawn per side at most (larger images are subsampled for display)
BLANK = (0.92, 0.92, 0.92)  # canvas of a tile whose image is not available


def text_colour(background: RGB) -> str:
    """Black or white, whichever reads better on ``background`` (relative luminance)."""
    r, g, b = background
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.5 else "white"


@dataclass(frozen=True)
class Box:
    """One box ``xyxy`` (4,) in image pixels; ``dashed`` (ground truth), ``emphasis`` (drawn thick:
    an error), ``label`` written on a patch of the box colour at its left corner (solid boxes: above
    the top edge, dashed: below the bottom edge, so a prediction and its truth do not cover each other's)."""
    xyxy: tuple[float, float, float, float]
    colour: RGB
    label: str = ""
    dashed: bool = False
    emphasis: bool = False


@dataclass(frozen=True)
class Points:
    """Points ``xy`` (K, 2) in image pixels, one ``marker``, ``colours`` (K,) one per point."""
    xy: np.ndarray
    colours: Sequence[RGB]
    marker: str = "o"


@dataclass
class Tile:
    """One picture of a gallery. ``image`` (H, W, 3) uint8, or None when the file is not available
    (a blank canvas of ``size`` is drawn, the overlay still is). ``size`` = (width, height) of the
    image in pixels; ``view`` = (x0, y0, x1, y1) crop shown (None: the whole image); ``links``
    (L, 2, 2) = L segments, each (start xy, end xy), e.g. a predicted point → its true point."""
    image: np.ndarray | None
    size: tuple[int, int]
    caption: str
    boxes: Sequence[Box] = ()
    points: Sequence[Points] = ()
    links: np.ndarray | None = None
    link_colours: Sequence[RGB] = ()
    view: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class LegendEntry:
    """One legend line: a line style (``"-"``, ``"--"``, ``""`` for none) and/or a marker."""
    label: str
    colour: RGB = (0.2, 0.2, 0.2)
    linestyle: str = "-"
    marker: str = ""
    linewidth: float = 1.5


def read_image_or_none(path: Path) -> np.ndarray | None:
    """(H, W, 3) uint8 of ``path``, or None when it is missing or unreadable (the tile is then
    drawn on a blank canvas and says so)."""
    try:
        return read_rgb(Path(path))
    except (OSError, FormatError):
        return None


def new_figure(width: float, height: float) -> Figure:
    """A bare Agg figure (never a GUI backend), constrained layout (``plots.new_figure``)."""
    return plots.new_figure(width, height, layout="constrained")


def raise_small_text(fig: Figure, minimum: float = MIN_FONT) -> None:
    """Every text of ``fig`` (titles, labels, ticks, annotations, legends) at least ``minimum`` pt."""
    for artist in fig.findobj(Text):
        if artist.get_text() and artist.get_fontsize() < minimum:
            artist.set_fontsize(minimum)


def save_report_figure(fig: Figure, path: PathLike) -> Path:
    """:func:`raise_small_text`, then the PNG written atomically (plots.save_figure)."""
    raise_small_text(fig)
    return save_figure(fig, path)


def _show_image(ax: Axes, tile: Tile) -> None:
    width, height = tile.size
    if tile.image is None:
        ax.add_patch(Rectangle((0, 0), width, height, facecolor=BLANK, edgecolor="none", zorder=0))
        ax.text(width / 2, height / 2, "image not available", ha="center", va="center", fontsize=MIN_FONT,
                color="0.35", zorder=1)
    else:
        step = max(1, math.ceil(max(tile.image.shape[:2]) / MAX_DISPLAY_SIDE))
        ax.imshow(tile.image[::step, ::step], extent=(0, width, height, 0), interpolation="bilinear", zorder=0)
    x0, y0, x1, y1 = tile.view if tile.view is not None else (0, 0, width, height)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)  # image rows grow downwards
    ax.set_aspect("equal")


def _draw_boxes(ax: Axes, boxes: Sequence[Box]) -> None:
    for b in boxes:
        x0, y0, x1, y1 = b.xyxy
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=b.colour,
                               linewidth=3.2 if b.emphasis else 1.4, linestyle="--" if b.dashed else "-", zorder=3))
        if b.label:  # solid boxes labelled above their top edge, dashed ones below their bottom edge
            ax.text(x0, y1 if b.dashed else y0, b.label, fontsize=MIN_FONT, color=text_colour(b.colour),
                    va="top" if b.dashed else "bottom", ha="left",
                    clip_on=True, zorder=4, bbox={"facecolor": b.colour, "alpha": 0.85, "pad": 1.0, "edgecolor": "none"})


def _draw_points(ax: Axes, tile: Tile) -> None:
    if tile.links is not None and len(tile.links):
        colours = list(tile.link_colours) or [(0.1, 0.1, 0.1)] * len(tile.links)
        for (start, end), colour in zip(np.asarray(tile.links, dtype=float), colours):
            ax.plot([start[0], end[0]], [start[1], end[1]], color=colour, linewidth=1.3, zorder=3)
    for p in tile.points:
        xy = np.asarray(p.xy, dtype=float).reshape(-1, 2)
        filled = p.marker not in ("x", "+", "1", "2", "3", "4")
        ax.scatter(xy[:, 0], xy[:, 1], c=[tuple(c) for c in p.colours], marker=p.marker, s=42, zorder=5,
                   linewidths=1.6 if not filled else 0.8, edgecolors="black" if filled else None)


def draw_tile(ax: Axes, tile: Tile, xlabel: bool = True, ylabel: bool = True) -> None:
    """Image (or blank canvas), boxes, links, points and the caption (as the panel title)."""
    _show_image(ax, tile)
    _draw_boxes(ax, tile.boxes)
    _draw_points(ax, tile)
    for artist in (*ax.texts, *ax.patches, *ax.lines, *ax.collections):
        artist.set_in_layout(False)  # overlays are clipped to the panel: the layout spaces titles and ticks only
    ax.set_title(tile.caption, fontsize=MIN_FONT + 1)
    ax.tick_params(labelsize=MIN_FONT)
    if xlabel:
        ax.set_xlabel("x (pixels)")
    if ylabel:
        ax.set_ylabel("y (pixels)")


def gallery_figure(tiles: Sequence[Tile], title: str, legend: Sequence[LegendEntry] = (), columns: int = 3) -> Figure:
    """A grid of ``tiles`` (row-major, ``columns`` per row), ``title`` above, ``legend`` below."""
    if not tiles:
        raise ValueError("plot_gallery needs at least one tile")
    cols = max(1, min(columns, len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    aspect = [min(1.4, max(0.5, (t.view[3] - t.view[1]) / max(1e-6, t.view[2] - t.view[0]) if t.view else
                                t.size[1] / max(1, t.size[0]))) for t in tiles]
    legend_rows = math.ceil(len(legend) / 4)
    fig = new_figure(TILE_INCHES * cols, rows * (TILE_INCHES * max(aspect) + 0.8) + 0.4 + 0.3 * legend_rows)
    with plot_style():
        for i, tile in enumerate(tiles):
            ax = fig.add_subplot(rows, cols, i + 1)
            draw_tile(ax, tile, xlabel=i >= len(tiles) - cols, ylabel=i % cols == 0)
        fig.suptitle(title)
        if legend:
            handles = [Line2D([], [], color=e.colour, linestyle=e.linestyle or "none", marker=e.marker or None,
                              linewidth=e.linewidth, markersize=8) for e in legend]
            fig.legend(handles, [e.label for e in legend], loc="outside lower center", ncols=min(4, len(legend)),
                       frameon=False)
    return fig


def plot_gallery(tiles: Sequence[Tile], path: PathLike, title: str, legend: Sequence[LegendEntry] = (),
                 columns: int = 3) -> Path:
    """PNG of :func:`gallery_figure`, written atomically. Returns ``path``."""
    return save_report_figure(gallery_figure(tiles, title, legend, columns), path)


def plot_titled_bars(names: Sequence[str], values: np.ndarray, path: PathLike, title: str, xlabel: str,
                     ylabel: str) -> Path:
    """The per-class bar chart of :mod:`kagglekit.report.plots` (values (n,), bar i in
    ``class_color(i)``, NaN bars tick-labelled n/a) titled ``title``, x axis named ``xlabel``."""
    fig = plots._build_bar_figure(list(names), np.asarray(values, dtype=float), title, ylabel)
    with plot_style():
        fig.axes[0].set_xlabel(xlabel)
    return save_report_figure(fig, path)


def plot_titled_confusion(cm: np.ndarray, names: Sequence[str], path: PathLike, title: str,
                          xlabel: str = "predicted class", ylabel: str = "true class",
                          colorbar_label: str = "share of the true class") -> Path:
    """The row-normalised confusion heat map of :mod:`kagglekit.report.plots` (cm (n, n), rows =
    truth) titled ``title``, with the caller's axis and colour-bar words (what the rows count)."""
    fig = plots._build_confusion_figure(np.asarray(cm), list(names), True, title)
    with plot_style():
        ax, bar = fig.axes[0], fig.axes[-1]
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        bar.set_ylabel(colorbar_label)
    return save_report_figure(fig, path)


def box_xyxy(bbox_xywh: Sequence[float]) -> tuple[float, float, float, float]:
    """COCO ``[x, y, w, h]`` → ``(x0, y0, x1, y1)``."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    return x, y, x + w, y + h


def padded_view(xy: np.ndarray, size: tuple[int, int], pad: float = 0.25, minimum: float = 32.0
                ) -> tuple[float, float, float, float]:
    """A crop (x0, y0, x1, y1) around points ``xy`` (N, 2) (NaN ignored), ``pad`` of its side added
    on each side, at least ``minimum`` pixels wide, inside the image of ``size`` (width, height)."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(1)]
    if not len(xy):
        return 0.0, 0.0, float(size[0]), float(size[1])
    lo, hi = xy.min(0), xy.max(0)
    half = np.maximum((hi - lo) * (0.5 + pad), minimum / 2)
    centre = (lo + hi) / 2
    x0, y0 = np.maximum(centre - half, [-0.05 * size[0], -0.05 * size[1]])
    x1, y1 = np.minimum(centre + half, [1.05 * size[0], 1.05 * size[1]])
    return float(x0), float(y0), float(x1), float(y1)
