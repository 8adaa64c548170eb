"""MABe post-processing: per-frame action probabilities of one (video, agent, target) -> intervals.

Pipeline per (video, agent, target): ``smooth_probs`` -> ``probs_to_intervals`` (thresholds from
``tune_thresholds`` on OOF frames) -> rows -> ``intervals_to_submission``.  Intervals are
``[start_frame, stop_frame)`` (0-based, stop exclusive), and at most one action per frame, as the
metric requires (:mod:`kagglekit.metrics.mabe`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from kagglekit.calibrate import search_thresholds

__all__ = ["SUBMISSION_COLUMNS", "intervals_to_submission", "probs_to_intervals", "smooth_probs",
           "tune_thresholds"]

SUBMISSION_COLUMNS = ["row_id", "video_id", "agent_id", "target_id", "action", "start_frame", "stop_frame"]


def _as_2d(probs: np.ndarray, name: str = "probs") -> np.ndarray:
    arr = np.asarray(probs, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (T, A) = (frames, actions), got shape {arr.shape}")
    return arr


def smooth_probs(probs: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along frames: (T, A) -> (T, A) float64.

    Frame t averages frames ``[t - window // 2, t + (window - 1) // 2]`` that exist (the window
    shrinks at the ends, so a constant input stays constant).  ``window=1`` is the identity.
    """
    arr = _as_2d(probs)
    try:
        ok = int(window) == window and window >= 1
    except (TypeError, ValueError, OverflowError):  # int(inf) raised OverflowError, int(nan) a bare ValueError
        ok = False
    if not ok:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    window = int(window)
    if window == 1 or arr.shape[0] == 0:
        return arr.copy()
    t = arr.shape[0]
    # A half-window past the sequence averages everything anyway; capping it keeps np.arange
    # arithmetic in int64 for huge windows (10**30 raised OverflowError).
    left, right = min(window // 2, t), min((window - 1) // 2, t)
    csum = np.vstack([np.zeros((1, arr.shape[1])), np.cumsum(arr, axis=0)])  # (T+1, A)
    lo = np.clip(np.arange(t) - left, 0, t)
    hi = np.clip(np.arange(t) + right + 1, 0, t)
    return (csum[hi] - csum[lo]) / (hi - lo)[:, None]


def _threshold_vector(thresholds: Mapping[str, float] | np.ndarray, actions: Sequence[str]) -> np.ndarray:
    """(A,) thresholds in ``actions`` order; ValueError naming a missing action."""
    if isinstance(thresholds, Mapping):
        if missing := [a for a in actions if a not in thresholds]:
            raise ValueError(f"thresholds has no value for action(s) {missing}; add them (e.g. from tune_thresholds)")
        return np.array([float(thresholds[a]) for a in actions])
    vec = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if vec.size == 1:
        return np.full(len(actions), float(vec[0]))
    if vec.size != len(actions):
        raise ValueError(f"thresholds has {vec.size} values but there are {len(actions)} actions")
    return vec


def frame_labels(probs: np.ndarray, thresholds: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """(T,) int: per frame the index of the most probable action with prob >= its threshold, else -1.

    Args: probs (T, A); thresholds (A,); allowed (A,) bool or None (all allowed).
    Ties go to the lower action index (``np.argmax``).
    """
    ok = probs >= thresholds[None, :]
    if allowed is not None:
        ok &= allowed[None, :]
    masked = np.where(ok, probs, -np.inf)
    best = masked.argmax(axis=1) if masked.shape[1] else np.zeros(masked.shape[0], np.int64)
    return np.where(ok.any(axis=1), best, -1)


def _runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of equal values in (T,) ``labels``: (values, starts, stops), stop exclusive."""
    if labels.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [labels.size]])
    return labels[starts], starts, stops


def probs_to_intervals(
    probs: np.ndarray,
    actions: Sequence[str],
    thresholds: Mapping[str, float] | np.ndarray,
    *,
    min_duration: int = 1,
    allowed: Sequence[bool] | None = None,
) -> list[tuple[str, int, int]]:
    """Frame probabilities of one (video, agent, target) -> ``[(action, start, stop), ...]``.

    Args:
        probs: (T, A) per-frame probabilities, column j = ``actions[j]``.
        actions: A action names.
        thresholds: {action: threshold}, an (A,) array, or one scalar for all.
        min_duration: runs shorter than this many frames are dropped (not merged into neighbours).
        allowed: (A,) bool, False for actions not in the video's ``behaviors_labeled`` for this
            agent/target (never predicted).
    Returns:
        Intervals sorted by start; one action per frame, ``stop`` exclusive.
    """
    arr = _as_2d(probs)
    if arr.shape[1] != len(actions):
        raise ValueError(f"probs has {arr.shape[1]} columns but {len(actions)} actions were given")
    if min_duration < 1:
        raise ValueError(f"min_duration must be >= 1, got {min_duration}")
    mask = None
    if allowed is not None:
        mask = np.asarray(allowed, dtype=bool).reshape(-1)
        if mask.size != len(actions):
            raise ValueError(f"allowed has {mask.size} entries but there are {len(actions)} actions")
    values, starts, stops = _runs(frame_labels(arr, _threshold_vector(thresholds, actions), mask))
    keep = (values >= 0) & (stops - starts >= min_duration)
    return [(actions[v], int(s), int(e)) for v, s, e in zip(values[keep], starts[keep], stops[keep])]


def tune_thresholds(
    probs_list: Sequence[np.ndarray],
    labels_list: Sequence[np.ndarray],
    actions: Sequence[str],
    grid: np.ndarray | Sequence[float] | None = None,
    *,
    default: float = 0.5,
) -> dict[str, float]:
    """Per action, the threshold maximising frame F1 on out-of-fold frames.

    Args:
        probs_list: sequences' (T_i, A) probabilities (e.g. one per video/agent/target).
        labels_list: matching (T_i, A) with 1 / 0, and -1 = not labelled (ignored).
        actions: A names; grid: candidate thresholds (None = every distinct probability).
        default: threshold for actions without any labelled frame.
    Each action is tuned on its own (``kagglekit.calibrate.search_thresholds``); the argmax
    between actions in ``probs_to_intervals`` is not modelled.
    """
    if len(probs_list) != len(labels_list) or not len(probs_list):
        raise ValueError(f"need as many labels as probs arrays (>= 1), got {len(probs_list)} and {len(labels_list)}")
    for i, (p, y) in enumerate(zip(probs_list, labels_list)):
        if np.shape(p) != np.shape(y) or np.ndim(p) != 2 or np.shape(p)[1] != len(actions):
            raise ValueError(f"sequence {i}: probs {np.shape(p)} and labels {np.shape(y)} must both be "
                             f"(T, {len(actions)})")
    probs = np.concatenate([np.asarray(p, np.float64) for p in probs_list])
    labels = np.concatenate([np.asarray(y) for y in labels_list]).astype(np.int64)
    found = search_thresholds(probs, labels, None if grid is None else np.asarray(grid, np.float64))
    return {a: (float(t) if np.isfinite(t) else float(default)) for a, t in zip(actions, found["thresholds"])}


def intervals_to_submission(rows: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """Rows (dicts with video_id, agent_id, target_id, action, start_frame, stop_frame) -> (n, 7)
    submission frame with ``row_id`` 0..n-1 and the competition's column order."""
    cols = SUBMISSION_COLUMNS[1:]
    for i, row in enumerate(rows):
        if missing := [c for c in cols if c not in row]:
            raise ValueError(f"interval row {i} lacks {missing}; each row needs {cols}")
    frame = pd.DataFrame([{c: row[c] for c in cols} for row in rows], columns=cols)
    frame["start_frame"] = frame["start_frame"].astype(np.int64)
    frame["stop_frame"] = frame["stop_frame"].astype(np.int64)
    frame.insert(0, "row_id", np.arange(len(frame), dtype=np.int64))
    return frame
