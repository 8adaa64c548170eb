"""Calibration helpers: TTA temperature tables, NLL temperature scaling, F1 thresholds.

* Segmentation TTA temperature: the engine averages ``softmax(logits / T)`` over TTA views for
  each T of a grid and accumulates one confusion matrix per T; :func:`temperature_table` and
  :func:`best_temperature` turn those into a choice of T.
* :func:`fit_temperature_nll`: classic temperature scaling (Guo et al. 2017, "On Calibration of
  Modern Neural Networks", ICML) for classification logits.
* :func:`search_thresholds`: per-column validation-best F1 threshold for multi-label outputs.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from kagglekit.metrics.segmentation import iou_from_confusion

__all__ = [
    "SEED_TEMPERATURES",
    "WIDE_TEMPERATURES",
    "best_temperature",
    "fit_temperature_nll",
    "search_thresholds",
    "temperature_nll",
    "temperature_table",
]

SEED_TEMPERATURES: tuple[float, ...] = (0.7, 0.8, 0.9, 1.0)
WIDE_TEMPERATURES: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)
DEFAULT_NLL_GRID: tuple[float, ...] = tuple(np.exp(np.linspace(np.log(0.05), np.log(20.0), 61)))


# ----------------------------------------------------------------------------------------------
# Segmentation TTA temperature
# ----------------------------------------------------------------------------------------------
def temperature_table(confusions: Mapping[float, np.ndarray]) -> pd.DataFrame:
    """One row per temperature: columns ``temperature``, ``miou``, ``pixel_acc``; sorted by T.

    Args:
        confusions: T -> (C, C) confusion matrix (rows = target, columns = prediction) of the
            TTA prediction made with ``softmax(logits / T)`` averaged over views.
    """
    if not confusions:
        raise ValueError("no confusion matrices given")
    rows = []
    for t in sorted(confusions):
        cm = np.asarray(confusions[t], dtype=np.int64)
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
            raise ValueError(f"confusion for T={t} must be square (C, C), got {cm.shape}")
        total = cm.sum()
        miou, _ = iou_from_confusion(cm)
        acc = float(np.trace(cm) / total) if total > 0 else float("nan")
        rows.append({"temperature": float(t), "miou": float(miou), "pixel_acc": acc})
    return pd.DataFrame(rows, columns=["temperature", "miou", "pixel_acc"])


def best_temperature(table: pd.DataFrame) -> tuple[float, float]:
    """(T, mIoU) of the row with the highest mIoU.

    Ties (equal mIoU) go to the T closest to 1.0 (no rescaling is the safer default); an exact
    distance tie goes to the smaller T.  Rows with NaN mIoU are ignored.
    """
    t = table[np.isfinite(table["miou"].to_numpy(dtype=float))]
    if t.empty:
        raise ValueError("no temperature with a finite mIoU")
    best = t["miou"].max()
    top = t[t["miou"] == best]
    order = np.lexsort((top["temperature"].to_numpy(), np.abs(top["temperature"].to_numpy() - 1.0)))
    row = top.iloc[int(order[0])]
    return float(row["temperature"]), float(row["miou"])


# ----------------------------------------------------------------------------------------------
# NLL temperature scaling (Guo et al. 2017)
# ----------------------------------------------------------------------------------------------
def temperature_nll(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``softmax(logits / T)``; logits (N, C), targets (N,)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    picked = np.take_along_axis(z, np.asarray(targets, dtype=np.int64)[:, None], axis=1)[:, 0]
    return float(np.mean(logsumexp(z, axis=1) - picked))


def fit_temperature_nll(
    logits: np.ndarray, targets: np.ndarray, grid: np.ndarray | None = None
) -> float:
    """Temperature T > 0 minimising the NLL of ``softmax(logits / T)`` (Guo et al. 2017).

    The NLL is convex in 1/T (log-sum-exp of a linear function minus a linear one), hence
    unimodal in log T: a coarse grid locates the basin, then a bounded Brent search on log T
    between the grid neighbours refines it.  The best of grid and refinement is returned.

    Args:
        logits: (N, C) float logits.
        targets: (N,) int class indices in [0, C).
        grid: candidate temperatures (default: 61 log-spaced values in [0.05, 20]).
    """
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(f"need logits (N, C) and targets (N,), got {logits.shape}, {targets.shape}")
    if targets.min() < 0 or targets.max() >= logits.shape[1]:
        raise ValueError("targets must be class indices in [0, C)")
    g = np.unique(np.asarray(DEFAULT_NLL_GRID if grid is None else grid, dtype=np.float64))
    if g.size == 0 or g[0] <= 0:
        raise ValueError("temperature grid must be non-empty and > 0")
    nll = np.array([temperature_nll(logits, targets, t) for t in g])
    k = int(np.argmin(nll))
    best_t, best_nll = float(g[k]), float(nll[k])
    lo, hi = np.log(g[max(k - 1, 0)]), np.log(g[min(k + 1, g.size - 1)])
    if hi > lo:
        res = minimize_scalar(
            lambda lt: temperature_nll(logits, targets, np.exp(lt)),
            bounds=(lo, hi), method="bounded", options={"xatol": 1e-5},
        )
        if res.fun < best_nll:
            best_t = float(np.exp(res.x))
    return best_t


# ----------------------------------------------------------------------------------------------
# Per-column F1 thresholds
# ----------------------------------------------------------------------------------------------
def _column_f1_curve(
    p: np.ndarray, y: np.ndarray, grid: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """F1 of ``p >= t`` for every candidate t (ascending), sort-based, O(n log n + G log n).

    Args:
        p: (n,) probabilities, y: (n,) 0/1 targets, grid: candidates or None (= unique p).

    Returns:
        (cands (G,), f1 (G,)); 0/0 (no positives, none predicted) counts as F1 = 0 like
        sklearn's ``zero_division=0``.
    """
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order]
    cands = np.unique(ps) if grid is None else grid
    cumpos = np.concatenate([[0], np.cumsum(ys, dtype=np.int64)])
    n_pos = int(cumpos[-1])
    below = np.searchsorted(ps, cands, side="left")  # count of p < t
    n_pred = ps.size - below
    tp = n_pos - cumpos[below]
    denom = n_pred + n_pos  # F1 = 2TP / (2TP + FP + FN) = 2TP / (n_pred + n_pos)
    f1 = np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 0.0)
    return cands, f1


def search_thresholds(
    probs: np.ndarray, targets: np.ndarray, grid: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per-column threshold maximising F1 of ``prob >= threshold`` on validation data.

    Args:
        probs: (N, K) probabilities.
        targets: (N, K) with 1 = positive, 0 = negative, -1 = missing (skipped).
        grid: candidate thresholds; None = every distinct probability of the column (the
            exact optimum: any other threshold selects the same set as one of them, or none).

    Returns:
        dict with ``thresholds`` (K,), ``f1`` (K,), ``n_pos`` (K,) int, ``n_valid`` (K,) int.
        Ties between thresholds with equal F1 go to the *lowest* threshold (more recall for the
        same validation F1).  Columns without any valid target get NaN threshold and F1.
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise ValueError(f"probs and targets must both be (N, K), got {probs.shape}, {targets.shape}")
    if not np.isin(targets, (-1, 0, 1)).all():
        raise ValueError("targets must be 1, 0 or -1 (missing)")
    g = None if grid is None else np.unique(np.asarray(grid, dtype=np.float64))
    k = probs.shape[1]
    out = {
        "thresholds": np.full(k, np.nan), "f1": np.full(k, np.nan),
        "n_pos": np.zeros(k, np.int64), "n_valid": np.zeros(k, np.int64),
    }
    for j in range(k):  # loop over columns only; each column is vectorised
        valid = targets[:, j] >= 0
        out["n_valid"][j] = valid.sum()
        if not valid.any():
            continue
        y = targets[valid, j].astype(np.int64)
        out["n_pos"][j] = y.sum()
        cands, f1 = _column_f1_curve(probs[valid, j], y, g)
        best = int(np.argmax(f1))  # first maximum = lowest threshold (cands ascending)
        out["thresholds"][j], out["f1"][j] = cands[best], f1[best]
    return out
