"""Issue 16: segmentation OOF error analysis — per-image scores over the OOF store, the k worst
images (the true argsort of those scores) drawn as image / truth / prediction overlays in the
class palette, the fold's confusion PNG, both linked from the fold and experiment report.md."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kagglekit.metrics.segmentation import iou_from_confusion
from kagglekit.report.plots import class_palette, missing_glyphs
from kagglekit.store.arrays import Manifest, PredictionWriter
from kagglekit.tasks.segmentation import error_analysis as E
from kagglekit.tasks.segmentation.config import SegmentationConfig
from kagglekit.tasks.segmentation.report import write_experiment_report, write_fold_report

C, H, W = 5, 12, 16


def fake_oof(n: int = 9, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """probs (n, C, H, W) float, targets (n, H, W) uint8 with ignored pixels; image i is right on
    a share of its pixels that grows with i (so scores differ), one image has nothing scored."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, C, (n, H, W)).astype(np.uint8)
    targets[:, 0] = 255
    probs = rng.random((n, C, H, W)).astype(np.float32)
    for i in range(n):
        right = rng.random((H, W)) < i / n
        onehot = np.eye(C, dtype=np.float32)[np.minimum(targets[i], C - 1)].transpose(2, 0, 1)
        probs[i] = np.where(right[None], onehot * 2, probs[i])
    targets[n // 2] = 255  # nothing scored: NaN score, never among the worst
    return probs, targets, [f"{i:04d}" for i in range(n)]


def brute_miou(pred: np.ndarray, target: np.ndarray) -> float:
    cm = np.zeros((C, C), np.int64)
    for t, p in zip(target.ravel(), pred.ravel()):
        if t != 255:
            cm[t, p] += 1
    return iou_from_confusion(cm)[0]


def test_per_image_scores_match_one_confusion_per_image() -> None:
    probs, targets, _ = fake_oof()
    scores = E.per_image_scores(probs, targets, C, chunk=4)  # chunks must not matter
    for i in range(len(probs)):
        expected = brute_miou(probs[i].argmax(0), targets[i])
        if np.isnan(expected):
            assert np.isnan(scores["miou"][i]) and np.isnan(scores["pixel_acc"][i])
            continue
        assert scores["miou"][i] == pytest.approx(expected)
        valid = targets[i] != 255
        assert scores["pixel_acc"][i] == pytest.approx((probs[i].argmax(0) == targets[i])[valid].mean())


@pytest.mark.parametrize("metric", ["miou", "pixel_acc"])
def test_worst_list_is_the_argsort_of_per_image_scores(metric: str) -> None:
    probs, targets, ids = fake_oof(n=15, seed=3)
    scores = E.per_image_scores(probs, targets, C)[metric]
    finite = np.isfinite(scores)
    expected = [i for i in np.argsort(scores, kind="stable") if finite[i]]
    for k in (1, 4, 14, 20):
        assert E.worst_indices(scores, k).tolist() == expected[:k]
    assert sorted(scores[E.worst_indices(scores, 3)]) == sorted(np.sort(scores[finite])[:3])
    table = E.scores_table(ids, E.per_image_scores(probs, targets, C), metric)
    assert table["id"].tolist()[:len(expected)] == [ids[i] for i in expected]


def test_overlay_uses_the_class_palette() -> None:
    image = np.full((2, 3, 3), 100, np.uint8)
    labels = np.array([[0, 1, 255], [2, 2, 4]], np.uint8)
    palette = class_palette(C)
    out = E.label_overlay(image, labels, palette, alpha=1.0)
    assert np.array_equal(out[0, 0], palette[0]) and np.array_equal(out[1, 2], palette[4])
    assert np.array_equal(out[0, 2], [50, 50, 50])  # ignored: the image, darkened


def test_worst_grid_titles_captions_and_glyphs(tmp_path) -> None:
    probs, targets, ids = fake_oof()
    scores = E.per_image_scores(probs, targets, C)
    worst = E.worst_indices(scores["miou"], 3)
    rows = [E.shown_image(ids[i], probs[i], targets[i], (scores["miou"][i], scores["pixel_acc"][i]),
                          lambda _: np.zeros((24, 32, 3), np.uint8)) for i in worst]
    fig = E.build_worst_figure(rows, [f"c{i}" for i in range(C)], "seg_a fold 1: 3 worst OOF images")
    assert fig._suptitle.get_text() == "seg_a fold 1: 3 worst OOF images"
    captions = [ax.get_title() for ax in fig.axes[::3]]
    assert captions == [f"{ids[i]}: mIoU {scores['miou'][i]:.3f}" for i in worst]
    assert [ax.get_title() for ax in fig.axes[1:3]] == ["truth", f"prediction (pixel acc {scores['pixel_acc'][worst[0]]:.2f})"]
    assert rows[0].image.shape[:2] == rows[0].truth.shape == E.display_size((24, 32))  # shown larger than stored
    assert missing_glyphs(fig) == []
    png, table = E.plot_worst_images(probs, targets, ids, [f"c{i}" for i in range(C)], tmp_path / "w.png",
                                     experiment="seg_a", fold=1, read_image=None, k=3)
    assert png.exists() and Image.open(png).size[0] >= 900 and len(table) == len(ids)


def write_store(directory, probs, targets, ids, fold=0) -> None:
    manifest = Manifest("seg_a", fold, "oof", [f"c{i}" for i in range(C)], 0.5, "uint8", list(probs.shape), [H * 2, W * 2])
    with PredictionWriter(directory, manifest, with_targets=True) as writer:
        writer.write(ids, probs / probs.sum(1, keepdims=True), targets)


def fold_metrics(rng: np.random.Generator) -> dict:
    names = [f"c{i}" for i in range(C)]
    return {"fold": 1, "oof_miou": 0.3, "chance_miou": 0.1, "best_temperature": 1.0, "oof_pixel_acc": 0.5,
            "best_epoch": 1, "per_class_iou": {n: 0.3 for n in names}, "tta_views": ["s1"],
            "temperature_table": [{"temperature": 1.0, "miou": 0.3}],
            "confusion_by_temperature": {"1": rng.integers(0, 50, (C, C)).tolist()}}


def test_fold_and_experiment_reports_link_the_pictures(tmp_path) -> None:
    cfg = SegmentationConfig(name="seg_a", num_classes=C)
    probs, targets, ids = fake_oof()
    fold_dir = tmp_path / "seg_a" / "fold1"
    write_store(fold_dir / "oof", probs, targets, ids, fold=1)
    history = pd.DataFrame({"epoch": [1], "train_loss": [1.0], "valid_loss": [1.1], "valid_miou": [0.2],
                            "valid_pixel_acc": [0.4]})
    metrics = fold_metrics(np.random.default_rng(0))
    report = write_fold_report(cfg, fold_dir, history, metrics, read_image=lambda _: np.zeros((24, 32, 3), np.uint8))
    text = report.read_text()
    for name in ("confusion.png", "worst_images.png", "history.png", "per_class_iou.png", "oof_image_scores.csv"):
        assert (fold_dir / name).exists(), name
    assert "![confusion](confusion.png)" in text and "![worst OOF images](worst_images.png)" in text
    scores = pd.read_csv(fold_dir / "oof_image_scores.csv", dtype={"id": str})
    stored = E.per_image_scores(np.load(fold_dir / "oof" / "probs.npy"), np.load(fold_dir / "oof" / "targets.npy"), C)
    worst = [ids[i] for i in E.worst_indices(stored["miou"], 8)]
    assert scores["id"].tolist()[:8] == worst
    table = text.split("worst OOF images (per-image mIoU, ascending)")[1]
    assert [line.split(" | ")[0].strip("| ") for line in table.splitlines()[3:3 + len(worst)]] == worst
    exp_dir = tmp_path / "seg_a"
    write_store(exp_dir / "oof_merged", probs, targets, ids)
    summary = {**metrics, "submission": None}
    report = write_experiment_report(cfg, exp_dir, summary, [{"Fold": 0}], np.eye(C, dtype=np.int64), read_image=None)
    text = report.read_text()
    assert "![confusion](confusion.png)" in text and "![worst OOF images](worst_images.png)" in text
    assert (exp_dir / "worst_images.png").exists() and (exp_dir / "confusion.png").exists()
