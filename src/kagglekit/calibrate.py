"""Calibration helpers: TTA temperature tables, NLL temperature scaling, F1 thresholds.

* Segmentation TTA temperature: the engine averages ``softmax(logits / T)`` over TTA views for
  each T of a grid and accumulates one confusion matrix per T; :func:`temperature_table` and
  :func:`best_temperature` turn those into a choice of T, and :func:`search_temperature`
  widens the grid (log scale, within :data:`TEMPERATURE_BOUNDS`) while its best T sits at an edge.
* :func:`fit_temperature_nll`: classic temperature scaling (Guo et al. 2017, "On Calibration of
  Modern Neural Networks", ICML) for classification logits.
* :func:`search_thresholds`: per-column validation-best F1 threshold for multi-label outputs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

from kagglekit.metrics.segmentation import iou_from_confusion

__all__ = [
    "SEED_TEMPERATURES",
    "TEMPERATURE_BOUNDS",
    "TemperatureSearch",
    "WIDE_TEMPERATURES",
    "best_temperature",
    "fit_temperature_nll",
    "search_temperature",
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
# Widening temperature search (a grid whose best is at its edge is extended, log scale)
# ----------------------------------------------------------------------------------------------
TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)


@dataclass(frozen=True)
class TemperatureSearch:
    """Outcome of :func:`search_temperature`.

    ``scores``: every T evaluated → score; ``status``: ``interior`` (the best T has a worse T on
    both sides), ``flat`` (at the grid's edge, but its neighbour scores the same: T makes no
    difference there), ``bound`` (still improving at :data:`TEMPERATURE_BOUNDS`), ``edge`` (still
    improving when the pass budget ran out), ``single`` (one T configured: nothing searched);
    ``initial`` / ``searched``: (lowest, highest) T of the configured grid / of all T evaluated;
    ``extra_passes``: evaluations after the first (widening + refinement)."""

    best: float
    score: float
    scores: dict[float, float]
    status: str
    initial: tuple[float, float]
    searched: tuple[float, float]
    extra_passes: int

    @property
    def interior(self) -> bool:
        return self.status == "interior"

    @property
    def widened(self) -> bool:
        return self.searched != self.initial

    def sentence(self, metric: str = "mIoU") -> str:
        """One line for a report, e.g. "Best T = 3.5 is an interior optimum; the grid 0.5–2
        was widened to 0.5–4.74 (×2.37 upward) in 2 extra passes."."""
        lo, hi = self.initial
        text = {"interior": f"Best T = {self.best:.3g} is an interior optimum of the {metric} curve",
                "flat": f"Best T = {self.best:.3g} lies at the edge of the grid but its neighbour scores the same "
                        f"({metric} does not depend on T there)",
                "bound": f"Best T = {self.best:.3g} is at the search bound "
                         f"[{TEMPERATURE_BOUNDS[0]:g}, {TEMPERATURE_BOUNDS[1]:g}] with {metric} still rising: "
                         "the optimum may lie beyond it",
                "edge": f"Best T = {self.best:.3g} is still at the edge after {self.extra_passes} extra passes "
                        f"({metric} still rising)",
                "single": f"One temperature configured (T = {self.best:.3g}): no search"}[self.status]
        if not self.widened:
            return text + f"; grid {lo:.3g}–{hi:.3g}, not widened."
        up, down = self.searched[1] / hi, lo / self.searched[0]
        how = " and ".join(f"×{f:.3g} {d}" for f, d in ((up, "upward"), (down, "downward")) if f > 1 + 1e-9)
        return (text + f"; the grid {lo:.3g}–{hi:.3g} was widened to {self.searched[0]:.3g}–{self.searched[1]:.3g} "
                f"({how}) in {self.extra_passes} extra pass(es).")

    def summary(self, metric: str = "mIoU") -> dict:
        """JSON-ready record (metrics.json ``temperature_search``)."""
        return {"best_temperature": self.best, "score": self.score, "status": self.status,
                "interior": self.interior, "widened": self.widened, "initial_range": list(self.initial),
                "searched_range": list(self.searched), "widen_factor": [self.initial[0] / self.searched[0],
                                                                        self.searched[1] / self.initial[1]],
                "extra_passes": self.extra_passes, "bounds": list(TEMPERATURE_BOUNDS),
                "sentence": self.sentence(metric)}


def _best_of(scores: Mapping[float, float]) -> float:
    """The best T of ``scores`` by :func:`best_temperature`'s rule (ties → T closest to 1.0)."""
    table = pd.DataFrame({"temperature": list(scores), "miou": list(scores.values())})
    return best_temperature(table)[0]


def edge_direction(scores: Mapping[float, float]) -> int:
    """+1 when the best T is the largest evaluated and beats its neighbour (the optimum may lie
    above), -1 likewise below, 0 otherwise (interior, flat, single)."""
    ts = sorted(scores)
    if len(ts) < 2:
        return 0
    best = _best_of(scores)
    if best == ts[-1] and scores[best] > scores[ts[-2]]:
        return 1
    if best == ts[0] and scores[best] > scores[ts[1]]:
        return -1
    return 0


def temperature_status(scores: Mapping[float, float], bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> str:
    """interior / flat / bound / edge / single of a finished search (see :class:`TemperatureSearch`)."""
    ts = sorted(scores)
    if len(ts) < 2:
        return "single"
    direction, best = edge_direction(scores), _best_of(scores)
    if direction == 0:
        return "flat" if best in (ts[0], ts[-1]) else "interior"
    at_bound = best >= bounds[1] * (1 - 1e-9) if direction > 0 else best <= bounds[0] * (1 + 1e-9)
    return "bound" if at_bound else "edge"


def _short(t: float) -> float:
    """4 significant digits: new temperatures read back exactly from their ``f"{t:g}"`` keys."""
    return float(f"{float(t):.4g}")


def _widen_points(scores: Mapping[float, float], direction: int, n: int, bounds: tuple[float, float]) -> list[float]:
    """``n`` temperatures beyond the grid's edge, log-spaced at the edge's own ratio (kept in
    [1.25, 2]), clipped to ``bounds``; deterministic, so folds widening alike share them."""
    ts = sorted(scores)
    edge, inner = (ts[-1], ts[-2]) if direction > 0 else (ts[0], ts[1])
    ratio = float(np.clip(max(edge, inner) / min(edge, inner), 1.25, 2.0)) ** direction
    points = {float(np.clip(_short(edge * ratio ** k), *bounds)) for k in range(1, n + 1)}
    return sorted(points - set(ts))


def _refine_points(scores: Mapping[float, float], n: int) -> list[float]:
    """``n`` log-spaced temperatures strictly between the best T's two neighbours (those of
    the coarse widening steps), excluding those already evaluated."""
    ts = sorted(scores)
    k = ts.index(_best_of(scores))
    lo, hi = ts[max(k - 1, 0)], ts[min(k + 1, len(ts) - 1)]
    points = {_short(t) for t in np.geomspace(lo, hi, n + 2)[1:-1]}
    return sorted(points - set(ts))


def search_temperature(evaluate: Callable[[Sequence[float]], Mapping[float, float]], grid: Sequence[float],
                       bounds: tuple[float, float] = TEMPERATURE_BOUNDS, points_per_pass: int = 3,
                       refine_points: int = 9, max_passes: int = 6) -> TemperatureSearch:
    """Best temperature of a score that is higher-is-better, widening the grid until the optimum
    is interior.

    ``evaluate(temperatures)`` → {T: score} for a batch (one pass over the validation data: every
    T of a pass costs one softmax per view, the forward passes are shared). The configured
    ``grid`` is evaluated first; an optimum inside it is returned unchanged. While the best T is
    at an edge and beats its neighbour, ``points_per_pass`` more temperatures beyond that edge are
    evaluated (log scale, within ``bounds``); once the optimum is interior after widening, one
    pass of ``refine_points`` between its neighbours refines it (the widening steps are coarser
    than the grid). At most ``max_passes`` extra passes.
    """
    grid = sorted({float(t) for t in grid})
    if not grid or grid[0] <= 0:
        raise ValueError(f"temperature grid must be non-empty and > 0, got {grid}")
    scores = {float(t): float(v) for t, v in evaluate(grid).items()}
    passes = 0
    while passes < max_passes and (direction := edge_direction(scores)) != 0:
        new = _widen_points(scores, direction, points_per_pass, bounds)
        if not new:  # at the bound already
            break
        scores.update({float(t): float(v) for t, v in evaluate(new).items()})
        passes += 1
    if passes and passes < max_passes and edge_direction(scores) == 0 and (new := _refine_points(scores, refine_points)):
        scores.update({float(t): float(v) for t, v in evaluate(new).items()})
        passes += 1
    best = _best_of(scores)
    ts = sorted(scores)
    return TemperatureSearch(best, scores[best], dict(sorted(scores.items())), temperature_status(scores, bounds),
                             (grid[0], grid[-1]), (ts[0], ts[-1]), passes)


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
