"""Tests for kagglekit.calibrate: TTA temperature table, NLL temperature, F1 thresholds."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from sklearn.metrics import f1_score

from kagglekit.calibrate import (
    SEED_TEMPERATURES,
    TEMPERATURE_BOUNDS,
    WIDE_TEMPERATURES,
    best_temperature,
    search_temperature,
    fit_temperature_nll,
    search_thresholds,
    temperature_nll,
    temperature_table,
)
from kagglekit.metrics.segmentation import iou_from_confusion


def _cm(diag: list[int], off: int) -> np.ndarray:
    """3x3 confusion with the given diagonal and ``off`` in every off-diagonal cell."""
    cm = np.full((3, 3), off, dtype=np.int64)
    np.fill_diagonal(cm, diag)
    return cm


def test_temperature_grids():
    assert SEED_TEMPERATURES == (0.7, 0.8, 0.9, 1.0)
    assert WIDE_TEMPERATURES == (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)


def test_temperature_table_sorted_with_metrics():
    confs = {1.0: _cm([50, 40, 30], 5), 0.7: _cm([60, 40, 30], 2), 1.5: _cm([10, 10, 10], 9)}
    table = temperature_table(confs)
    assert list(table.columns) == ["temperature", "miou", "pixel_acc"]
    assert table["temperature"].tolist() == [0.7, 1.0, 1.5]
    for _, row in table.iterrows():
        cm = confs[row["temperature"]]
        assert row["miou"] == pytest.approx(iou_from_confusion(cm)[0], abs=1e-12)
        assert row["pixel_acc"] == pytest.approx(np.trace(cm) / cm.sum(), abs=1e-12)
    assert best_temperature(table) == (0.7, pytest.approx(table["miou"].max()))
    with pytest.raises(ValueError):
        temperature_table({})


def test_best_temperature_ties_go_to_t_closest_to_one():
    def table(rows: list[tuple[float, float]]) -> pd.DataFrame:
        return pd.DataFrame([{"temperature": t, "miou": m, "pixel_acc": 0.9} for t, m in rows])

    assert best_temperature(table([(0.7, 0.6), (0.9, 0.6), (1.5, 0.6), (1.0, 0.5)]))[0] == 0.9
    assert best_temperature(table([(0.5, 0.6), (2.0, 0.6), (1.1, 0.6)]))[0] == 1.1
    assert best_temperature(table([(0.75, 0.6), (1.25, 0.6)]))[0] == 0.75  # equidistant -> smaller
    assert best_temperature(table([(0.5, 0.7), (1.0, 0.6), (0.8, np.nan)])) == (0.5, 0.7)
    with pytest.raises(ValueError):
        best_temperature(table([(1.0, np.nan)]))


def _sample_with_temperature(t_true: float, n: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits (n, c) and targets drawn from softmax(logits / t_true): the true T is t_true."""
    rng = np.random.default_rng(seed)
    logits = 3.0 * rng.standard_normal((n, c))
    cum = np.cumsum(softmax(logits / t_true, axis=1), axis=1)
    targets = np.minimum((rng.random(n)[:, None] > cum).sum(1), c - 1)
    return logits, targets


@pytest.mark.parametrize("t_true", [0.5, 1.0, 2.5])
def test_fit_temperature_nll_recovers_known_t(t_true):
    logits, targets = _sample_with_temperature(t_true, 20000, 10, seed=int(t_true * 10))
    t_fit = fit_temperature_nll(logits, targets)
    assert abs(t_fit / t_true - 1) < 0.05
    nll = temperature_nll(logits, targets, t_fit)  # a local (= global, convex in 1/T) minimum
    assert nll <= temperature_nll(logits, targets, t_fit * 1.01)
    assert nll <= temperature_nll(logits, targets, t_fit / 1.01)
    coarse = fit_temperature_nll(logits, targets, grid=[0.25, 1.0, 4.0])  # refined off-grid
    assert abs(coarse / t_true - 1) < 0.05
    with pytest.raises(ValueError):
        fit_temperature_nll(logits, np.full(len(targets), 10))


def _brute_force(p: np.ndarray, y: np.ndarray, cands: np.ndarray) -> tuple[float, float]:
    """Loop over candidates with sklearn's f1; first (lowest) maximum."""
    f1s = [f1_score(y, (p >= t).astype(int), zero_division=0) for t in cands]
    k = int(np.argmax(f1s))
    return float(cands[k]), float(f1s[k])


@pytest.fixture(scope="module")
def multilabel() -> tuple[np.ndarray, np.ndarray]:
    """(300, 6) probs rounded to 0.01 (ties in p), targets with ~10% missing; column 4 has no
    positives, column 5 is all missing."""
    rng = np.random.default_rng(0)
    y = (rng.random((300, 6)) < [0.1, 0.3, 0.5, 0.7, 0.0, 0.4]).astype(np.int64)
    p = np.round(np.clip(0.35 * y + 0.65 * rng.random(y.shape), 0, 1), 2)
    y[rng.random(y.shape) < 0.1] = -1
    y[:, 5] = -1
    return p, y


@pytest.mark.parametrize("grid", [None, np.linspace(0.0, 1.0, 21)])
def test_search_thresholds_matches_brute_force_and_sklearn(multilabel, grid):
    p, y = multilabel
    res = search_thresholds(p, y, grid=grid)
    assert set(res) == {"thresholds", "f1", "n_pos", "n_valid"}
    for j in range(5):
        v = y[:, j] >= 0
        cands = np.unique(p[v, j]) if grid is None else grid
        t_ref, f_ref = _brute_force(p[v, j], y[v, j], cands)
        assert res["thresholds"][j] == t_ref
        assert res["f1"][j] == pytest.approx(f_ref, abs=1e-12)
        at = f1_score(y[v, j], (p[v, j] >= res["thresholds"][j]).astype(int), zero_division=0)
        assert res["f1"][j] == pytest.approx(at, abs=1e-12)
        assert res["n_valid"][j] == v.sum() and res["n_pos"][j] == (y[:, j] == 1).sum()
    assert res["f1"][4] == 0.0 and res["n_pos"][4] == 0
    assert np.isnan(res["thresholds"][5]) and np.isnan(res["f1"][5]) and res["n_valid"][5] == 0
    assert res["f1"][:4].min() > 0.3  # the signal is real


def test_search_thresholds_tie_goes_to_lowest():
    p = np.array([[0.2], [0.4], [0.6], [0.8]])
    y = np.array([[1], [0], [0], [1]])  # F1(t=0.2) = F1(t=0.8) = 2/3 > F1(0.4), F1(0.6)
    res = search_thresholds(p, y)
    assert res["thresholds"][0] == 0.2 and res["f1"][0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        search_thresholds(p, np.array([[2], [0], [0], [1]]))


class _Curve:
    """A score peaking at ``peak`` (a parabola in log T, like a real mIoU-vs-T curve near its
    top); records every batch it is asked for (one batch = one validation pass)."""

    def __init__(self, peak: float) -> None:
        self.peak, self.calls = peak, []

    def score(self, t: float) -> float:
        return 0.5 - 0.1 * (np.log(t) - np.log(self.peak)) ** 2

    def __call__(self, temperatures):
        self.calls.append(list(temperatures))
        return {t: self.score(t) for t in temperatures}


def test_search_widens_a_grid_whose_best_is_its_edge():
    """Issue 16 (`make demo`: best T = 2.0, the grid's largest, mIoU still rising): a curve
    peaking at 3.5 with the grid ending at 2.0 → ≈3.5, interior, and the widening said."""
    curve = _Curve(3.5)
    assert best_temperature(temperature_table_of(curve, WIDE_TEMPERATURES))[0] == 2.0  # the old answer
    result = search_temperature(curve, WIDE_TEMPERATURES)
    assert result.best == pytest.approx(3.5, rel=0.03) and result.status == "interior" and result.interior
    assert result.widened and result.initial == (0.5, 2.0) and result.searched[1] > 3.5 and result.searched[0] == 0.5
    assert result.extra_passes == len(curve.calls) - 1 >= 2 and curve.calls[0] == list(WIDE_TEMPERATURES)
    assert all(t > 2.0 for batch in curve.calls[1:] for t in batch)  # widened upward only
    assert result.score == pytest.approx(curve.score(result.best)) and result.scores[result.best] == result.score
    summary = result.summary()
    assert summary["interior"] and summary["widened"] and summary["widen_factor"][0] == 1.0
    assert summary["widen_factor"][1] == pytest.approx(result.searched[1] / 2.0)
    assert summary["sentence"].startswith(f"Best T = {result.best:.3g} is an interior optimum")
    assert "the grid 0.5–2 was widened to 0.5–" in summary["sentence"] and "upward" in summary["sentence"]


def temperature_table_of(curve: _Curve, grid) -> pd.DataFrame:
    return pd.DataFrame({"temperature": list(grid), "miou": [curve.score(t) for t in grid]})


@pytest.mark.parametrize("peak", [0.85, 1.1, 1.4])
def test_search_leaves_an_interior_optimum_unchanged(peak):
    curve = _Curve(peak)
    result = search_temperature(curve, WIDE_TEMPERATURES)
    expected = best_temperature(temperature_table_of(curve, WIDE_TEMPERATURES))
    assert (result.best, result.score) == (expected[0], pytest.approx(expected[1]))
    assert len(curve.calls) == 1 and result.extra_passes == 0 and not result.widened and result.status == "interior"
    assert result.sentence().endswith("grid 0.5–2, not widened.")


def test_search_widens_downward_and_stops_at_the_bound():
    low = search_temperature(_Curve(0.2), WIDE_TEMPERATURES)
    assert low.best == pytest.approx(0.2, rel=0.03) and low.interior and low.searched[0] < 0.2 and low.searched[1] == 2.0
    assert "downward" in low.sentence()
    curve = _Curve(80.0)  # beyond the bound: the search says so instead of claiming an optimum
    high = search_temperature(curve, WIDE_TEMPERATURES)
    assert high.best == TEMPERATURE_BOUNDS[1] == high.searched[1] and high.status == "bound" and not high.interior
    assert "at the search bound [0.05, 20]" in high.sentence() and max(max(c) for c in curve.calls) == 20.0


def test_search_does_not_widen_a_flat_curve_or_a_single_temperature():
    flat = _Curve(1.0)
    flat.score = lambda t: 0.4  # one view: argmax does not depend on T
    result = search_temperature(flat, SEED_TEMPERATURES)
    assert (result.best, result.status, len(flat.calls)) == (1.0, "flat", 1)
    single = search_temperature(_Curve(3.0), (1.0,))
    assert (single.best, single.status, single.extra_passes) == (1.0, "single", 0)
    with pytest.raises(ValueError, match="non-empty and > 0"):
        search_temperature(_Curve(1.0), (0.0, 1.0))
