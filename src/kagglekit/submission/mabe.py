"""Validate / write a MABe-2025 submission (``row_id,video_id,agent_id,target_id,action,start_frame,
stop_frame``; one predicted interval per row, frames 0-based, ``stop_frame`` exclusive).

:func:`validate_mabe` collects **every** problem and raises one :class:`SubmissionError` (style of
:mod:`kagglekit.submission.validate`; row numbers are 1-based data rows). Rules:

- columns exactly the sample's; no empty cells;
- ``row_id`` integers, unique;
- ``video_id`` one of ``videos`` (the test.csv rows);
- ``agent_id`` ``mouseK``; ``target_id`` ``mouseK`` or ``self``;
- frames integers >= 0 and ``start_frame < stop_frame``;
- ``"agent,target,action"`` in the video's ``behaviors_labeled`` (``strict_actions=False`` lets
  such rows through: the metric ignores them, e.g. the public sample's placeholder row);
- one action per (video, agent, target) and frame: intervals of two actions must not overlap
  (the metric raises on that; overlaps of the same action are harmless and allowed).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit.io import save_csv
from kagglekit.metrics.mabe import merge_intervals, overlap_starts, parse_behaviors_labeled
from kagglekit.submission.rle import SubmissionError
from kagglekit.submission.validate import CsvLike, ids_as_str, _check_columns, _listing, _load, _missing

__all__ = ["MABE_COLUMNS", "validate_mabe", "write_mabe_submission"]

MABE_COLUMNS = ["row_id", "video_id", "agent_id", "target_id", "action", "start_frame", "stop_frame"]
AGENT_PATTERN = r"mouse\d+"
TARGET_PATTERN = r"(?:mouse\d+|self)"
MAX_INT = 2**53  # larger row ids / frames are not exact in float64 and cannot be int64 frame numbers


def _rows(sub: pd.DataFrame, idx: np.ndarray) -> str:
    """``N row(s): row 3 (row_id=2), ...``."""
    ids = sub["row_id"].astype(str).to_numpy() if "row_id" in sub.columns else None
    shown = (f"row {i + 1}" + (f" (row_id={ids[i]})" if ids is not None else "") for i in idx)
    return f"{len(idx)} row(s): " + _listing(shown)


def _integers(sub: pd.DataFrame, col: str) -> tuple[np.ndarray, np.ndarray]:
    """(values float64 (N,), ok bool (N,)): ok = present, integral and ``|value| <= MAX_INT`` (larger
    values such as ``1e300`` used to be cast to int64 as garbage negative frames)."""
    vals = pd.to_numeric(sub[col], errors="coerce").to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(vals) & (vals == np.round(vals)) & (np.abs(vals) <= MAX_INT)
    return vals, ok


def _check_cells(sub: pd.DataFrame) -> list[str]:
    problems = []
    for col in MABE_COLUMNS:
        if (miss := _missing(sub[col])).any():
            problems.append(f"column '{col}' is empty/NaN in {_rows(sub, np.flatnonzero(miss))}")
    return problems


def _check_numbers(sub: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """row_id unique ints; frames ints >= 0 with start < stop. Returns (problems, rows_ok (N,))."""
    problems, rows_ok = [], np.ones(len(sub), bool)
    vals, ok = _integers(sub, "row_id")
    if (~ok).any():
        problems.append(f"row_id must be an integer: {_rows(sub, np.flatnonzero(~ok))}")
    # Integer row ids compare by value: "1", "+1", "1.0" are one id once typed (comparing the text let
    # them through as unique); the others compare as stripped text.
    dup = np.zeros(len(sub), bool)
    dup[ok] = pd.Series(vals[ok]).duplicated(keep=False).to_numpy()
    dup[~ok] = sub["row_id"].astype(str).str.strip()[~ok].duplicated(keep=False).to_numpy()
    if dup.any():
        problems.append(f"row_id must be unique; duplicated in {_rows(sub, np.flatnonzero(dup))}")
    frames = {}
    for col in ("start_frame", "stop_frame"):
        vals, ok = _integers(sub, col)
        bad = ~ok | (ok & (np.nan_to_num(vals) < 0))
        if bad.any():
            problems.append(f"{col} must be an integer >= 0 (0-based frames, at most 2**53): "
                            f"{_rows(sub, np.flatnonzero(bad))}")
        frames[col], rows_ok = vals, rows_ok & ~bad
    with np.errstate(invalid="ignore"):
        rev = rows_ok & (frames["start_frame"] >= frames["stop_frame"])
    if rev.any():
        problems.append("start_frame must be < stop_frame (stop is exclusive; drop empty intervals): "
                        f"{_rows(sub, np.flatnonzero(rev))}")
    return problems, rows_ok & ~rev


def _check_ids(sub: pd.DataFrame, known_videos: set[str]) -> list[str]:
    problems = []
    vids = ids_as_str(sub["video_id"])
    unknown = ~vids.isin(known_videos).to_numpy()
    if unknown.any():
        problems.append(f"video_id not in the test videos ({_listing(sorted(set(vids[unknown])), 5)}): "
                        f"{_rows(sub, np.flatnonzero(unknown))}")
    for col, pattern, form in (("agent_id", AGENT_PATTERN, "mouseK"), ("target_id", TARGET_PATTERN, "mouseK or self")):
        bad = ~sub[col].astype(str).str.fullmatch(pattern).to_numpy()
        if bad.any():
            problems.append(f"{col} must look like {form} (e.g. {sub[col].astype(str)[bad].iloc[0]!r} does not): "
                            f"{_rows(sub, np.flatnonzero(bad))}")
    return problems


def _allowed(sub: pd.DataFrame, videos: pd.DataFrame) -> np.ndarray:
    """(N,) bool: the row's "agent,target,action" is in its video's behaviors_labeled."""
    allowed = {f"{v}\x1f{a},{t},{b}" for v, bl in zip(ids_as_str(videos["video_id"]), videos["behaviors_labeled"])
               for a, t, b in parse_behaviors_labeled(bl)}
    # stripped like the metric (and _typed) read them: " sniff" is sniff, so it counts and may overlap
    key = (ids_as_str(sub["video_id"]) + "\x1f" + ids_as_str(sub["agent_id"]) + "," + ids_as_str(sub["target_id"])
           + "," + ids_as_str(sub["action"]))
    return key.isin(allowed).to_numpy()


def _check_overlaps(sub: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """Two actions of one (video, agent, target) on one frame, among ``rows`` (well-formed ones)."""
    part = sub.iloc[rows]
    if part.empty:
        return []
    names = part[["video_id", "agent_id", "target_id", "action"]].apply(ids_as_str)  # as the metric compares them
    key, _ = pd.factorize(pd.MultiIndex.from_frame(names))
    start = pd.to_numeric(part["start_frame"]).to_numpy(np.int64)
    stop = pd.to_numeric(part["stop_frame"]).to_numpy(np.int64)
    k, s, e = merge_intervals(key, start, stop)
    first = pd.Series(np.arange(len(key))).groupby(key).first().reindex(k).to_numpy()
    pair, pairs = pd.factorize(pd.MultiIndex.from_frame(names[["video_id", "agent_id", "target_id"]].iloc[first]))
    groups, frames = overlap_starts(pair, s, e)
    if not groups.size:
        return []
    shown = [f"video {pairs[g][0]} {pairs[g][1]}->{pairs[g][2]} at frame {f}" for g, f in zip(groups, frames)]
    return [f"{len(shown)} overlap(s) of two actions for the same video/agent/target (one action per frame "
            f"allowed): {_listing(shown)}"]


def _typed(sub: pd.DataFrame) -> pd.DataFrame:
    out = sub[MABE_COLUMNS].copy()
    for col in ("row_id", "start_frame", "stop_frame"):
        out[col] = pd.to_numeric(out[col]).astype(np.int64)
    vids = pd.to_numeric(out["video_id"], errors="coerce")
    out["video_id"] = vids.astype(np.int64) if vids.notna().all() else ids_as_str(out["video_id"])
    for col in ("agent_id", "target_id", "action"):
        out[col] = out[col].astype(str).str.strip()
    return out


def validate_mabe(submission: CsvLike, videos: pd.DataFrame, *, strict_actions: bool = True) -> pd.DataFrame:
    """Check a MABe submission against the test videos; return the typed frame.

    Args:
        submission: path or DataFrame with ``MABE_COLUMNS``.
        videos: test.csv rows, columns ``video_id`` and ``behaviors_labeled``.
        strict_actions: rows whose action is not labelled for the video are errors (default) or
            are let through (the metric ignores them).
    Raises:
        SubmissionError: listing every problem (``.problems``).
    """
    if missing := [c for c in ("video_id", "behaviors_labeled") if c not in videos.columns]:
        raise ValueError(f"videos lacks column(s) {missing}; pass the test.csv rows")
    sub, name = _load(submission, "submission")
    problems = _check_columns(sub, pd.DataFrame(columns=MABE_COLUMNS))
    if not len(sub):
        problems.append("submission has no rows (the metric rejects an empty submission)")
    if not problems and len(sub):
        problems += _check_cells(sub)
        num_problems, ok = _check_numbers(sub)
        problems += num_problems + _check_ids(sub, set(ids_as_str(videos["video_id"])))
        allowed = _allowed(sub, videos)
        if strict_actions and (~allowed).any():
            problems.append("action not in the video's behaviors_labeled for that agent/target (never scored): "
                            f"{_rows(sub, np.flatnonzero(~allowed))}")
        problems += _check_overlaps(sub, np.flatnonzero(ok & allowed))
    if problems:
        header = f"{name} has {len(problems)} problem(s):"
        raise SubmissionError("\n".join([header] + [f"  - {p}" for p in problems]), problems)
    return _typed(sub)


def write_mabe_submission(df: pd.DataFrame, path: str | os.PathLike, videos: pd.DataFrame, *,
                          overwrite: bool = False, strict_actions: bool = True) -> Path:
    """Validate ``df`` (:func:`validate_mabe`) and write it atomically to ``path``.

    Nothing is written when validation fails or ``path`` exists and ``overwrite`` is False
    (:class:`FileExistsError`).
    """
    typed = validate_mabe(df, videos, strict_actions=strict_actions)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True or choose a new file name")
    return save_csv(path, typed)
