"""Classification reports: multi-label (per-attribute heads, missing labels) and multi-class.

Key names follow the seed ``door_state`` metrics JSON: per attribute ``ap, f1, p, r, thr, n,
valid, tp, fp, fn`` under ``per_attr``; overall ``mAP`` and ``macro_f1`` over *active* heads.
Undefined values (e.g. AP of a head without valid positives) are NaN, as in
:func:`kagglekit.calibrate.search_thresholds`.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import average_precision_score

from kagglekit.calibrate import search_thresholds

__all__ = ["multiclass_report", "multilabel_report"]


def _check_multilabel(probs: np.ndarray, targets: np.ndarray, names: Sequence[str]) -> None:
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise ValueError(f"probs and targets must both be (N, K), got {probs.shape}, {targets.shape}")
    if len(names) != probs.shape[1]:
        raise ValueError(f"{len(names)} names for {probs.shape[1]} columns")
    if not np.isfinite(probs).all():
        raise ValueError("probs contain NaN or inf")
    if not np.isin(targets, (-1, 0, 1)).all():
        raise ValueError("targets must be 1, 0 or -1 (missing)")


def _head_metrics(p: np.ndarray, y: np.ndarray, thr: float) -> dict[str, Any]:
    """Metrics of one head on its valid entries: p (n,) probabilities, y (n,) 0/1 targets.

    Prediction = ``p >= thr`` (the convention of ``search_thresholds``); P/R/F1 use
    ``zero_division = 0`` like sklearn.
    """
    n_pos, n_valid = int(y.sum()), int(y.size)
    pred = p >= thr if np.isfinite(thr) else np.zeros(y.size, bool)
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    fn = n_pos - tp
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / n_pos if n_pos else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    # sklearn's AP (step-wise precision-recall area); undefined without a positive.
    ap = float(average_precision_score(y, p)) if n_pos > 0 else float("nan")
    return {"ap": ap, "f1": float(f1), "p": float(prec), "r": float(rec), "thr": float(thr),
            "n": n_pos, "valid": n_valid, "tp": tp, "fp": fp, "fn": fn}


def multilabel_report(probs: np.ndarray, targets: np.ndarray, names: Sequence[str],
                      thresholds: Sequence[float] | None = None) -> dict[str, Any]:
    """Per-attribute and overall metrics of K binary heads with missing labels masked.

    Args:
        probs: (N, K) probabilities.
        targets: (N, K) int, 1 / 0 / -1 (missing; excluded from every metric of its head).
        names: K attribute names.
        thresholds: K decision thresholds (``prob >= thr`` is positive); None = the
            validation-best F1 threshold of each head (``calibrate.search_thresholds``; only
            honest on data the thresholds were not chosen on if given explicitly).

    Returns:
        ``{"per_attr": {name: {ap, f1, p, r, thr, n, valid, tp, fp, fn}}, "mAP", "macro_f1",
        "active": [names], "thresholds_searched": bool}``. A head is *active* when its valid
        entries hold at least one positive and one negative; ``mAP`` / ``macro_f1`` are means
        over active heads (NaN if none).
    """
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    _check_multilabel(probs, targets, names)
    if thresholds is None:
        thr = search_thresholds(probs, targets)["thresholds"]
    else:
        thr = np.asarray(thresholds, dtype=np.float64)
        if thr.shape != (probs.shape[1],):
            raise ValueError(f"need {probs.shape[1]} thresholds, got shape {thr.shape}")
    per_attr: dict[str, dict[str, Any]] = {}
    active: list[str] = []
    for j, name in enumerate(names):
        valid = targets[:, j] >= 0
        y = targets[valid, j].astype(np.int64)
        per_attr[name] = _head_metrics(probs[valid, j], y, float(thr[j]))
        if 0 < y.sum() < y.size:
            active.append(name)

    def _mean(key: str) -> float:
        return float(np.mean([per_attr[a][key] for a in active])) if active else float("nan")
    return {"per_attr": per_attr, "mAP": _mean("ap"), "macro_f1": _mean("f1"),
            "active": active, "thresholds_searched": thresholds is None}


def multiclass_report(probs: np.ndarray, targets: np.ndarray,
                      names: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro F1 with and without zero-support classes, per-class P/R/F1, confusion.

    Args:
        probs: (N, C) scores (argmax = prediction).
        targets: (N,) int class indices in [0, C).
        names: C class names.

    Returns:
        ``{"accuracy", "macro_f1" (mean over all C classes; a zero-support class has F1 = 0,
        sklearn ``zero_division=0``), "macro_f1_active" (mean over classes with support > 0),
        "per_class": {name: {precision, recall, f1, support}}, "confusion": C x C list
        (rows = target, columns = prediction)}``. Seed footnote: a 4-class model scored
        macro F1 0.5815 including the zero-support "unknown" class vs 0.775 over the 3 active.
    """
    probs = np.asarray(probs)
    targets = np.asarray(targets).astype(np.int64)
    n, c = probs.shape if probs.ndim == 2 else (-1, -1)
    if probs.ndim != 2 or targets.shape != (n,) or len(names) != c or n == 0:
        raise ValueError(f"need probs (N, C), targets (N,), C names; got {probs.shape}, "
                         f"{targets.shape}, {len(names)} names")
    if targets.min() < 0 or targets.max() >= c:
        raise ValueError(f"targets must be class indices in [0, {c})")
    pred = probs.argmax(axis=1)
    cm = np.bincount(targets * c + pred, minlength=c * c).reshape(c, c)
    tp, support, n_pred = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    prec = np.divide(tp, n_pred, out=np.zeros(c), where=n_pred > 0)
    rec = np.divide(tp, support, out=np.zeros(c), where=support > 0)
    denom = support + n_pred  # F1 = 2TP / (2TP + FP + FN)
    f1 = np.divide(2 * tp, denom, out=np.zeros(c), where=denom > 0)
    act = support > 0
    per_class = {name: {"precision": float(prec[i]), "recall": float(rec[i]),
                        "f1": float(f1[i]), "support": int(support[i])}
                 for i, name in enumerate(names)}
    return {"accuracy": float(tp.sum() / n), "macro_f1": float(f1.mean()),
            "macro_f1_active": float(f1[act].mean()), "n_active": int(act.sum()),
            "per_class": per_class, "confusion": cm.tolist()}
