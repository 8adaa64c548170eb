"""SimBA project CSVs -> the MABe-2025 layout (one lab): the same files as
:func:`~kagglekit.tasks.behavior.importer.import_dlc_caltech` writes, plus the engineered features.

SimBA conventions relied on (SimBA, github.com/sgoldenlab/simba):
- One CSV per video, ``project_folder/csv/<stage>/<video>.csv``: ``targets_inserted`` (pose, features,
  the human 0/1 annotations) or ``machine_results`` (the same plus ``Probability_<classifier>`` and the
  thresholded 0/1 ``<classifier>`` column; ``docs/Scenario2.md``, ``plot_threshold`` reads
  ``'Probability_' + behavior``). SimBA writes them with pandas, frame index first in an unnamed
  column, and reads them back with ``read_csv(index_col=0)`` (``simba/utils/data.py`` examples).
- Pose columns ``<BodyPart>_<animal>_{x,y,p}`` such as ``Ear_left_1_x``, ``Nose_2_p``
  (``simba/utils/data.py`` ``animal_bp_dict``: ``Ear_left_1_x``, ``Tail_base_2_y``, ...).
- A body part at (0, 0) is missing: SimBA fills NaN with 0 and its interpolator treats x, y <= 0 as
  missing (``simba/utils/data.py``, ``body_part_interpolator``: "located at (0, 0)").

Conventions of :func:`import_simba` (the rules; each can be overridden by an argument):
- Frame index: a column named ``frame`` / ``Frame``, else the first column when it is unnamed
  (``Unnamed: 0``); increasing, unique, non-negative integers. n_frames = last index + 1.
- Pose column = name ``<part>_<animal>_<x|y|p>``, split off the **last two** ``_`` tokens (so
  ``Ear_left_1_x`` is part ``Ear_left``, animal ``1``); a (part, animal) needs both x and y (p is
  optional and not written). ``animals=`` restricts the suffixes read (default: every suffix with
  x and y); mouse_id 1, 2, ... in that order (default: order of first appearance in the header).
  x and y NaN, or both 0 (``zero_as_missing``), are missing: the row is not written (as DLC's NaN).
- Behaviour columns: ``behaviors=[...]`` names them (a column matches by its name or its name with
  the prefix / suffix removed, an exact name first); without it every integer column holding only 0
  and 1 that is not pose is a behaviour. Behaviour name = the column name with one prefix of
  :data:`BEHAVIOR_PREFIXES` and then one suffix of :data:`BEHAVIOR_SUFFIXES` removed (case-insensitive):
  ``Attack_prediction`` -> ``Attack``. Values must be 0/1; a run of 1s over consecutive frames is one
  bout ``[first, last + 1)``. A float ``Probability_<behaviour>`` column is the classifier's score
  for that label: neither behaviour nor feature.
- Every bout is an action of ``pair = (agent, target)``: default (1, 2), or (1, 1) (``self``) for a
  one-animal file. ``behaviors_labeled`` lists the behaviours of the file.
- Features: every other numeric column, written as ``<out>/<split>_features/<lab>/<video>.parquet``
  (``video_frame`` + float32 columns; :func:`~kagglekit.tasks.behavior.meta.features_path`);
  non-numeric columns are dropped with a warning. The behaviour task reads them with the config flag
  ``extra_features=True`` (appended to each frame's pose features, masked where NaN).
- video_id: ``video_ids={stem: int}``, else the leading integer of the file stem, else its last
  integer (``Together_1.csv`` -> 1); two files with one id are refused.
- Overlaps between behaviours of one pair on one frame (SimBA classifiers are independent):
  ``overlap="priority"`` trims by ``priority`` (default: ``behaviors`` order, else column order),
  ``"keep"`` keeps them; a warning counts the frames (:mod:`kagglekit.tasks.behavior.labels`). Then
  ``sample_submission.csv`` and the oracle check, as for every importer.
- A file in another format (a DLC CSV, a broken header) is refused with one line naming the file and
  the expected format (:data:`SIMBA_FORMAT`).
"""
from __future__ import annotations

import gzip
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from kagglekit.tasks.behavior.importer import (
    MAX_FRAME, short_text, append_meta, check_overlap_policy, meta_row, write_video_files,
)
from kagglekit.tasks.behavior.labels import OverlapPolicy, finish_import, resolve_overlaps
from kagglekit.tasks.behavior.meta import ANNOTATION_COLUMNS, META_COLUMNS, BehaviorDataError

log = logging.getLogger("kagglekit.behavior")

SIMBA_FORMAT = "SimBA CSV (frame index, <part>_<animal>_x/_y/_p pose columns e.g. Nose_1_x, 0/1 behaviour columns)"
FRAME_COLUMNS = ("frame", "Frame")
BEHAVIOR_PREFIXES = ("Probability_", "Prediction_")
BEHAVIOR_SUFFIXES = ("_prediction", "_predictions", "_predicted", "_pred")
_POSE = re.compile(r"^(?P<part>.+)_(?P<animal>[^_]+)_(?P<coord>[xyp])$")
_INTS = re.compile(r"\d+")


def behavior_name(column: str) -> str:
    """Behaviour name of a 0/1 column: one prefix, then one suffix removed (case-insensitive)."""
    name = str(column)
    for prefix in BEHAVIOR_PREFIXES:
        if name.lower().startswith(prefix.lower()) and len(name) > len(prefix):
            name = name[len(prefix):]
            break
    for suffix in BEHAVIOR_SUFFIXES:
        if name.lower().endswith(suffix.lower()) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return name


@dataclass
class SimbaVideo:
    """One SimBA CSV, read: ``tracking`` long (video_frame, mouse_id, bodypart, x, y), ``labels``
    {behaviour: (N,) bool per row}, ``frames`` (N,) int64 frame index per row, ``features``
    (video_frame + float32 columns; no column but video_frame when the file has none)."""

    path: Path
    tracking: pd.DataFrame
    n_frames: int
    parts: list[str]
    n_animals: int
    frames: np.ndarray
    labels: dict[str, np.ndarray]
    features: pd.DataFrame


def _fail(path: Path, reason: str) -> BehaviorDataError:
    """The one-line refusal: the file, the expected format, what is wrong."""
    return BehaviorDataError(f"{path}: not a {SIMBA_FORMAT}: {reason}")


def _read_table(path: Path) -> pd.DataFrame:
    """The CSV with its header row; unreadable files and DLC files refused in one line."""
    try:
        table = pd.read_csv(path, low_memory=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _fail(path, f"{type(exc).__name__}: {short_text(exc, 60)}") from None
    first = str(table.columns[0]).strip() if table.shape[1] else ""
    if first == "scorer":
        raise BehaviorDataError(f"{path}: a DeepLabCut CSV, not a {SIMBA_FORMAT}; use import_dlc_caltech")
    return table


def _frame_index(table: pd.DataFrame, path: Path) -> tuple[np.ndarray, str]:
    """(frame index (N,) int64, its column name)."""
    name = next((c for c in table.columns if c in FRAME_COLUMNS), None)
    if name is None and table.shape[1] and str(table.columns[0]).startswith("Unnamed: 0"):
        name = table.columns[0]
    if name is None:
        first = table.columns[0] if table.shape[1] else ""
        raise _fail(path, f"first column {short_text(first)!r} is not a frame index (unnamed, or named frame)")
    index = pd.to_numeric(table[name], errors="coerce").to_numpy(np.float64)
    if not np.isfinite(index).all() or (index < 0).any() or (index > MAX_FRAME).any() or \
            (index != np.round(index)).any() or (np.diff(index) <= 0).any():
        raise _fail(path, f"column {short_text(name)!r} must hold increasing, unique, non-negative integer frames")
    return index.astype(np.int64), str(name)


def _pose_columns(columns: Sequence[str], animals: Sequence[str] | None) -> dict[tuple[str, str], dict[str, str]]:
    """{(part, animal): {coord: column}} for the (part, animal)s that have x and y, header order."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for col in columns:
        match = _POSE.match(str(col))
        if match and (animals is None or match["animal"] in animals):
            found.setdefault((match["part"], match["animal"]), {})[match["coord"]] = str(col)
    return {k: v for k, v in found.items() if {"x", "y"} <= set(v)}


def _is_binary(values: pd.Series) -> bool:
    """An integer (or bool) column holding only 0 and 1: a behaviour candidate."""
    return (pd.api.types.is_integer_dtype(values) or pd.api.types.is_bool_dtype(values)) and \
        bool(values.isin([0, 1]).all())


def _match_behavior(table: pd.DataFrame, wanted: str, free: Sequence[str], path: Path) -> str:
    """The column holding behaviour ``wanted``: its exact name first, else one whose name minus
    prefix/suffix is ``wanted`` and that holds 0/1."""
    if wanted in free:
        return wanted
    hits = [c for c in free if behavior_name(c) == wanted and _is_binary(table[c])]
    if len(hits) != 1:
        what = "no column" if not hits else f"columns {hits[:3]}"
        raise _fail(path, f"{what} for behaviour {wanted!r} (a 0/1 column named {wanted!r}, "
                          f"{wanted + '_prediction'!r}, ...)")
    return hits[0]


def _behavior_columns(table: pd.DataFrame, free: Sequence[str], behaviors: Sequence[str] | None,
                      path: Path) -> dict[str, str]:
    """{behaviour name: column} (module docstring, "Behaviour columns"); values checked 0/1."""
    if behaviors is None:
        found = {c: behavior_name(c) for c in free if _is_binary(table[c])}
    else:
        found = {_match_behavior(table, b, free, path): b for b in behaviors}
        if len(found) != len(set(behaviors)):
            raise _fail(path, f"two of the behaviours {list(behaviors)} match one column; name them exactly")
    names = list(found.values())
    if dup := sorted({n for n in names if names.count(n) > 1}):
        raise _fail(path, f"several columns name behaviour {dup[0]!r}; pass behaviors= or rename one")
    for col, name in found.items():
        values = pd.to_numeric(table[col], errors="coerce")
        bad = ~values.isin([0, 1]).to_numpy()
        if bad.any():
            raise _fail(path, f"behaviour column {short_text(col)!r} row {int(np.flatnonzero(bad)[0])} is "
                              f"{short_text(table[col].iloc[int(np.flatnonzero(bad)[0])])!r}, not 0 or 1")
        if "," in name or not name.strip():
            raise _fail(path, f"behaviour name {name!r} must be non-empty and without commas (MABe action)")
    return {name: col for col, name in found.items()}


def _tracking(table: pd.DataFrame, frames: np.ndarray, pose: dict[tuple[str, str], dict[str, str]],
              zero_as_missing: bool) -> tuple[pd.DataFrame, list[str], int]:
    """Long tracking (TRACKING_COLUMNS, sorted by frame, mouse, body part in header order), body parts,
    number of animals."""
    animals = list(dict.fromkeys(a for _, a in pose))
    parts = list(dict.fromkeys(p for p, _ in pose))
    pieces = []
    for mouse_id, animal in enumerate(animals, start=1):
        for part in parts:
            if (part, animal) in pose:
                cols = pose[(part, animal)]
                x = pd.to_numeric(table[cols["x"]], errors="coerce").to_numpy(np.float32)
                y = pd.to_numeric(table[cols["y"]], errors="coerce").to_numpy(np.float32)
                keep = np.isfinite(x) & np.isfinite(y) & ~(zero_as_missing & (x == 0) & (y == 0))
                pieces.append(pd.DataFrame({"video_frame": frames[keep], "mouse_id": mouse_id, "bodypart": part,
                                            "x": x[keep], "y": y[keep]}))
    long = pd.concat(pieces, ignore_index=True).astype({"video_frame": "int64", "mouse_id": "int64"})
    order = np.lexsort((long["bodypart"].map({p: i for i, p in enumerate(parts)}).to_numpy(),
                        long["mouse_id"].to_numpy(), long["video_frame"].to_numpy()))
    return long.iloc[order].reset_index(drop=True), parts, len(animals)


def _features(table: pd.DataFrame, frames: np.ndarray, columns: Sequence[str], path: Path) -> pd.DataFrame:
    """``video_frame`` + the numeric ``columns`` as float32 (non-numeric ones dropped, warned)."""
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c])]
    if dropped := [c for c in columns if c not in numeric]:
        log.warning("%s: %d non-numeric column(s) are not features (e.g. %s)", path, len(dropped), dropped[:3])
    out = table[numeric].astype(np.float32).reset_index(drop=True)
    out.columns = [str(c) for c in out.columns]
    out.insert(0, "video_frame", frames)
    return out


def read_simba_csv(path: str | Path, behaviors: Sequence[str] | None = None, animals: Sequence[str] | None = None,
                   zero_as_missing: bool = True) -> SimbaVideo:
    """Read one SimBA project CSV (conventions: module docstring). Raises :class:`BehaviorDataError`
    with one line naming the file and :data:`SIMBA_FORMAT` for a file in another format."""
    path = Path(path)
    table = _read_table(path)
    frames, frame_col = _frame_index(table, path)
    pose = _pose_columns([str(c) for c in table.columns], animals)
    if not pose:
        raise _fail(path, "no pose column pair <bodypart>_<animal>_x / _y found")
    pose_cols = {c for cols in pose.values() for c in cols.values()}
    free = [str(c) for c in table.columns if c != frame_col and c not in pose_cols]
    label_cols = _behavior_columns(table, free, behaviors, path)
    scores = {c for c in free if c.lower().startswith("probability_") and behavior_name(c) in label_cols}
    feature_cols = [c for c in free if c not in label_cols.values() and c not in scores]
    tracking, parts, n_animals = _tracking(table, frames, pose, zero_as_missing)
    labels = {b: pd.to_numeric(table[c]).to_numpy() == 1 for b, c in label_cols.items()}
    return SimbaVideo(path, tracking, int(frames.max()) + 1 if frames.size else 0, parts, n_animals, frames,
                      labels, _features(table, frames, feature_cols, path))


def labels_to_annotation(frames: np.ndarray, labels: Mapping[str, np.ndarray], agent: int, target: int) -> pd.DataFrame:
    """Per-row 0/1 labels -> annotation rows (ANNOTATION_COLUMNS): each run of 1s over consecutive
    frame indices is one bout ``[first, last + 1)``; a gap in the index ends a run."""
    rows = []
    for action, on in labels.items():
        hit = frames[np.asarray(on, bool)]
        if not hit.size:
            continue
        breaks = np.flatnonzero(np.diff(hit) != 1) + 1
        starts, stops = hit[np.r_[0, breaks]], hit[np.r_[breaks - 1, hit.size - 1]] + 1
        rows += [(agent, target, action, int(s), int(e)) for s, e in zip(starts, stops)]
    out = pd.DataFrame(rows, columns=list(ANNOTATION_COLUMNS)).astype(
        {"agent_id": "int64", "target_id": "int64", "start_frame": "int64", "stop_frame": "int64"})
    return out.sort_values(["start_frame", "action"], kind="stable").reset_index(drop=True)


def simba_video_id(path: str | Path, video_ids: Mapping[str, int] | None = None) -> int:
    """``video_ids[stem]``, else the stem's leading integer, else its last integer (``Together_1`` -> 1)."""
    stem = re.sub(r"\.csv(\.gz)?$", "", Path(path).name)
    if video_ids is not None and stem in video_ids:
        return int(video_ids[stem])
    numbers = _INTS.findall(stem)
    if not numbers:
        raise BehaviorDataError(f"{path}: no integer in the file name for the MABe video_id; pass "
                                f"video_ids={{{stem!r}: <int>}}")
    return int(numbers[0]) if stem[0].isdigit() else int(numbers[-1])


def _video_ids(csv_files: Sequence[Path], video_ids: Mapping[str, int] | None) -> list[tuple[int, Path]]:
    """(video_id, file) sorted by id; two files with one id are refused."""
    ids = [(simba_video_id(p, video_ids), Path(p)) for p in csv_files]
    seen: dict[int, Path] = {}
    for vid, path in ids:
        if vid in seen:
            raise BehaviorDataError(f"{seen[vid].name} and {path.name} both map to video_id {vid}; pass video_ids=")
        seen[vid] = path
    return sorted(ids)


def _pair(pair: tuple[int, int] | None, n_animals: int, path: Path) -> tuple[int, int]:
    """(agent, target) of every bout: ``pair``, else (1, 2), or (1, 1) for one animal."""
    agent, target = pair if pair is not None else ((1, 2) if n_animals >= 2 else (1, 1))
    if not (1 <= agent <= n_animals and 1 <= target <= n_animals):
        raise BehaviorDataError(f"{path}: pair {(agent, target)} names an animal outside 1..{n_animals}")
    return agent, target


def import_simba(csv_files: Sequence[Path], out_root: Path, lab_id: str, *, fps: float, pix_per_cm: float,
                 arena_cm: tuple[float, float], split: str = "train", behaviors: Sequence[str] | None = None,
                 video_ids: Mapping[str, int] | None = None, animals: Sequence[str] | None = None,
                 pair: tuple[int, int] | None = None, overlap: OverlapPolicy = "priority",
                 priority: Sequence[str] | None = None, zero_as_missing: bool = True,
                 extra_meta: dict[str, Any] | None = None, check: bool = True) -> pd.DataFrame:
    """Import SimBA project CSVs (one per video) as lab ``lab_id`` (conventions: module docstring):
    tracking + annotation (+ features) parquets, ``<split>.csv`` rows, ``sample_submission.csv`` and
    the oracle check. fps, pixels per cm and the arena (width, height) cm are not in the files.
    Returns the metadata rows written (one per video, META_COLUMNS)."""
    check_overlap_policy(overlap)
    out_root = Path(out_root)
    rows = []
    for video_id, path in _video_ids(csv_files, video_ids):
        video = read_simba_csv(path, behaviors, animals, zero_as_missing)
        agent, target = _pair(pair, video.n_animals, path)
        order = list(priority) if priority is not None else list(video.labels)
        ann, _ = resolve_overlaps(labels_to_annotation(video.frames, video.labels, agent, target), order, overlap,
                                  where=f"{path.name} (lab {lab_id}, video {video_id})")
        features = video.features if video.features.shape[1] > 1 else None
        write_video_files(out_root, split, lab_id, video_id, video.tracking, ann, features)
        who = f"mouse{agent},{'self' if target == agent else f'mouse{target}'}"
        rows.append(meta_row(lab_id, video_id, video.n_animals, video.n_frames, video.parts,
                             [f"{who},{b}" for b in video.labels], fps, pix_per_cm, arena_cm,
                             {"tracking_method": "SimBA", **(extra_meta or {})}))
    append_meta(out_root / f"{split}.csv", rows)
    finish_import(out_root, split, lab_id, [r["video_id"] for r in rows], overlap, check)
    return pd.DataFrame(rows, columns=list(META_COLUMNS))
