"""multilabel_report / multiclass_report against sklearn on random, non-trivial inputs."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, average_precision_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support, precision_score, recall_score)

from kagglekit.calibrate import search_thresholds
from kagglekit.metrics.classification import multiclass_report, multilabel_report

NAMES = ["front_right", "front_left", "rear_right", "rear_left", "hood"]
KEYS = {"ap", "f1", "p", "r", "thr", "n", "valid", "tp", "fp", "fn"}


def _multilabel_data(seed: int = 0, n: int = 300, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Noisy but informative probs (N, K) and targets with ~20 % missing (-1)."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < rng.uniform(0.2, 0.6, k)).astype(np.int64)
    logits = 1.5 * (2 * y - 1) + rng.normal(0, 1.5, (n, k))
    probs = 1 / (1 + np.exp(-logits))
    y[rng.random((n, k)) < 0.2] = -1
    return probs, y


def _sk_head(p: np.ndarray, y: np.ndarray, thr: float) -> dict[str, float]:
    """sklearn reference on the valid entries of one head."""
    v = y >= 0
    yy, pred = y[v], (p[v] >= thr).astype(int)
    return {"ap": average_precision_score(yy, p[v]),
            "f1": f1_score(yy, pred, zero_division=0),
            "p": precision_score(yy, pred, zero_division=0),
            "r": recall_score(yy, pred, zero_division=0)}


def test_multilabel_given_thresholds_match_sklearn():
    probs, y = _multilabel_data()
    thr = [0.3, 0.5, 0.6, 0.45, 0.7]
    rep = multilabel_report(probs, y, NAMES, thresholds=thr)
    assert set(rep["per_attr"]) == set(NAMES) and rep["active"] == NAMES
    for j, name in enumerate(NAMES):
        got, ref = rep["per_attr"][name], _sk_head(probs[:, j], y[:, j], thr[j])
        assert set(got) == KEYS
        for key in ("ap", "f1", "p", "r"):
            assert got[key] == pytest.approx(ref[key], abs=1e-12), (name, key)
        v = y[:, j] >= 0
        cm = confusion_matrix(y[v, j], probs[v, j] >= thr[j], labels=[0, 1])
        assert (got["tp"], got["fp"], got["fn"]) == (cm[1, 1], cm[0, 1], cm[1, 0])
        assert got["n"] == (y[:, j] == 1).sum() and got["valid"] == v.sum() < len(y)
        assert got["thr"] == thr[j]
    aps = [average_precision_score(y[y[:, j] >= 0, j], probs[y[:, j] >= 0, j]) for j in range(5)]
    assert rep["mAP"] == pytest.approx(np.mean(aps))
    assert rep["macro_f1"] == pytest.approx(np.mean([rep["per_attr"][a]["f1"] for a in NAMES]))


def test_missing_entries_are_masked_not_counted_as_negative():
    probs, y = _multilabel_data(seed=1)
    masked = multilabel_report(probs, y, NAMES, thresholds=[0.5] * 5)
    as_negative = average_precision_score(np.clip(y[:, 0], 0, 1), probs[:, 0])
    assert masked["per_attr"][NAMES[0]]["ap"] != pytest.approx(as_negative, abs=1e-3)


def test_searched_thresholds_are_validation_best():
    probs, y = _multilabel_data(seed=2)
    rep = multilabel_report(probs, y, NAMES)
    ref = search_thresholds(probs, y)
    assert rep["thresholds_searched"]
    for j, name in enumerate(NAMES):
        head = rep["per_attr"][name]
        assert head["thr"] == ref["thresholds"][j]
        assert head["f1"] == pytest.approx(ref["f1"][j])
        v = y[:, j] >= 0
        grid_f1 = [f1_score(y[v, j], probs[v, j] >= t, zero_division=0) for t in np.unique(probs[v, j])]
        assert head["f1"] == pytest.approx(max(grid_f1))  # best over every candidate
        assert head["f1"] >= _sk_head(probs[:, j], y[:, j], 0.5)["f1"] - 1e-12
    fixed = multilabel_report(probs, y, NAMES, thresholds=[0.5] * 5)
    assert fixed["macro_f1"] <= rep["macro_f1"] and fixed["mAP"] == pytest.approx(rep["mAP"])


def test_inactive_heads_excluded_from_means():
    probs, y = _multilabel_data(seed=3)
    y[:, 1] = np.where(y[:, 1] >= 0, 0, -1)  # only negatives
    y[:, 3] = -1                             # nothing valid
    y[:, 4] = np.where(y[:, 4] >= 0, 1, -1)  # only positives
    rep = multilabel_report(probs, y, NAMES, thresholds=[0.5] * 5)
    assert rep["active"] == [NAMES[0], NAMES[2]]
    act = [rep["per_attr"][a] for a in rep["active"]]
    assert rep["mAP"] == pytest.approx(np.mean([h["ap"] for h in act]))
    assert rep["macro_f1"] == pytest.approx(np.mean([h["f1"] for h in act]))
    assert np.isnan(rep["per_attr"][NAMES[1]]["ap"]) and rep["per_attr"][NAMES[3]]["valid"] == 0
    assert rep["per_attr"][NAMES[4]]["ap"] == pytest.approx(1.0)  # defined, but not averaged
    searched = multilabel_report(probs, y, NAMES)
    assert np.isnan(searched["per_attr"][NAMES[3]]["thr"]) and searched["active"] == rep["active"]


def test_multilabel_bad_input():
    probs, y = _multilabel_data()
    with pytest.raises(ValueError, match="names"):
        multilabel_report(probs, y, NAMES[:4])
    with pytest.raises(ValueError, match="thresholds"):
        multilabel_report(probs, y, NAMES, thresholds=[0.5] * 4)
    y[0, 0] = 2
    with pytest.raises(ValueError, match="missing"):
        multilabel_report(probs, y, NAMES)


def test_multiclass_matches_sklearn():
    rng = np.random.default_rng(4)
    n, c = 400, 5
    t = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), t] += 1.2
    rep = multiclass_report(logits, t, list("abcde"))
    pred = logits.argmax(1)
    p, r, f, s = precision_recall_fscore_support(t, pred, labels=range(c), zero_division=0)
    assert rep["accuracy"] == pytest.approx(accuracy_score(t, pred))
    assert 0.3 < rep["accuracy"] < 0.95
    assert rep["macro_f1"] == pytest.approx(f1_score(t, pred, average="macro", zero_division=0))
    assert rep["macro_f1_active"] == pytest.approx(rep["macro_f1"])  # every class has support
    for i, name in enumerate("abcde"):
        got = rep["per_class"][name]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p[i], r[i], f[i]))
        assert got["support"] == s[i]
    assert rep["confusion"] == confusion_matrix(t, pred, labels=range(c)).tolist()


def test_zero_support_footnote():
    """Seed footnote: 4-class macro F1 0.5815 incl. the zero-support 'unknown' vs 0.775 active."""
    cm = np.array([[0, 0, 0, 0], [3, 11, 0, 3], [4, 0, 9, 0], [0, 4, 0, 16]])  # rows = target
    t = np.repeat(np.repeat(np.arange(4), 4), cm.ravel())
    pred = np.tile(np.arange(4), 4).repeat(cm.ravel())
    probs = np.eye(4)[pred] * 0.7 + 0.1
    rep = multiclass_report(probs, t, ["unknown", "open", "closed", "mixed"])
    assert rep["confusion"] == cm.tolist()
    assert rep["per_class"]["unknown"]["support"] == 0 and rep["per_class"]["unknown"]["f1"] == 0
    assert round(rep["macro_f1"], 4) == 0.5815 and round(rep["macro_f1_active"], 3) == 0.775
    assert rep["macro_f1"] == pytest.approx(
        f1_score(t, pred, labels=range(4), average="macro", zero_division=0))
    assert rep["macro_f1_active"] == pytest.approx(
        f1_score(t, pred, labels=[1, 2, 3], average="macro", zero_division=0))
    assert rep["macro_f1"] == pytest.approx(rep["macro_f1_active"] * 3 / 4)
    assert rep["n_active"] == 3


def test_multiclass_bad_input():
    with pytest.raises(ValueError, match="class indices"):
        multiclass_report(np.ones((3, 2)), np.array([0, 1, 2]), ["a", "b"])
    with pytest.raises(ValueError, match="names"):
        multiclass_report(np.ones((3, 2)), np.array([0, 1, 1]), ["a"])
