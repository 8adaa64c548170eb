"""kagglekit.report.gallery: what a gallery draws (tiles, captions, boxes, points, links, legend),
the class colours it uses, the text sizes and glyphs, and the helpers around it."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import Rectangle
from matplotlib.text import Text
from PIL import Image

from kagglekit.report.gallery import (
    MIN_FONT,
    Box,
    LegendEntry,
    Points,
    Tile,
    box_xyxy,
    gallery_figure,
    padded_view,
    plot_gallery,
    raise_small_text,
    read_image_or_none,
)
from kagglekit.report.plots import class_color, missing_glyphs


def _tiles() -> list[Tile]:
    image = np.zeros((40, 60, 3), np.uint8)
    boxes = [Box((5, 5, 20, 20), class_color(0), "cat 0.90"), Box((30, 10, 50, 30), class_color(1), "missed dog",
                                                                   dashed=True, emphasis=True)]
    points = [Points(np.array([[10, 10], [20, 20]]), [class_color(0), class_color(1)], "o"),
              Points(np.array([[12, 11], [25, 22]]), [class_color(0), class_color(1)], "x")]
    links = np.array([[[12, 11], [10, 10]], [[25, 22], [20, 20]]], float)
    return [Tile(image, (60, 40), "image 1\n1 FP", boxes),
            Tile(None, (60, 40), "image 2 → not on disk", points=points, links=links,
                 link_colours=[class_color(0), class_color(1)], view=(0, 0, 30, 30))]


def test_gallery_draws_each_tile_with_its_overlay_and_caption():
    fig = gallery_figure(_tiles(), "exp fold 0: most false positives", [LegendEntry("truth", linestyle="--")], columns=3)
    first, second = fig.axes
    assert fig.get_suptitle() == "exp fold 0: most false positives"
    assert [first.get_title(), second.get_title()] == ["image 1\n1 FP", "image 2 → not on disk"]
    boxes = [p for p in first.patches if isinstance(p, Rectangle) and not p.get_fill()]
    assert [tuple(b.get_edgecolor()[:3]) for b in boxes] == [class_color(0), class_color(1)]
    assert [b.get_linestyle() for b in boxes] == ["-", "--"] and boxes[1].get_linewidth() > boxes[0].get_linewidth()
    assert [t.get_text() for t in first.texts] == ["cat 0.90", "missed dog"]
    assert len(first.images) == 1 and not second.images  # the missing image: a blank canvas and a note
    assert "image not available" in [t.get_text() for t in second.texts]
    assert len(second.lines) == 2 and sum(isinstance(c, PathCollection) for c in second.collections) == 2
    assert second.get_xlim() == (0, 30) and second.get_ylim() == (30, 0)  # the view, rows downwards
    assert first.get_xlabel() == "x (pixels)" and first.get_ylabel() == "y (pixels)"
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["truth"]
    assert missing_glyphs(fig) == []


def test_text_is_raised_to_the_minimum_and_png_written(tmp_path):
    fig = gallery_figure(_tiles(), "t")
    fig.axes[0].text(0, 0, "tiny", fontsize=5)
    raise_small_text(fig)
    assert min(t.get_fontsize() for t in fig.findobj(Text) if t.get_text()) >= MIN_FONT
    path = plot_gallery(_tiles(), tmp_path / "g.png", "exp fold 1: what")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.width > 400
    with pytest.raises(ValueError, match="at least one tile"):
        gallery_figure([], "t")


def test_helpers(tmp_path):
    assert box_xyxy([1, 2, 3, 4]) == (1.0, 2.0, 4.0, 6.0)
    assert padded_view(np.array([[10, 10], [20, 30], [np.nan, 5]]), (100, 100), pad=0.0, minimum=4) == (10, 10, 20, 30)
    assert padded_view(np.zeros((0, 2)), (50, 40)) == (0.0, 0.0, 50.0, 40.0)
    assert read_image_or_none(tmp_path / "absent.png") is None
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert read_image_or_none(tmp_path / "broken.png") is None
    Image.fromarray(np.full((3, 4), 7, np.uint8)).save(tmp_path / "grey.png")
    assert read_image_or_none(tmp_path / "grey.png").shape == (3, 4, 3)
