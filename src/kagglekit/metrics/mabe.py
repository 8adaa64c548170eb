"""MABe-2025 ("Social Action Recognition in Mice") metric: per-lab, per-action frame F-beta.

Port of the competition's ``mabe-f-beta`` metric (``mouse_fbeta`` / ``single_lab_f1``, the
Kaggle metric notebook; its doctests are reproduced in ``tests/test_metrics_mabe.py``), computed on
intervals with numpy instead of Python ``set``s of frames, so 1,000 videos x 10^5 frames is fast.

Semantics (identical to the official code):

- key = (video, agent, target, action); its label frames = union of ``range(start, stop)`` of its
  solution rows; its predicted frames = union over its submission rows (repeats count once).
- A submission row counts only if ``"agent,target,action"`` is in its video's
  ``behaviors_labeled``; submission rows of videos not in the solution are dropped.
- One (video, agent, target) predicted with two actions on one frame -> ``ValueError``.
- Per lab and action: TP/FP/FN frame counts summed over keys; F-beta (0 when TP+FP+FN = 0);
  lab score = mean over the lab's actions; score = mean over labs.
- The lab's actions are those of its solution rows **plus** those of its counted (labelled)
  predictions: the official code reads ``label_frames[key]`` from a ``defaultdict`` for every
  predicted key, which inserts it, so a labelled-but-never-annotated action enters the average
  with F-beta 0.  Kept on purpose (``exactly the official metric``).
- Deviation: stray single quotes in ``behaviors_labeled`` (labs ReflectiveManatee, DeliriousFly:
  ``"'mouse1','mouse2','sniff'"``) are stripped; the official ``json.loads`` keeps them, which only
  matters if a video lists an action *only* in quoted form (none does in train.csv).
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from kagglekit.submission.validate import ids_as_str

__all__ = ["mabe_breakdown", "mabe_score", "merge_intervals", "overlap_starts", "parse_behaviors_labeled"]

KEY_COLUMNS = ["video_id", "agent_id", "target_id", "action"]
FRAME_COLUMNS = ["start_frame", "stop_frame"]
SOLUTION_COLUMNS = KEY_COLUMNS + FRAME_COLUMNS + ["lab_id", "behaviors_labeled"]
SUBMISSION_COLUMNS = KEY_COLUMNS + FRAME_COLUMNS


def parse_behaviors_labeled(value: Any) -> list[tuple[str, str, str]]:
    """``'["mouse1,mouse2,attack", "mouse1,self,rear"]'`` -> ``[("mouse1","mouse2","attack"), ...]``.

    Stray single quotes (``"'mouse1','mouse2','sniff'"``) are removed; NaN/None/empty -> ``[]``.
    Duplicates are kept once, in first-seen order.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, (list, tuple)):
        items = list(value)
    else:
        text = str(value).strip()
        if not text:
            return []
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"behaviors_labeled {text[:80]!r} is not a JSON list ({exc}); "
                             'expected e.g. \'["mouse1,mouse2,attack"]\'') from None
    if not isinstance(items, list):
        raise ValueError(f"behaviors_labeled must be a JSON list of 'agent,target,action', got {value!r}")
    out: dict[tuple[str, str, str], None] = {}
    for item in items:
        parts = [p.strip() for p in str(item).replace("'", "").split(",")]
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"behaviors_labeled entry {item!r} is not 'agent,target,action'")
        out[(parts[0], parts[1], parts[2])] = None
    return list(out)


def _frames(frame: pd.DataFrame, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(start, stop) int64 (N,); ValueError naming the first bad row."""
    out = []
    for col in FRAME_COLUMNS:
        num = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(num) | (num != np.round(num)))
        if bad.size:
            raise ValueError(f"{what} row {bad[0]}: {col}={frame[col].iat[bad[0]]!r} is not an integer frame "
                             f"({bad.size} such rows); fill or drop them")
        out.append(num.astype(np.int64))
    bad = np.flatnonzero(out[0] > out[1])
    if bad.size:
        raise ValueError(f"{what} row {bad[0]}: start_frame {out[0][bad[0]]} > stop_frame {out[1][bad[0]]} "
                         f"({bad.size} such rows); stop_frame is exclusive and must be >= start_frame")
    return out[0], out[1]


def _normalise(frame: pd.DataFrame, columns: list[str], what: str) -> pd.DataFrame:
    """Typed copy: id/action columns as str, frames int64, positional index."""
    if missing := [c for c in columns if c not in frame.columns]:
        raise ValueError(f"{what} is missing column(s) {missing}; expected {columns}")
    out = pd.DataFrame({c: ids_as_str(frame[c]).to_numpy() for c in KEY_COLUMNS})
    out["start_frame"], out["stop_frame"] = _frames(frame.reset_index(drop=True), what)
    if "lab_id" in columns:
        out["lab_id"] = ids_as_str(frame["lab_id"]).to_numpy()
        # Only a video's first row is ever read (official: ``.first()``); copying every row's JSON
        # string into Python objects was the metric's largest allocation (~1 KB per solution row).
        first = np.flatnonzero(~out["video_id"].duplicated().to_numpy())
        labeled = np.full(len(out), None, dtype=object)
        labeled[first] = frame["behaviors_labeled"].iloc[first].to_numpy(dtype=object)
        out["behaviors_labeled"] = labeled
    return out


def _allowed_rows(sub: pd.DataFrame, sol: pd.DataFrame) -> np.ndarray:
    """(N,) bool: submission row's "agent,target,action" is in its video's behaviors_labeled."""
    first = sol.drop_duplicates("video_id")  # official: the video's first solution row
    allowed = [f"{v}\x1f{a},{t},{b}" for v, bl in zip(first["video_id"], first["behaviors_labeled"])
               for a, t, b in parse_behaviors_labeled(bl)]
    key = sub["video_id"] + "\x1f" + sub["agent_id"] + "," + sub["target_id"] + "," + sub["action"]
    return key.isin(set(allowed)).to_numpy()


def _sorted_runs(group: np.ndarray, start: np.ndarray, stop: np.ndarray) -> dict[str, np.ndarray]:
    """Sort non-empty intervals by (group, start); ``covered`` = max stop of earlier ones in the group.

    Args: group/start/stop (N,) int64, frames >= 0.  Groups are separated by adding
    ``group * span`` to frames, so one global running maximum serves every group.
    """
    keep = stop > start
    group, start, stop = group[keep], start[keep], stop[keep]
    order = np.lexsort((start, group))
    group, start, stop = group[order], start[order], stop[order]
    span = int(stop.max()) + 1 if stop.size else 1
    off = group * span
    running = np.maximum.accumulate(stop + off) if stop.size else stop
    covered = np.concatenate([[-1], running[:-1]]) - off  # may be < 0 for a group's first interval
    return {"group": group, "start": start, "stop": stop, "covered": covered}


def _union_lengths(group: np.ndarray, start: np.ndarray, stop: np.ndarray, n_groups: int) -> np.ndarray:
    """(n_groups,) int64: number of distinct frames in the union of each group's intervals."""
    r = _sorted_runs(group, start, stop)
    new = np.maximum(r["stop"] - np.maximum(r["start"], r["covered"]), 0)
    return np.bincount(r["group"], weights=new, minlength=n_groups).round().astype(np.int64)


def _merged(group: np.ndarray, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, ...]:
    """Union of each group's intervals as disjoint (group, start, stop) runs, sorted."""
    r = _sorted_runs(group, start, stop)
    if r["start"].size == 0:
        return r["group"], r["start"], r["stop"]
    heads = np.flatnonzero(r["start"] > r["covered"])  # touching intervals merge too
    stops = np.maximum.reduceat(r["stop"], heads)
    return r["group"][heads], r["start"][heads], stops


def merge_intervals(group: np.ndarray, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, ...]:
    """Union of each group's ``[start, stop)`` intervals as disjoint runs.

    Args: group/start/stop (N,) int64, frames >= 0.  Returns (group, start, stop) (R,) sorted by
    (group, start); empty intervals vanish, touching ones merge.
    """
    return _merged(np.asarray(group, np.int64), np.asarray(start, np.int64), np.asarray(stop, np.int64))


def overlap_starts(group: np.ndarray, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where intervals of one group overlap: (group, first shared frame) per overlapping interval.

    Args: group/start/stop (N,) int64, frames >= 0.  Feed it each key's merged runs with the
    *pair* as group: any overlap left is then two different actions on one frame.
    """
    r = _sorted_runs(np.asarray(group, np.int64), np.asarray(start, np.int64), np.asarray(stop, np.int64))
    hit = r["start"] < r["covered"]
    return r["group"][hit], r["start"][hit]


def _check_one_action_per_frame(sub: pd.DataFrame, key_id: np.ndarray, start: np.ndarray,
                                stop: np.ndarray) -> None:
    """Raise if one (video, agent, target) has two actions on a frame (official HostVisibleError)."""
    k, s, e = _merged(key_id, start, stop)  # one key's runs are disjoint: overlaps are 2 actions
    first_row = pd.Series(np.arange(len(key_id))).groupby(key_id).first()
    rows = first_row.reindex(k).to_numpy()
    pair, _ = pd.factorize(pd.MultiIndex.from_frame(sub[["video_id", "agent_id", "target_id"]].iloc[rows]))
    groups, frames = overlap_starts(pair, s, e)
    if groups.size:
        row = sub.iloc[rows[np.flatnonzero(pair == groups[0])[0]]]
        raise ValueError(
            f"video {row['video_id']} agent {row['agent_id']} target {row['target_id']}: two actions predicted "
            f"on frame {frames[0]} ({groups.size} overlap(s) in all); keep one action per agent/target per frame")


def _key_counts(sol: pd.DataFrame, sub: pd.DataFrame) -> pd.DataFrame:
    """Per key (video, agent, target, action): lab_id, labelled L, predicted P, union U frame counts."""
    keys = pd.concat([sol[KEY_COLUMNS], sub[KEY_COLUMNS]], ignore_index=True)
    key_id, uniq = pd.factorize(pd.MultiIndex.from_frame(keys))
    key_id = key_id.astype(np.int64)
    n, n_sol = len(uniq), len(sol)
    start = np.concatenate([sol["start_frame"].to_numpy(), sub["start_frame"].to_numpy()])
    stop = np.concatenate([sol["stop_frame"].to_numpy(), sub["stop_frame"].to_numpy()])
    shift = min(int(start.min()), 0)  # frames may be negative in principle: make them >= 0
    start, stop = start - shift, stop - shift
    _check_one_action_per_frame(sub, key_id[n_sol:], start[n_sol:], stop[n_sol:])
    counts = pd.DataFrame(list(uniq), columns=KEY_COLUMNS) if n else pd.DataFrame(columns=KEY_COLUMNS)
    counts["L"] = _union_lengths(key_id[:n_sol], start[:n_sol], stop[:n_sol], n)
    counts["P"] = _union_lengths(key_id[n_sol:], start[n_sol:], stop[n_sol:], n)
    counts["U"] = _union_lengths(key_id, start, stop, n)
    return counts


def mabe_breakdown(solution: pd.DataFrame, submission: pd.DataFrame, beta: float = 1.0) -> pd.DataFrame:
    """Per (lab_id, action): tp, fp, fn (frame counts) and f1 (the F-beta), sorted by lab, action.

    Args:
        solution: (N, >=8) rows video_id, agent_id, target_id, action, start_frame, stop_frame
            (stop exclusive), lab_id, behaviors_labeled (the video's JSON list, on each row).
        submission: (M, >=6) rows video_id, agent_id, target_id, action, start_frame, stop_frame
            (row_id and other columns are ignored).
    Raises:
        ValueError: missing columns, empty solution, non-integer or reversed frames, a video in
            two labs, or two actions for one agent/target on one frame.
    """
    sol = _normalise(solution, SOLUTION_COLUMNS, "solution")
    sub = _normalise(submission, SUBMISSION_COLUMNS, "submission")
    if sol.empty or sub.empty:  # official: 'Missing solution or submission data'
        raise ValueError(f"{'solution' if sol.empty else 'submission'} has no rows; nothing to score "
                         "(the official metric rejects this too)")
    labs_per_video = sol.groupby("video_id")["lab_id"].nunique()
    if (labs_per_video > 1).any():
        raise ValueError(f"video {labs_per_video.index[labs_per_video > 1][0]} has several lab_ids in the solution")
    sub = sub[sub["video_id"].isin(set(sol["video_id"]))].reset_index(drop=True)
    sub = sub[_allowed_rows(sub, sol)].reset_index(drop=True)
    counts = _key_counts(sol, sub)
    counts["lab_id"] = counts["video_id"].map(sol.drop_duplicates("video_id").set_index("video_id")["lab_id"])
    counts["tp"] = counts["L"] + counts["P"] - counts["U"]  # |A & B| = |A| + |B| - |A | B|
    counts["fp"], counts["fn"] = counts["P"] - counts["tp"], counts["L"] - counts["tp"]
    table = counts.groupby(["lab_id", "action"], sort=True)[["tp", "fp", "fn"]].sum().reset_index()
    b2 = beta * beta
    denom = (1 + b2) * table["tp"] + b2 * table["fn"] + table["fp"]
    table["f1"] = np.where(denom > 0, (1 + b2) * table["tp"] / denom.where(denom > 0, 1), 0.0)
    return table


def mabe_score(solution: pd.DataFrame, submission: pd.DataFrame, beta: float = 1.0) -> float:
    """Official MABe score: mean over labs of the mean per-action F-beta (see module docstring)."""
    table = mabe_breakdown(solution, submission, beta)
    return float(table.groupby("lab_id")["f1"].mean().mean())
