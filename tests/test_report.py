"""Tests for kagglekit.report: exact markdown output, and PNG figures that are real images."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kagglekit.report.markdown import markdown_kv, markdown_table
from kagglekit.report.plots import (
    DPI,
    _build_bar_figure,
    _build_history_figure,
    plot_confusion,
    plot_history,
    plot_per_class_bars,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROWS = [
    {"Epoch": 1, "Train Loss": 0.81234, "Valid mIoU": 0.6},
    {"Epoch": 2, "Train Loss": 0.70271, "Valid mIoU": float("nan")},
]
EXPECTED = (
    "| Epoch | Train Loss | Valid mIoU |\n"
    "| :---: | :---: | :---: |\n"
    "| 1 | 0.8123 | 0.6000 |\n"
    "| **2** | **0.7027** | **N/A** |\n"
)


# --------------------------------------------------------------------------- markdown
def test_markdown_table_exact_from_dicts_and_frame() -> None:
    assert markdown_table(ROWS, bold_row=1) == EXPECTED
    assert markdown_table(pd.DataFrame(ROWS), bold_row=1) == EXPECTED  # ints stay ints


def test_markdown_table_options() -> None:
    rows = [{"name": "a|b", "v": 1.5}, {"name": None, "extra": True}]
    assert markdown_table(rows, align="left", float_fmt="{:.1f}") == (
        "| name | v | extra |\n"
        "| :--- | :--- | :--- |\n"
        "| a\\|b | 1.5 | N/A |\n"
        "| N/A | N/A | True |\n"
    )
    assert "| ---: | ---: | ---: |" in markdown_table(rows, align="right")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [({"bold_row": 2}, r"bold_row=2 but the table has 2 rows \(0..1\)"),
     ({"align": "middle"}, r"align='middle'; valid: left, center, right")],
)
def test_markdown_table_errors(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        markdown_table(ROWS, **kwargs)


def test_markdown_table_rejects_non_tables() -> None:
    with pytest.raises(ValueError, match=r"row 0 is a int"):
        markdown_table([1, 2])
    with pytest.raises(ValueError, match=r"empty input"):
        markdown_table([])


def test_markdown_kv_exact() -> None:
    items = {"Best epoch": 2, "Valid mIoU": 0.70271, "Note": None, "Model": "unet"}
    assert markdown_kv(items) == (
        "- **Best epoch**: 2\n"
        "- **Valid mIoU**: 0.7027\n"
        "- **Note**: N/A\n"
        "- **Model**: unet\n"
    )


# --------------------------------------------------------------------------- figures
def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.size


def _history() -> pd.DataFrame:
    epochs = np.arange(1, 11)
    return pd.DataFrame({
        "epoch": epochs,
        "train_loss": 1.0 / epochs,
        "valid_loss": 1.2 / epochs,
        "valid_miou": 1.0 - 1.0 / (epochs + 1),
        "lr": 1e-3 * np.ones(10),
    })


def _legend_labels(fig) -> list[list[str]]:
    return [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]


def test_plot_history_two_panels(tmp_path) -> None:
    path = plot_history(_history(), tmp_path / "plots" / "history.png")
    assert path == tmp_path / "plots" / "history.png"
    assert _png_size(path) == (12 * DPI, 4 * DPI)  # two 6x4 inch panels
    assert [p.name for p in path.parent.iterdir()] == ["history.png"]  # atomic: no temp left


def test_plot_history_skips_missing_columns(tmp_path) -> None:
    history = _history().drop(columns=["valid_loss"])
    fig = _build_history_figure(history, "epoch", ("train_loss", "valid_loss"),
                                ("valid_miou", "valid_dice"))
    assert _legend_labels(fig) == [["train_loss"], ["valid_miou"]]
    only_losses = _history()[["epoch", "train_loss"]]
    assert _png_size(plot_history(only_losses, tmp_path / "h.png")) == (6 * DPI, 4 * DPI)
    with pytest.raises(ValueError, match=r"none of the columns to plot.*pass loss_cols"):
        plot_history(_history()[["epoch", "lr"]], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"no x column 'step'"):
        plot_history(_history(), tmp_path / "x.png", x="step")
    assert not (tmp_path / "x.png").exists()


def test_plot_per_class_bars_nan_is_absent(tmp_path) -> None:
    names, values = ["wall", "floor", "bed"], np.array([0.7, np.nan, 0.4])
    fig = _build_bar_figure(names, values, "IoU", "IoU")
    ax = fig.axes[0]
    assert len(ax.patches) == 2
    assert [t.get_text() for t in ax.get_xticklabels()] == ["wall", "floor (n/a)", "bed"]
    width, height = _png_size(plot_per_class_bars(names, values, tmp_path / "iou.png",
                                                  title="IoU", ylabel="IoU"))
    assert (width, height) == (6 * DPI, int(4.5 * DPI))
    with pytest.raises(ValueError, match=r"one value per name.*\(2,\) for 3 names"):
        plot_per_class_bars(names, values[:2], tmp_path / "bad.png", title="t", ylabel="y")


def test_plot_confusion(tmp_path) -> None:
    cm = np.array([[50, 3, 0], [4, 20, 1], [0, 0, 0]])  # last class never occurs: blank row
    names = ["a", "b", "c"]
    assert _png_size(plot_confusion(cm, names, tmp_path / "cm.png")) == (6 * DPI, 6 * DPI)
    assert _png_size(plot_confusion(cm, names, tmp_path / "cm_counts.png", normalize=False))
    big = np.random.default_rng(0).integers(0, 9, size=(40, 40))
    width, height = _png_size(plot_confusion(big, [f"c{i}" for i in range(40)], tmp_path / "b.png"))
    assert width == height == int((0.5 * 40 + 3.0) * DPI)  # 0.5 in per class: 9 pt cell numbers fit
    with pytest.raises(ValueError, match=r"square.*3 names.*\(3, 2\)"):
        plot_confusion(cm[:, :2], names, tmp_path / "bad.png")


def test_no_pyplot_figures_leak(tmp_path) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plot_history(_history(), tmp_path / "h.png")
    plot_confusion(np.eye(2), ["x", "y"], tmp_path / "c.png")
    assert plt.get_fignums() == before


def test_temperature_section_says_whether_the_optimum_is_interior():
    from kagglekit.tasks.segmentation.report import temperature_section
    table = [{"temperature": 2.0, "miou": 0.30}, {"temperature": 0.5, "miou": 0.20}, {"temperature": 3.5, "miou": 0.35},
             {"temperature": 4.7, "miou": 0.33}]
    sentence = "Best T = 3.5 is an interior optimum of the mIoU curve; the grid 0.5–2 was widened to 0.5–4.7."
    text = temperature_section(table, 3.5, {"sentence": sentence, "interior": True})
    rows = [line for line in text.splitlines() if line.startswith("| ") and "Temperature" not in line and "---" not in line]
    assert [r.split("|")[1].strip().strip("*") for r in rows] == ["0.5", "2", "3.5", "4.7"]  # sorted by T
    assert "**3.5**" in rows[2] and text.rstrip().endswith(sentence)
    assert sentence not in temperature_section(table, 3.5)
