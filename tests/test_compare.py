"""`kagglekit compare`: the experiment comparison page built from what runs leave on disk.

Fake experiment folders use the real writers: the store (`PredictionWriter`), the experiment
summary schema (`experiment.finish.experiment_summary`), config snapshots (`config.save_config`)
and the ledger (`workflow.ledger`)."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.text import Text
from PIL import Image

from kagglekit.__main__ import main
from kagglekit.config import ExperimentConfig, save_config
from kagglekit.experiment.contract import MetricSpec
from kagglekit.experiment.finish import experiment_summary, finish_experiment
from kagglekit.io import load_json, save_json
from kagglekit.store.arrays import Manifest, PredictionWriter, read_predictions
from kagglekit.workflow import compare as C
from kagglekit.workflow import ledger as L

IDS = [f"img{i:02d}" for i in range(12)]
ROW_SHAPE = (3, 4, 5)  # (C, h, w) per id
BASE = ExperimentConfig(name="base", task="toyseg", n_folds=2, lr=1e-3, epochs=3)


def write_store(directory: Path, name: str, fold: int, ids: list[str], probs: np.ndarray) -> None:
    manifest = Manifest(name, fold, "oof", ["a", "b", "c"], 1.0, "uint8", [len(ids), *probs.shape[1:]], [4, 5])
    with PredictionWriter(directory, manifest, with_targets=False) as writer:
        writer.write(ids, probs)


def probabilities(seed: int, n: int = len(IDS)) -> np.ndarray:
    raw = np.random.default_rng(seed).random((n, *ROW_SHAPE))
    return raw / raw.sum(axis=1, keepdims=True)


def make_experiment(root: Path, cfg: ExperimentConfig, per_fold: list[float], cv: float, extras: dict | None = None,
                    probs: np.ndarray | None = None, interleave: bool = False, merged: bool = False,
                    metric: MetricSpec = MetricSpec("mIoU", "max", fold_key="score")) -> Path:
    """``root/<name>/`` with fold configs, fold metrics, OOF stores (ids halved, or interleaved; or
    one ``oof_merged`` store in reverse id order) and the experiment ``metrics.json`` in the
    epilogue's schema."""
    exp = root / cfg.name
    folds = [IDS[0::2], IDS[1::2]] if interleave else [IDS[:6], IDS[6:]]
    fold_metrics = []
    for k, ids in enumerate(folds):
        save_config(cfg, exp / f"fold{k}" / "config.json")
        fold_metrics.append({"fold": k, "metric": metric.name, "mode": metric.mode, "score": per_fold[k]})
        save_json(exp / f"fold{k}" / "metrics.json", fold_metrics[-1])
        if probs is not None and not merged:
            write_store(exp / f"fold{k}" / "oof", cfg.name, k, ids, probs[[IDS.index(i) for i in ids]])
    if probs is not None and merged:
        write_store(exp / "oof_merged", cfg.name, -1, IDS[::-1], probs[::-1])
    task = SimpleNamespace(metric=metric, cfg=cfg)
    save_json(exp / "metrics.json", experiment_summary(task, {"cv": cv, **(extras or {})}, fold_metrics))
    return exp


@pytest.fixture
def outputs(tmp_path):
    """Three mIoU experiments (two share OOF ids, one has other ids), one RMSE experiment, one ensemble."""
    root = tmp_path / "output"
    make_experiment(root, replace(BASE, name="exp_a"), [0.61, 0.65], 0.63,
                    {"per_class_iou": {"wall": 0.9, "floor": 0.5, "sofa": None}}, probs=probabilities(1),
                    interleave=True)
    make_experiment(root, replace(BASE, name="exp_b", lr=3e-3, seed=7), [0.70, 0.66], 0.69,
                    {"per_class_iou": {"wall": 0.8, "floor": 0.6, "sofa": 0.1}}, probs=probabilities(2), merged=True)
    make_experiment(root, replace(BASE, name="exp_c", epochs=9), [0.50, 0.52], 0.51,
                    {"per_class_iou": {"wall": 0.9, "floor": 0.2, "sofa": 0.05}})
    make_experiment(root, replace(BASE, name="reg_x", task="toyreg"), [0.30, 0.20], 0.25,
                    metric=MetricSpec("RMSE", "min"))
    make_experiment(root, replace(BASE, name="reg_y", task="toyreg"), [0.10, 0.14], 0.12,
                    metric=MetricSpec("RMSE", "min"))
    save_json(root / "ensemble" / "blend" / "weights.json",
              {"name": "blend", "task": "toyseg", "members": ["exp_a", "exp_b"], "method": "slsqp", "metric": "mIoU",
               "mode": "max", "weights": [0.4, 0.6], "cv": 0.72, "member_oof_score": {"exp_a": 0.63, "exp_b": 0.69},
               "config": {"name": "blend", "members": ["exp_a", "exp_b"], "method": "slsqp"}})
    return root


def section(page: str, heading: str) -> str:
    """The text of ``## heading`` up to the next ``## `` heading."""
    start = page.index(f"## {heading}\n")
    end = page.find("\n## ", start + 1)
    return page[start:] if end < 0 else page[start:end]


def subsection(text: str, heading: str) -> str:
    """The text of ``### heading`` up to the next heading."""
    return re.split(r"\n#{2,3} ", text.split(f"### {heading}")[1])[0]


def first_cells(table: str) -> list[str]:
    return [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ")]


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().strip("*") == first_cell]


# --------------------------------------------------------------------------- CV per fold
def test_cv_table_equals_metrics_json(outputs):
    page_path = C.write_compare_page(outputs, strict=True)
    page = page_path.read_text()
    seg = section(page, "mIoU (toyseg)")
    for name in ("exp_a", "exp_b", "exp_c"):
        summary = load_json(outputs / name / "metrics.json")
        folds = summary["per_fold"]
        [row] = table_rows(subsection(seg, "CV per experiment and fold"), name)
        cells = [c.strip("*") for c in row]
        assert cells[2:5] == [f"{summary['cv']:.4f}", f"{np.mean(folds):.4f}", f"{np.std(folds):.4f}"]
        assert cells[5:7] == [f"{v:.4f}" for v in folds]
    entries = {e.name: e for e in C.discover(outputs)}
    for row in C.cv_rows([entries["exp_a"], entries["reg_y"]]):
        folds = load_json(outputs / row["experiment"] / "metrics.json")["per_fold"]
        assert row["fold mean"] == np.mean(folds) and row["fold std"] == np.std(folds)
    # best first and in bold, in the metric's direction; groups never mix metrics
    cv_table = subsection(seg, "CV per experiment and fold")
    order = first_cells(cv_table)[2:]
    assert order == ["**ensemble/blend**", "exp_b", "exp_a", "exp_c"]
    assert "reg_x" not in seg
    reg = section(page, "RMSE (toyreg)")
    order = first_cells(subsection(reg, "CV per experiment"))
    assert order[2:] == ["**reg_y**", "reg_x"] and "exp_a" not in reg and "lower is better" in reg.lower()
    # the ensemble's gain over its best member
    [ens] = table_rows(subsection(seg, "Ensembles"), "ensemble/blend")
    assert ens[-1] == f"{0.72 - 0.69:.4f}"
    for png in ("cv_miou_toyseg.png", "cv_rmse_toyreg.png", "oof_corr_miou_toyseg.png"):
        assert Image.open(outputs / "compare" / png).size[0] > 300
        assert f"](compare/{png})" in page


# --------------------------------------------------------------------------- per class
def test_best_per_class_choice(outputs):
    values = {"a": {"wall": 0.9, "floor": 0.5, "sofa": None}, "b": {"wall": 0.8, "floor": 0.6, "sofa": 0.1},
              "c": {"wall": 0.9, "floor": 0.2, "sofa": 0.05}}
    assert C.best_per_class(values, "max") == {"wall": ["a", "c"], "floor": ["b"], "sofa": ["b"]}
    assert C.best_per_class(values, "min") == {"wall": ["b"], "floor": ["c"], "sofa": ["c"]}
    page = C.write_compare_page(outputs, strict=True).read_text()
    per_class = section(page, "mIoU (toyseg)").split("### Per class")[1].split("###")[0]
    header = next(line for line in per_class.splitlines() if line.startswith("| class"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert columns == ["class", "exp_b", "exp_a", "exp_c"]  # best experiment first
    bold = {row[0]: [columns[i] for i, c in enumerate(row) if i and c.startswith("**")]
            for row in (table_rows(per_class, cls)[0] for cls in ("wall", "floor", "sofa"))}
    assert bold == {"wall": ["exp_a", "exp_c"], "floor": ["exp_b"], "sofa": ["exp_b"]}
    assert table_rows(per_class, "best on (of 3)")[0][1:] == ["2", "1", "1"]
    assert C.unit_name("per_lab") == "lab" and C.unit_name("oof.per_attr.ap") == "attr"


def test_per_class_numbers_are_found_in_every_summary_shape():
    flat = {"cv": 1, "per_class_iou": {"a": 0.5, "b": None}}
    assert C.find_per_class(flat, "mIoU") == ("per_class_iou", {"a": 0.5, "b": None})
    multilabel = {"oof": {"per_attr": {"x": {"ap": 0.7, "f1": 0.5, "p": 0.4, "thr": 0.3, "n": 9}}, "mAP": 0.7}}
    assert C.find_per_class(multilabel, "mAP") == ("oof.per_attr.ap", {"x": 0.7})
    records = {"per_class": [{"class": "rear", "precision": 0.5, "f1": 0.25, "support": 3}]}
    assert C.find_per_class(records, "frame macro F1 (4 groups)") == ("per_class.f1", {"rear": 0.25})
    nested = {"test": {"per_class": {"car": 1.0}}, "val": {"AP": 40.0, "per_class": {"car": 30.0}}}
    assert C.find_per_class(nested, "bbox mAP (%)") == ("val.per_class", {"car": 30.0})
    assert C.find_per_class({"cv": 0.5, "per_fold": [0.1, 0.2], "val": {"oks_map": 0.5}}, "OKS mAP") is None


# --------------------------------------------------------------------------- OOF correlation
def stored_by_id(exp: Path) -> np.ndarray:
    """The experiment's stored OOF rows (uint8 → p in float64) in sorted-id order, read back from disk."""
    dirs = [exp / "oof_merged"] if (exp / "oof_merged").is_dir() else sorted(exp.glob("fold*/oof"))
    rows = {}
    for d in dirs:
        store = read_predictions(d)
        rows.update({i: np.asarray(store.probs[r], dtype=np.float64) / 255.0 for r, i in enumerate(store.ids)})
    return np.stack([rows[i] for i in sorted(rows)])


def test_correlation_equals_corrcoef_on_stored_arrays(outputs):
    entries = C.discover(outputs)
    [(members, sources)] = C.oof_clusters(entries)
    assert [e.name for e in members] == ["exp_a", "exp_b"]  # exp_c has no store; fold stores and oof_merged align by id
    matrix, note = C.oof_correlation(sources)
    a, b = stored_by_id(outputs / "exp_a"), stored_by_id(outputs / "exp_b")
    expected = np.corrcoef(a.ravel(), b.ravel())
    np.testing.assert_allclose(matrix, expected, atol=1e-12)
    assert note.startswith(f"{a.size:,} values per experiment: all 12 shared ids")
    page = C.write_compare_page(outputs, strict=True).read_text()
    correlation = subsection(section(page, "mIoU (toyseg)"), "OOF correlation (what an ensemble can gain)")
    # columns: exp_b (best), exp_a
    assert [r[1:] for r in table_rows(correlation, "exp_a")] == [[f"{expected[0, 1]:.4f}", "1.0000"]]


def test_correlation_subsample_is_deterministic_and_says_how_many(outputs):
    sources = C.oof_clusters(C.discover(outputs))[0][1]
    matrix, note = C.oof_correlation(sources, max_values=50)
    again, _ = C.oof_correlation(sources, max_values=50)
    np.testing.assert_array_equal(matrix, again)
    rows, positions = C.sample_plan(len(IDS), int(np.prod(ROW_SHAPE)), 50)
    assert len(rows) * len(positions) <= 50 and "12 of 12 shared ids (evenly spaced in id-hash order) × 4 of 60" in note
    a, b = (stored_by_id(outputs / n).reshape(len(IDS), -1)[rows][:, positions] for n in ("exp_a", "exp_b"))
    np.testing.assert_allclose(matrix, np.corrcoef(a.ravel(), b.ravel()), atol=1e-12)
    assert note.startswith(f"{len(rows) * len(positions):,} values per experiment")
    # fewer rows than ids: the ids are taken evenly spaced in the documented id-hash order
    matrix, note = C.oof_correlation(sources, max_values=6)
    assert note.startswith("6 values per experiment: 6 of 12 shared ids")
    by_hash = np.argsort(pd.util.hash_array(np.asarray(IDS, dtype=object)), kind="stable")
    rows, positions = C.sample_plan(len(IDS), int(np.prod(ROW_SHAPE)), 6)
    a, b = (stored_by_id(outputs / n).reshape(len(IDS), -1)[by_hash[rows]][:, positions] for n in ("exp_a", "exp_b"))
    np.testing.assert_allclose(matrix, np.corrcoef(a.ravel(), b.ravel()), atol=1e-12)


# --------------------------------------------------------------------------- config diff
def test_config_diff_lists_exactly_the_differing_keys(outputs, capsys):
    a = load_json(outputs / "exp_a" / "fold0" / "config.json")
    b = load_json(outputs / "exp_b" / "fold0" / "config.json")
    diff = C.config_diff(a, b)
    assert list(diff) == ["lr", "seed"] and diff["lr"] == (1e-3, 3e-3) and diff["seed"] == (42, 7)
    nested = C.config_diff({"name": "x", "opt": {"lr": 1, "wd": 2}, "old": 1}, {"name": "y", "opt": {"lr": 1, "wd": 3}})
    assert nested == {"old": (1, C.ABSENT), "opt.wd": (2, 3)}
    page = C.write_compare_page(outputs, strict=True).read_text()
    diff_part = section(page, "mIoU (toyseg)").split("### Config diff against the best experiment `exp_b`")[1]
    listed = {(r[0], r[1]) for r in (table_rows(diff_part, "exp_a") + table_rows(diff_part, "exp_c"))}
    assert listed == {("exp_a", "lr"), ("exp_a", "seed"), ("exp_c", "epochs"), ("exp_c", "lr"), ("exp_c", "seed")}
    assert main(["compare", "--output", str(outputs), "--diff", "exp_a", "exp_c"]) == 0
    printed = capsys.readouterr().out
    assert [line.split("|")[1].strip() for line in printed.splitlines()[2:]] == ["epochs"]
    assert main(["compare", "--output", str(outputs), "--diff", "exp_a", "exp_a"]) == 0
    assert "same config" in capsys.readouterr().out


# --------------------------------------------------------------------------- CV vs public LB
def test_cv_vs_lb_from_the_ledger(outputs):
    page = C.write_compare_page(outputs, strict=True).read_text()
    assert "No public LB yet" in section(page, "mIoU (toyseg)")
    ledger = L.load_ledger(outputs / "ledger.csv")
    lbs = {"exp_a": 0.60, "exp_b": 0.70, "exp_c": 0.52, "ensemble/blend": 0.71}
    cvs = {"exp_a": 0.63, "exp_b": 0.69, "exp_c": 0.51, "ensemble/blend": 0.72}
    for name, lb in lbs.items():
        ledger = L.upsert(ledger, {"experiment": name, "config_hash": "", "cv_oof": f"{cvs[name]:.4f}",
                                   "public_lb": str(lb)})
    L.save_ledger(ledger, outputs)
    page = C.write_compare_page(outputs, strict=True).read_text()
    seg = section(page, "mIoU (toyseg)")
    r = np.corrcoef(list(cvs.values()), list(lbs.values()))[0, 1]
    rows = table_rows(subsection(seg, "CV vs public LB"), "exp_c")
    assert rows == [["exp_c", "0.5100", "0.5200", f"{0.52 - 0.51:.4f}"]]
    assert f"Pearson r (CV, LB) = {r:.4f} over 4 points." in seg
    assert (outputs / "compare" / "cv_vs_lb_miou_toyseg.png").is_file()
    assert "No public LB yet" in section(page, "RMSE (toyreg)")
    assert C.lb_correlation([("a", 1.0, 2.0), ("b", 2.0, 3.0)]) is None  # < 3 points


# --------------------------------------------------------------------------- unfinished runs, CLI
def test_cli_lists_unfinished_experiments(outputs):
    save_config(replace(BASE, name="running"), outputs / "running" / "fold0" / "config.json")
    save_json(outputs / "running" / "fold0" / "metrics.json", {"fold": 0, "score": 0.4})
    (outputs / "running" / "fold1").mkdir()
    save_config(replace(BASE, name="broken"), outputs / "broken" / "fold0" / "config.json")
    (outputs / "broken" / "metrics.json").write_text("{not json")
    save_config(replace(BASE, name="legacy"), outputs / "legacy" / "fold0" / "config.json")
    save_json(outputs / "legacy" / "metrics.json", {"oof_miou": 0.5})
    (outputs / "ensemble" / "half").mkdir(parents=True)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-m", "kagglekit", "compare", "--output", str(outputs)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    unfinished = section((outputs / "compare.md").read_text(), "Unfinished")
    names = ("running", "broken", "legacy", "ensemble/half")
    status = {r[0]: r[2] for r in (table_rows(unfinished, n)[0] for n in names)}
    assert status["running"] == "unfinished: 1/2 folds done, no metrics.json yet"
    assert status["broken"].startswith("metrics.json unreadable")
    assert status["legacy"].startswith("metrics.json has no metric / cv")
    assert status["ensemble/half"] == "unfinished: no weights.json yet"


def test_cli_selected_experiments_and_errors(outputs, capsys):
    assert main(["compare", "--output", str(outputs)]) == 0
    assert (outputs / "compare" / "cv_rmse_toyreg.png").is_file()
    assert main(["compare", "exp_a", "exp_c", "--output", str(outputs)]) == 0
    page = (outputs / "compare.md").read_text()
    assert "exp_b" not in page and "RMSE" not in page and "exp_c" in page
    assert not (outputs / "compare" / "cv_rmse_toyreg.png").exists()  # a figure the page no longer shows is removed
    assert main(["compare", "nope", "--output", str(outputs)]) == 2
    assert "no experiment or ensemble nope" in capsys.readouterr().err
    assert main(["compare", "--output", str(outputs / "missing")]) == 2


# --------------------------------------------------------------------------- after every experiment
def fake_task(root: Path, name: str) -> SimpleNamespace:
    cfg = replace(BASE, name=name, output_dir=str(root))
    return SimpleNamespace(cfg=cfg, metric=MetricSpec("mIoU", "max", fold_key="score"),
                           score_experiment=lambda exp_dir, folds: {"cv": 0.5},
                           write_submission=lambda exp_dir, summary, path: None,
                           report_experiment=lambda exp_dir, summary, folds: None)


def test_finish_writes_the_page_and_a_failing_page_only_warns(tmp_path, monkeypatch, caplog):
    root = tmp_path / "out"
    for k in range(2):
        save_json(root / "demo" / "exp_f" / f"fold{k}" / "metrics.json", {"fold": k, "score": 0.4 + k / 10})
    summary = finish_experiment(fake_task(root, "demo/exp_f"), root / "demo" / "exp_f")
    assert summary["per_fold"] == [0.4, 0.5] and (root / "compare.md").is_file()
    assert "demo/exp_f" in (root / "compare.md").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("cannot draw")
    monkeypatch.setattr(C, "_write_page", broken)
    (root / "demo" / "exp_f" / "metrics.json").unlink()
    with caplog.at_level(logging.WARNING, logger="kagglekit"):
        summary = finish_experiment(fake_task(root, "demo/exp_f"), root / "demo" / "exp_f")
    assert summary["cv"] == 0.5 and (root / "demo" / "exp_f" / "metrics.json").is_file()
    assert any("comparison page" in r.getMessage() and "cannot draw" in r.getMessage() for r in caplog.records)
    assert C.write_compare_page(root) is None
    with pytest.raises(RuntimeError):
        C.write_compare_page(root, strict=True)


def test_png_titles_and_labels_are_legible(outputs, monkeypatch):
    """Every text of every figure ≥ 9 pt; every axes titled and labelled."""
    seen = []
    original = C._save

    def check(fig, path):
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>":
                continue
            seen.append(path.name)
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
        texts = [t for t in fig.findobj(Text) if t.get_text()]
        assert texts and min(t.get_fontsize() for t in texts) >= 9, path
        return original(fig, path)
    monkeypatch.setattr(C, "_save", check)
    C.write_compare_page(outputs, strict=True)
    assert {"cv_miou_toyseg.png", "cv_rmse_toyreg.png", "oof_corr_miou_toyseg.png"} <= set(seen)
    assert re.search(r"^# Experiment comparison", (outputs / "compare.md").read_text())
