"""Issue 16: the multi-label FP audit — it picks the highest-scoring false positives, and draws
each image at a readable size with its truth, per-attribute scores and thresholds, the false
positives marked, captions (with the → arrow) in a font that has every glyph."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font
from matplotlib.text import Text
from PIL import Image

from kagglekit.report.plots import DPI, MIN_FONT_PT, class_color, missing_glyphs
from kagglekit.tasks.multilabel import report as R

NAMES = ["front_right", "front_left", "rear_right", "rear_left", "hood"]


def fake(n: int = 30, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, len(NAMES))), rng.integers(-1, 2, (n, len(NAMES))), [0.5, 0.4, 0.6, 0.5, 0.3]


def test_false_positives_are_every_labelled_negative_over_its_threshold_highest_first() -> None:
    probs, targets, thr = fake()
    found = R.false_positives(probs, targets, thr)
    brute = sorted(((probs[r, c], r, c) for r, c in itertools.product(range(len(probs)), range(len(NAMES)))
                    if targets[r, c] == 0 and probs[r, c] >= thr[c]), key=lambda t: (-t[0], t[1], t[2]))
    assert [(f.score, f.row, f.column) for f in found] == brute
    assert all(targets[f.row, f.column] == 0 for f in found)  # never a missing (-1) or positive label


def test_audit_picks_the_images_with_the_highest_scoring_false_positives() -> None:
    probs, targets, thr = fake(n=40, seed=1)
    rows = R.audit_rows(R.false_positives(probs, targets, thr), 6)
    best = {}
    for r, c in zip(*np.nonzero((targets == 0) & (probs >= np.asarray(thr)))):
        best[r] = max(best.get(r, 0.0), probs[r, c])
    assert rows == sorted(best, key=lambda r: (-best[r], r))[:6]
    assert len(set(rows)) == len(rows)


def test_softmax_false_positive_is_the_wrong_argmax() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7], [0.05, 0.9, 0.05]])
    found = R.false_positives(probs, np.array([0, 0, 2, 2]), None, kind="softmax")
    assert [(f.row, f.column, f.score) for f in found] == [(3, 1, 0.9), (1, 1, 0.8)]


@pytest.fixture
def cells(tmp_path):
    probs, targets, thr = fake()
    paths = {}
    for i in range(len(probs)):
        paths[f"images/{i}.jpg"] = tmp_path / "images" / f"{i}.jpg"
    (tmp_path / "images").mkdir()
    for path in paths.values():
        Image.fromarray(np.full((480, 640, 3), 90, np.uint8)).save(path)
    ids = list(paths)
    states = (["mixed"] * len(ids), ["open"] * len(ids))
    return R.audit_cells(probs, targets, thr, "multilabel", ids, states, lambda i: paths[i], k=8), probs, thr


def test_audit_cells_show_truth_scores_thresholds_and_the_false_positives(cells) -> None:
    cells, probs, thr = cells
    assert len(cells) == 8
    first = cells[0]
    assert first.caption.endswith("truth mixed → pred open")
    assert np.allclose(first.thresholds, thr) and first.fp.any() and first.image.shape == (480, 640, 3)
    fig = R.build_audit_figure(cells, NAMES, "door fold 0: FP audit")
    image_axes, bar_axes = fig.axes[::2], fig.axes[1::2]
    assert [ax.get_title(loc="left") for ax in image_axes] == [c.caption for c in cells]
    labels = [t.get_text() for t in bar_axes[0].get_yticklabels()]
    assert labels == [f"{n}  truth {'?' if t < 0 else t}" for n, t in zip(NAMES, first.truth)]
    red = [t.get_color() == "red" for t in bar_axes[0].get_yticklabels()]
    assert red == first.fp.tolist()
    bars = bar_axes[0].patches
    assert [b.get_width() for b in bars] == pytest.approx(first.scores.tolist())
    assert all(np.allclose(b.get_facecolor()[:3], class_color(a)) for a, b in enumerate(bars))
    values = [t.get_text() for t in bar_axes[0].texts]
    fp_col = int(np.flatnonzero(first.fp)[0])
    assert values[fp_col] == f"{first.scores[fp_col]:.2f} ≥ {thr[fp_col]:.2f} FP"
    # readable: each image drawn at least ~3 in wide (not a thumbnail), no big empty margins
    fig.canvas.draw()
    width_px = image_axes[0].get_window_extent().width
    assert width_px >= 3 * DPI
    used = sum(ax.get_window_extent().width * ax.get_window_extent().height for ax in fig.axes)
    assert used / (fig.bbox.width * fig.bbox.height) > 0.35


def test_audit_png_fonts_have_the_arrow(cells, tmp_path) -> None:
    cells, _, _ = cells
    fig = R.build_audit_figure(cells, NAMES, "door fold 0: FP audit")
    fig.canvas.draw()
    arrows = [t for t in fig.findobj(Text) if "→" in t.get_text()]
    assert arrows
    for text in arrows:
        font = font_manager.findfont(text.get_fontproperties(), fallback_to_default=False)
        assert ord("→") in FT2Font(font).get_charmap(), font
    assert missing_glyphs(fig) == []
    assert all(t.get_fontsize() >= MIN_FONT_PT for t in fig.findobj(Text) if t.get_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        png = R.write_fp_audit(tmp_path / "fp_audit.png", cells, NAMES, "door_v20260515", 0)
    assert Image.open(png).size[0] >= 1200
    assert R.write_fp_audit(tmp_path / "none.png", [], NAMES, "door", 0) is None
    assert not (tmp_path / "none.png").exists()


def test_report_section_and_text_lines(cells) -> None:
    cells, _, thr = cells
    lines = R.audit_lines(cells, NAMES)
    assert len(lines) == 8 and lines[0].startswith(cells[0].id + ": truth mixed → pred open; FP ")
    assert "≥ thr" in lines[0]
    assert "fp_audit.png" in R.fp_audit_section(lines, True)
    assert "No false positive" in R.fp_audit_section([], False)
