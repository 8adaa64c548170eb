"""Issue 16: every report picture is titled with the experiment and fold, epoch axes have integer
ticks (a 1-epoch run shows tick 1), its texts are in a font that has every glyph they use, a
class has one colour everywhere; metrics.json keeps large arrays (confusion matrices) in .npy +
.csv files beside it, and both layouts read back."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib import font_manager
from matplotlib.text import Text

from kagglekit.experiment.metrics_file import (ARRAY_KEY, dumps_compact, load_metrics, save_metrics,
                                               split_arrays)
from kagglekit.io import save_json
from kagglekit.report import plots
from kagglekit.report.plots import (FONT_FAMILY, MIN_FONT_PT, _build_bar_figure, _build_confusion_figure,
                                    _build_history_figure, class_color, class_palette, figure_title,
                                    missing_glyphs, plot_confusion, plot_history, plot_per_class_bars)


def visible_xticks(ax) -> list[float]:
    lo, hi = ax.get_xlim()
    return [float(t) for t in ax.get_xticks() if lo <= t <= hi]


def texts(fig) -> list[Text]:
    fig.canvas.draw()
    return [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]


def history(n: int) -> pd.DataFrame:
    epochs = np.arange(1, n + 1)
    return pd.DataFrame({"epoch": epochs, "train_loss": 1 / epochs, "valid_loss": 1.1 / epochs,
                         "valid_miou": 0.5 - 0.2 / epochs})


# --------------------------------------------------------------------------- history.png
def test_one_epoch_history_has_integer_tick_1_and_a_titled_figure() -> None:
    fig = _build_history_figure(history(1), "epoch", ("train_loss", "valid_loss"), ("valid_miou",),
                                "exp093_5", 3)
    assert fig._suptitle.get_text() == "exp093_5 fold 3: training history"
    for ax in fig.axes:
        ticks = visible_xticks(ax)
        assert ticks == [1.0], ticks  # not 0.96 … 1.04
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel()


@pytest.mark.parametrize("n", [2, 3, 7, 40])
def test_history_ticks_are_integers(n: int) -> None:
    fig = _build_history_figure(history(n), "epoch", ("train_loss",), ("valid_miou",), "e", 0)
    for ax in fig.axes:
        ticks = visible_xticks(ax)
        assert ticks and all(t == int(t) for t in ticks), ticks
        assert min(ticks) <= n and max(ticks) >= 1


def test_plot_history_title_falls_back_to_the_fold_folder(tmp_path, monkeypatch) -> None:
    seen = {}
    real = plots._build_history_figure

    def spy(*args):
        seen["fig"] = real(*args)
        seen["title"] = seen["fig"]._suptitle.get_text()
        return seen["fig"]

    monkeypatch.setattr(plots, "_build_history_figure", spy)
    plot_history(history(2), tmp_path / "exp_x" / "fold2" / "history.png")
    assert seen["title"] == "exp_x fold 2: training history"
    plot_history(history(2), tmp_path / "h.png", experiment="named", fold=0)
    assert seen["title"] == "named fold 0: training history"


# --------------------------------------------------------------------------- titles, fonts, colours
def test_titles_name_experiment_and_fold() -> None:
    assert figure_title("exp", 1, "x") == "exp fold 1: x"
    assert figure_title("exp", None, "x") == "exp all folds (OOF): x"
    cm = _build_confusion_figure(np.eye(3), ["a", "b", "c"], True, figure_title("exp", 2, "confusion"))
    assert cm.axes[0].get_title() == "exp fold 2: confusion"
    assert cm.axes[0].get_xlabel() == "predicted class" and cm.axes[0].get_ylabel() == "true class"


def test_bar_and_confusion_pngs_carry_the_title(tmp_path, monkeypatch) -> None:
    titles = []
    for name in ("_build_bar_figure", "_build_confusion_figure"):
        real = getattr(plots, name)

        def spy(*args, _real=real):
            fig = _real(*args)
            titles.append(fig.axes[0].get_title())
            return fig
        monkeypatch.setattr(plots, name, spy)
    plot_per_class_bars(["a", "b"], np.array([0.1, 0.2]), tmp_path / "b.png", title="IoU", experiment="e", fold=0)
    plot_confusion(np.eye(2), ["a", "b"], tmp_path / "c.png", experiment="e", fold=None)
    plot_confusion(np.eye(2), ["a", "b"], tmp_path / "e9" / "fold4" / "c.png")
    assert titles == ["e fold 0: IoU", "e all folds (OOF): confusion (rows normalised)",
                      "e9 fold 4: confusion (rows normalised)"]


def test_fonts_are_dejavu_at_least_9pt_with_every_glyph(tmp_path) -> None:
    fig = _build_history_figure(history(3), "epoch", ("train_loss",), ("valid_miou",), "exp → arrow × ≥", 0)
    fig.axes[0].set_title("truth mixed → pred open · 0.93 ≥ 0.41")
    for text in texts(fig):
        font = font_manager.findfont(text.get_fontproperties(), fallback_to_default=False)
        assert font.endswith("DejaVuSans.ttf"), (text.get_text(), font)
        assert text.get_fontsize() >= MIN_FONT_PT, (text.get_text(), text.get_fontsize())
    assert missing_glyphs(fig) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph … missing from font …" when one is
        plots.save_figure(fig, tmp_path / "h.png")
    assert FONT_FAMILY == "DejaVu Sans"


def test_missing_glyphs_finds_a_glyph_the_font_lacks() -> None:
    fig = plots.new_figure(3, 2)
    with plots.plot_style():
        fig.suptitle("cat 猫")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = missing_glyphs(fig)
    assert [ch for ch, _ in found] == ["猫"]


def test_confusion_annotations_are_legible() -> None:
    fig = _build_confusion_figure(np.array([[9, 1], [5, 5]]), ["a", "b"], True)
    cells = {t.get_text(): t for t in fig.axes[0].texts}
    assert cells["0.90"].get_color() == "white" and cells["0.10"].get_color() == "black"
    assert all(t.get_fontsize() >= MIN_FONT_PT for t in fig.axes[0].texts)


def test_one_colour_per_class_index() -> None:
    assert class_color(3) == class_color(3) and len({class_color(i) for i in range(40)}) == 40
    assert np.array_equal(class_palette(5)[2], np.round(255 * np.array(class_color(2))).astype(np.uint8))
    fig = _build_bar_figure(["a", "b", "c"], np.array([0.3, np.nan, 0.5]), "t", "y")
    colours = [p.get_facecolor()[:3] for p in fig.axes[0].patches]
    assert np.allclose(colours, [class_color(0), class_color(2)])  # class 1 has no bar, class 2 keeps its colour


# --------------------------------------------------------------------------- metrics.json arrays
def confusion_metrics(rng: np.random.Generator) -> dict:
    names = [f"class{i}" for i in range(13)]
    by_t = {f"{t:g}": rng.integers(0, 1000, (13, 13)) for t in (0.7, 1.0, 1.3)}
    return {"fold": 0, "oof_miou": 0.41, "best_temperature": 1.0, "per_fold": [0.4, 0.42],
            "per_class_iou": {n: 0.5 for n in names}, "tta_views": ["s1", "s1-flip"],
            "confusion_by_temperature": {t: m.tolist() for t, m in by_t.items()},
            "temperature_table": [{"temperature": 1.0, "miou": 0.41}], "small": [[1, 2], [3, 4]],
            "thresholds": list(np.linspace(0, 1, 60)), "curve": np.linspace(0, 1, 90).reshape(3, 30)}, by_t


def test_confusions_move_to_npy_and_csv_beside_metrics_json(tmp_path) -> None:
    metrics, by_t = confusion_metrics(np.random.default_rng(0))
    save_metrics(tmp_path / "metrics.json", metrics)
    text = (tmp_path / "metrics.json").read_text()
    raw = json.loads(text)
    assert len(text.splitlines()) < 80  # was ~2000 lines, one number per line
    for t, matrix in by_t.items():
        ref = raw["confusion_by_temperature"][t]
        assert set(ref) == {ARRAY_KEY, "csv", "shape", "dtype"} and ref["shape"] == [13, 13]
        npy = np.load(tmp_path / ref[ARRAY_KEY])
        assert npy.dtype == np.int64 and np.array_equal(npy, matrix)
        csv = pd.read_csv(tmp_path / ref["csv"], index_col=0)
        assert list(csv.columns) == [f"class{i}" for i in range(13)] and list(csv.index) == list(csv.columns)
        assert csv.index.name == "true \\ predicted" and np.array_equal(csv.to_numpy(), matrix)
    assert ARRAY_KEY in raw["curve"] and raw["small"] == [[1, 2], [3, 4]]  # a matrix of > 50 numbers out, small in
    assert raw["thresholds"] == pytest.approx(metrics["thresholds"])  # vectors stay inline (decisions read as JSON) …
    block = text.split('"thresholds": [')[1].split("]")[0]
    assert len(block.strip().splitlines()) <= 60 / 3 and max(map(len, text.splitlines())) <= 100  # … wrapped
    assert '"per_fold": [0.4, 0.42]' in text and '"tta_views": ["s1", "s1-flip"]' in text  # short lists: one line
    assert '{"temperature": 1.0, "miou": 0.41}' in text  # and flat dicts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "metrics_arrays"]
    assert metrics["confusion_by_temperature"]["1"][0] == by_t["1"][0].tolist()  # the caller's dict untouched


def test_both_layouts_read_back(tmp_path) -> None:
    metrics, by_t = confusion_metrics(np.random.default_rng(1))
    new, old = tmp_path / "new" / "metrics.json", tmp_path / "old" / "metrics.json"
    save_metrics(new, metrics)
    old.parent.mkdir()
    save_json(old, metrics)  # the writer before: every array inline
    from kagglekit.tasks.segmentation.finish import summed_confusions
    loaded = [load_metrics(new), load_metrics(old)]
    assert isinstance(loaded[0]["confusion_by_temperature"]["1"], np.ndarray)
    assert isinstance(loaded[1]["confusion_by_temperature"]["1"], list)
    summed = summed_confusions(loaded)
    assert np.array_equal(summed[1.0], 2 * by_t["1"])
    assert loaded[0]["per_class_iou"] == metrics["per_class_iou"] and loaded[0]["small"] == [[1, 2], [3, 4]]


def test_experiment_loader_reads_arrays_and_stale_files_go(tmp_path) -> None:
    from kagglekit.experiment.finish import load_fold_metrics
    metrics, by_t = confusion_metrics(np.random.default_rng(2))
    for k in range(2):
        save_metrics(tmp_path / f"fold{k}" / "metrics.json", {**metrics, "fold": k})
    folds = load_fold_metrics(tmp_path, 2)
    assert [f["fold"] for f in folds] == [0, 1]
    assert np.array_equal(folds[1]["confusion_by_temperature"]["0.7"], by_t["0.7"])
    fewer = {**metrics, "confusion_by_temperature": {"1": by_t["1"]}}  # ndarray input works too
    save_metrics(tmp_path / "fold0" / "metrics.json", fewer)
    left = sorted(p.name for p in (tmp_path / "fold0" / "metrics_arrays").iterdir())
    assert left == ["confusion_by_temperature.1.csv", "confusion_by_temperature.1.npy", "curve.csv",
                    "curve.npy"]  # 0.7 and 1.3 are gone
    save_metrics(tmp_path / "fold1" / "metrics.json", {"fold": 1})
    assert sorted(p.name for p in (tmp_path / "fold1").iterdir()) == ["metrics.json"]  # no arrays: no folder
    (tmp_path / "fold0" / "metrics_arrays" / "confusion_by_temperature.1.npy").unlink()
    with pytest.raises(FileNotFoundError, match="confusion_by_temperature.1.npy"):
        load_metrics(tmp_path / "fold0" / "metrics.json")


def test_split_arrays_rules() -> None:
    doc, files = split_arrays({"confusion": [[1, 2], [3, 4]], "names": ["a"] * 80, "mixed": [[1, None]] * 40,
                               "flags": [[True]] * 80, "ragged": [[1], [2, 3]], "x": np.float32(0.5),
                               "vector": np.arange(80), "grid": np.zeros((8, 8))})
    assert set(files) == {"metrics_arrays/confusion.npy", "metrics_arrays/grid.npy"}
    assert doc["vector"] == list(range(80))  # a confusion matrix of any size; text / None / bools stay
    assert doc["names"] == ["a"] * 80 and doc["x"] == 0.5 and doc["ragged"] == [[1], [2, 3]]
    assert dumps_compact({"a": [1, 2], "b": {"c": [], "d": [{"t": 1.0, "m": 0.5}]}}) == (
        '{\n  "a": [1, 2],\n  "b": {\n    "c": [],\n    "d": [\n      {"t": 1.0, "m": 0.5}\n    ]\n  }\n}')


def test_nested_confusion_csv_takes_the_names_of_its_own_dict(tmp_path) -> None:
    version = {"accuracy": 0.7, "per_class": {"open": {}, "closed": {}, "mixed": {}},
               "confusion": [[5, 1, 0], [2, 6, 1], [0, 0, 3]]}
    save_metrics(tmp_path / "metrics.json", {"versions": {"best": version}, "per_class_iou": {"x": 1.0}})
    csv = pd.read_csv(tmp_path / "metrics_arrays" / "versions.best.confusion.csv", index_col=0)
    assert list(csv.columns) == ["open", "closed", "mixed"] and list(csv.index) == ["open", "closed", "mixed"]
    loaded = load_metrics(tmp_path / "metrics.json")
    assert np.array_equal(loaded["versions"]["best"]["confusion"], version["confusion"])
