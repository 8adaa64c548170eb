"""Imported labels as the competition sees them: overlap policy, answer key, sample submission,
oracle check, and scoring a MABe submission file against an answer key.

Every importer (:mod:`~kagglekit.tasks.behavior.importer`, :mod:`~kagglekit.tasks.behavior.simba`)
ends with :func:`finish_import`.

Overlap policy (``overlap=``):
- The MABe metric refuses a submission with two actions for one (video, agent, target) on one
  frame (``metrics/mabe.py``: "two actions predicted on frame ..."), so labels from independent
  streams (Caltech ``S1`` / ``S2``, SimBA's one-classifier-per-behaviour columns) that overlap can
  never be reproduced by a valid submission: the answer key itself would be refused.
- ``"priority"`` (default): per (agent, target), actions are taken in ``priority`` order (highest
  first; actions not listed follow in name order) and each keeps only the frames no higher-priority
  action holds (lower-priority bouts are trimmed, split or dropped). ``"keep"``: written as read.
- Either way one ``log.warning`` per video counts the frames where two or more actions of a pair
  coincide, per pair (``mouse1->mouse2: 1,234 frame(s)``).

Oracle check (:func:`oracle_check`): the imported labels, written as a submission with
:func:`~kagglekit.submission.mabe.write_mabe_submission` (so they must validate), scored with
:func:`~kagglekit.metrics.mabe.mabe_score` against the answer key built from the same layout;
anything but 1.0 is an importer bug or a label set no submission can reproduce. :func:`finish_import`
raises :class:`BehaviorDataError` then, except under ``overlap="keep"``, where the overlaps were
kept on purpose and the failure is logged as a warning.

Sample submission (:func:`write_sample_submission`): ``<root>/sample_submission.csv`` with the
competition's columns and one placeholder row per video (its first ``behaviors_labeled`` entry on
frame 0), for the videos of ``test.csv`` when the folder has one, else of the imported split.
"""
from __future__ import annotations

import logging
import math
import tempfile
from bisect import bisect_right
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from kagglekit.io import save_csv
from kagglekit.metrics.mabe import SOLUTION_COLUMNS, mabe_breakdown, mabe_score, merge_intervals
from kagglekit.submission.mabe import MABE_COLUMNS, validate_mabe, write_mabe_submission
from kagglekit.submission.rle import SubmissionError
from kagglekit.tasks.behavior import meta as M

log = logging.getLogger("kagglekit.behavior")

OverlapPolicy = Literal["priority", "keep"]
OVERLAP_POLICIES: tuple[str, ...] = ("priority", "keep")


# ---- overlap policy ---------------------------------------------------------------------------
def _merged_by_action(bouts: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One pair's bouts -> {action: (starts, stops)} disjoint, sorted (same-action bouts merged)."""
    codes, actions = pd.factorize(bouts["action"], sort=True)
    g, s, e = merge_intervals(codes, bouts["start_frame"].to_numpy(np.int64), bouts["stop_frame"].to_numpy(np.int64))
    return {str(a): (s[g == i], e[g == i]) for i, a in enumerate(actions)}


def _depth2_frames(runs: dict[str, tuple[np.ndarray, np.ndarray]]) -> int:
    """Number of frames covered by two or more of the (per action disjoint) runs."""
    starts = np.concatenate([s for s, _ in runs.values()])
    stops = np.concatenate([e for _, e in runs.values()])
    pos = np.concatenate([starts, stops])
    delta = np.concatenate([np.ones(starts.size, np.int64), -np.ones(stops.size, np.int64)])
    order = np.lexsort((delta, pos))  # at one frame, an interval's end comes before the next start
    pos, depth = pos[order], np.cumsum(delta[order])
    return int(np.diff(pos)[depth[:-1] >= 2].sum()) if pos.size else 0


def _subtract(starts: np.ndarray, stops: np.ndarray, held_s: list[int], held_e: list[int]) -> list[tuple[int, int]]:
    """[starts, stops) minus the disjoint sorted intervals [held_s, held_e)."""
    out = []
    for s, e in zip(starts.tolist(), stops.tolist()):
        i, cur = bisect_right(held_e, s), s
        while i < len(held_s) and held_s[i] < e:
            if held_s[i] > cur:
                out.append((cur, held_s[i]))
            cur, i = max(cur, held_e[i]), i + 1
        if cur < e:
            out.append((cur, e))
    return out


def _trim_pair(runs: dict[str, tuple[np.ndarray, np.ndarray]], priority: Sequence[str]) -> list[tuple[str, int, int]]:
    """Each action keeps the frames no higher-priority action holds -> [(action, start, stop)]."""
    rank = {a: i for i, a in enumerate(priority)}
    order = sorted(runs, key=lambda a: (rank.get(a, len(rank)), a))
    held_s: list[int] = []
    held_e: list[int] = []
    out = []
    for action in order:
        starts, stops = runs[action]
        out += [(action, s, e) for s, e in _subtract(starts, stops, held_s, held_e)]
        _, hs, he = merge_intervals(np.zeros(len(held_s) + starts.size, np.int64),
                                    np.concatenate([np.asarray(held_s, np.int64), starts]),
                                    np.concatenate([np.asarray(held_e, np.int64), stops]))
        held_s, held_e = hs.tolist(), he.tolist()
    return out


def resolve_overlaps(ann: pd.DataFrame, priority: Sequence[str], policy: OverlapPolicy = "priority",
                     where: str = "") -> tuple[pd.DataFrame, dict[tuple[int, int], int]]:
    """Apply the overlap policy (module docstring) to one video's annotation rows.

    Args:
        ann: ANNOTATION_COLUMNS rows (agent_id, target_id, action, start_frame, stop_frame excl.).
        priority: action names, highest priority first (``"priority"`` policy).
        policy: ``"priority"`` trims lower-priority bouts; ``"keep"`` returns ``ann`` unchanged.
        where: names the video in the warning (e.g. ``"lab L video 3"``).
    Returns:
        (annotation rows, {(agent_id, target_id): frames with two or more actions}) — pairs without
        overlap are absent; their rows are returned unchanged.
    """
    if policy not in OVERLAP_POLICIES:
        raise ValueError(f"overlap={policy!r}; use one of {list(OVERLAP_POLICIES)}")
    counts: dict[tuple[int, int], int] = {}
    pieces = []
    for (agent, target), bouts in ann.groupby(["agent_id", "target_id"], sort=True):
        runs = _merged_by_action(bouts)
        frames = _depth2_frames(runs) if len(runs) > 1 else 0
        if frames:
            counts[(int(agent), int(target))] = frames
        if frames == 0 or policy == "keep":
            pieces.append(bouts)
            continue
        pieces.append(pd.DataFrame([(agent, target, a, s, e) for a, s, e in _trim_pair(runs, priority)],
                                   columns=list(M.ANNOTATION_COLUMNS)))
    if counts:
        pairs = ", ".join(f"mouse{a}->mouse{t}: {n:,} frame(s)" for (a, t), n in counts.items())
        what = (f"trimmed lower-priority bouts (priority {list(priority)})" if policy == "priority" else
                "kept (overlap='keep'): no valid submission can reproduce these labels")
        log.warning("%s: %s frame(s) with two or more actions of one agent/target (%s); %s",
                    where or "annotation", f"{sum(counts.values()):,}", pairs, what)
    out = pd.concat(pieces, ignore_index=True) if pieces else ann.iloc[:0]
    out = out.astype({c: "int64" for c in ("agent_id", "target_id", "start_frame", "stop_frame")})
    return out.sort_values(["start_frame", "action"], kind="stable").reset_index(drop=True)[
        list(M.ANNOTATION_COLUMNS)], counts


# ---- answer key, sample submission, oracle ----------------------------------------------------
def mouse_names(agent: int, target: int) -> tuple[str, str]:
    """(1, 2) -> ("mouse1", "mouse2"); (2, 2) -> ("mouse2", "self")."""
    return f"mouse{agent}", "self" if target == agent else f"mouse{target}"


def layout_solution(root: str | Path, split: str = "train", video_ids: Sequence[int | str] | None = None,
                    lab_id: str | None = None) -> pd.DataFrame:
    """The MABe answer key (``SOLUTION_COLUMNS``) of a layout folder's ``<split>.csv`` videos
    (optionally only ``video_ids`` / ``lab_id``), from their ``<split>_annotation`` parquets.
    Videos with an empty ``behaviors_labeled`` and no annotation file are skipped."""
    meta = M.load_metadata(Path(root) / f"{split}.csv")
    if video_ids is not None:
        meta = meta[meta["video_id"].astype(str).isin({str(v) for v in video_ids})]
    if lab_id is not None:
        meta = meta[meta["lab_id"].astype(str) == str(lab_id)]
    frames = []
    for row in meta.itertuples():
        path = M.annotation_path(root, row.lab_id, row.video_id, split)
        if not row.behaviors and not path.exists():
            continue
        ann = M.read_annotation(path)
        names = [mouse_names(int(a), int(t)) for a, t in zip(ann["agent_id"], ann["target_id"])]
        frames.append(pd.DataFrame({
            "video_id": int(row.video_id), "agent_id": [n[0] for n in names], "target_id": [n[1] for n in names],
            "action": ann["action"].to_numpy(), "start_frame": ann["start_frame"].to_numpy(np.int64),
            "stop_frame": ann["stop_frame"].to_numpy(np.int64), "lab_id": str(row.lab_id),
            "behaviors_labeled": row.behaviors_labeled}))
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True)[SOLUTION_COLUMNS] if frames else pd.DataFrame(columns=SOLUTION_COLUMNS)


def labels_as_submission(solution: pd.DataFrame) -> pd.DataFrame:
    """Answer-key rows -> a submission frame (``MABE_COLUMNS``, row_id 0..n-1)."""
    sub = solution[MABE_COLUMNS[1:]].reset_index(drop=True).copy()
    sub.insert(0, "row_id", np.arange(len(sub), dtype=np.int64))
    return sub


def write_sample_submission(root: str | Path, split: str = "train") -> Path:
    """``<root>/sample_submission.csv`` (module docstring): one placeholder row per video of
    ``test.csv`` when present, else of ``<split>.csv``; validated before it is written."""
    root = Path(root)
    source = root / "test.csv" if (root / "test.csv").is_file() else root / f"{split}.csv"
    meta = M.load_metadata(source)
    rows = [(int(r.video_id), *r.behaviors[0], 0, 1) for r in meta.itertuples() if r.behaviors]
    sample = pd.DataFrame(rows, columns=MABE_COLUMNS[1:])
    sample.insert(0, "row_id", np.arange(len(sample), dtype=np.int64))
    if sample.empty:  # the validator refuses an empty file: the header alone shows the format
        return save_csv(root / "sample_submission.csv", sample)
    return write_mabe_submission(sample, root / "sample_submission.csv", meta, overwrite=True)


def oracle_check(root: str | Path, split: str = "train", *, lab_id: str | None = None,
                 video_ids: Sequence[int | str] | None = None) -> float:
    """Score of the imported labels submitted as predictions (module docstring): written with
    :func:`write_mabe_submission` (validated: ``SubmissionError`` when no valid submission can hold
    them), read back, :func:`mabe_score` against :func:`layout_solution`. 1.0 when the layout is
    consistent; NaN when the videos have no label rows (nothing to score)."""
    solution = layout_solution(root, split, video_ids, lab_id)
    if solution.empty:
        log.info("%s: %s videos have no label rows; oracle check skipped", root, split)
        return math.nan
    videos = solution.drop_duplicates("video_id")[["video_id", "behaviors_labeled"]]
    with tempfile.TemporaryDirectory() as tmp:
        path = write_mabe_submission(labels_as_submission(solution), Path(tmp) / "oracle.csv", videos)
        submission = pd.read_csv(path)
    return mabe_score(solution, submission)


def finish_import(root: Path, split: str, lab_id: str, video_ids: Sequence[int], overlap: OverlapPolicy,
                  check: bool = True) -> float:
    """Every importer's epilogue: ``sample_submission.csv``, then (``check``) :func:`oracle_check`
    of the videos just imported. Not 1.0 -> :class:`BehaviorDataError`, or a warning under
    ``overlap="keep"``. Returns the oracle score (NaN: unchecked or nothing to score)."""
    write_sample_submission(root, split)
    if not check:
        return math.nan
    try:
        score, problem = oracle_check(root, split, lab_id=lab_id, video_ids=video_ids), ""
    except SubmissionError as exc:
        score, problem = math.nan, (exc.problems or [str(exc)])[0][:160]
    except ValueError as exc:  # the metric's own refusal (e.g. two actions on one frame)
        score, problem = math.nan, str(exc)[:160]
    if not problem and (math.isnan(score) or score == 1.0):
        log.info("%s: oracle check of lab %s (%d %s videos): %s", root, lab_id, len(video_ids), split,
                 "nothing to score" if math.isnan(score) else "MABe score 1.0")
        return score
    text = (f"{root}: oracle check of lab {lab_id}: the imported labels as a submission "
            + (f"are refused ({problem})" if problem else f"score {score:.6f}, not 1.0"))
    if overlap == "keep":
        log.warning("%s; expected with overlap='keep' (use overlap='priority')", text)
        return score
    raise M.BehaviorDataError(text + "; the import is inconsistent (report it with the files)")


# ---- scoring a submission file against an answer key -------------------------------------------
def _submission_videos(path: Path) -> set[str] | None:
    """The submission's video ids as text (None when the file cannot be read: the validator says why)."""
    try:
        return set(pd.read_csv(path, usecols=["video_id"], dtype=str)["video_id"].str.strip())
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def read_answer_key(solution: Path, covered: set[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(answer key rows, videos (video_id, behaviors_labeled) a submission may name).

    ``solution``: a MABe solution CSV (``SOLUTION_COLUMNS``), or a layout folder (``train.csv`` +
    ``train_annotation/``; ``test.csv`` + ``test_annotation/`` when it has no train.csv), whose key
    is built for the videos in ``covered`` (all when None)."""
    solution = Path(solution)
    if solution.is_dir():
        split = "train" if (solution / "train.csv").is_file() else "test"
        videos = M.load_metadata(solution / f"{split}.csv")[["video_id", "behaviors_labeled"]]
        ids = None if covered is None else [v for v in videos["video_id"].astype(str) if v in covered]
        return layout_solution(solution, split, ids), videos
    key = pd.read_csv(solution, dtype={"lab_id": str})
    if missing := [c for c in SOLUTION_COLUMNS if c not in key.columns]:
        raise ValueError(f"{solution}: missing column(s) {missing}; a MABe solution CSV has {SOLUTION_COLUMNS}"
                         " (or pass a data folder with train.csv + train_annotation/)")
    return key, key.drop_duplicates("video_id")[["video_id", "behaviors_labeled"]]


def score_mabe_file(path: Path, solution: Path, metric_name: str) -> dict[str, object]:
    """Validate submission ``path`` (``SubmissionError`` listing every problem) and score it with
    the official metric against :func:`read_answer_key` (a folder: the videos the file names).
    Returns ``{metric_name: score, "per_lab": {lab: mean F1}, "per_action": [...], "videos": n}``."""
    key, videos = read_answer_key(Path(solution), _submission_videos(Path(path)))
    typed = validate_mabe(Path(path), videos)
    if key.empty:
        raise ValueError(f"{solution}: no label rows for the videos of {path}; nothing to score")
    breakdown = mabe_breakdown(key, typed)
    return {metric_name: mabe_score(key, typed), "per_lab": breakdown.groupby("lab_id")["f1"].mean().to_dict(),
            "per_action": breakdown.to_dict(orient="records"), "videos": int(key["video_id"].nunique())}
