"""MABe-2025 layout: metadata CSVs, tracking / annotation parquets, dense per-frame arrays.

Layout (Kaggle "MABe Challenge - Social Action Recognition in Mice", 2025; column facts from
``shared/data/mabe2025_meta/README.md``)::

    <root>/train.csv, test.csv, sample_submission.csv         38 metadata columns (META_COLUMNS)
    <root>/{train,test}_tracking/<lab_id>/<video_id>.parquet   video_frame, mouse_id, bodypart, x, y
    <root>/train_annotation/<lab_id>/<video_id>.parquet        agent_id, target_id, action,
                                                               start_frame (0-based), stop_frame (excl.)
    <root>/{train,test}_features/<lab_id>/<video_id>.parquet   optional (importers): video_frame + features

Quirks handled here:
- ``behaviors_labeled`` is a JSON list of ``"agent,target,action"``; the labs ReflectiveManatee and
  DeliriousFly carry stray single quotes (``"'mouse1','mouse2','sniff'"``): quotes are stripped and the
  duplicates this creates are removed (first occurrence kept). Empty / NaN lists (15 SparklingTapir
  videos) parse to ``[]`` and mean "nothing annotated".
- ``target`` is ``"self"`` for solo actions; in annotation parquets that is ``target_id == agent_id``.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd


class BehaviorDataError(ValueError):
    """Malformed behaviour data; the message names the file/line/column and how to fix it."""


MOUSE_FIELDS = ("strain", "color", "sex", "id", "age", "condition")
META_COLUMNS: tuple[str, ...] = (
    "lab_id", "video_id",
    *(f"mouse{k}_{f}" for k in range(1, 5) for f in MOUSE_FIELDS),
    "frames_per_second", "video_duration_sec", "pix_per_cm_approx", "video_width_pix",
    "video_height_pix", "arena_width_cm", "arena_height_cm", "arena_shape", "arena_type",
    "body_parts_tracked", "behaviors_labeled", "tracking_method",
)  # the order of the real train.csv header
REQUIRED_META = ("lab_id", "video_id", "frames_per_second", "body_parts_tracked", "behaviors_labeled")
TRACKING_COLUMNS = ("video_frame", "mouse_id", "bodypart", "x", "y")
ANNOTATION_COLUMNS = ("agent_id", "target_id", "action", "start_frame", "stop_frame")
_MOUSE_RE = re.compile(r"^mouse(\d+)$")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (
        isinstance(value, str) and value.strip() == "")


def _json_list(value: Any, what: str) -> list[Any]:
    if _is_missing(value):
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    try:
        parsed = json.loads(value)
    except (TypeError, json.JSONDecodeError) as exc:
        raise BehaviorDataError(f"{what}: not a JSON list ({exc}): {str(value)[:80]!r}; "
                                'write it as ["a", "b"]') from None
    if not isinstance(parsed, list):
        raise BehaviorDataError(f"{what}: expected a JSON list, got {type(parsed).__name__}")
    return parsed


def parse_body_parts(value: Any) -> list[str]:
    """``'["nose", "neck"]'`` -> ``["nose", "neck"]``; NaN/empty -> ``[]``."""
    parts = _json_list(value, "body_parts_tracked")
    out = [str(p).strip().strip("'\"") for p in parts]
    if any(not p for p in out):
        raise BehaviorDataError(f"body_parts_tracked: empty body-part name in {value!r}")
    return list(dict.fromkeys(out))


def parse_behaviors(value: Any) -> list[tuple[str, str, str]]:
    """``'["mouse1,mouse2,sniff", "mouse1,self,rear"]'`` -> ``[("mouse1","mouse2","sniff"), ...]``.

    Stray single quotes are stripped (ReflectiveManatee / DeliriousFly quirk) and duplicates removed.
    """
    out: dict[tuple[str, str, str], None] = {}
    for item in _json_list(value, "behaviors_labeled"):
        fields = [f.strip() for f in str(item).replace("'", "").split(",")]
        if len(fields) != 3 or not all(fields):
            raise BehaviorDataError(f"behaviors_labeled: entry {item!r} is not 'agent,target,action'")
        agent, target, action = fields
        if not _MOUSE_RE.match(agent) or not (target == "self" or _MOUSE_RE.match(target)):
            raise BehaviorDataError(f"behaviors_labeled: entry {item!r}: agent must be mouseK and "
                                    "target mouseK or self")
        out[(agent, target, action)] = None
    return list(out)


def mouse_number(name: str) -> int:
    """``"mouse3"`` -> 3."""
    match = _MOUSE_RE.match(name)
    if not match:
        raise BehaviorDataError(f"{name!r} is not a mouse name like 'mouse1'")
    return int(match.group(1))


def behavior_keys(behaviors: Sequence[tuple[str, str, str]]) -> list[tuple[int, int, str]]:
    """``("mouse1","self","rear")`` -> ``(1, 1, "rear")``: the (agent_id, target_id, action) keys of
    annotation parquets (``self`` means target_id == agent_id)."""
    keys = []
    for agent, target, action in behaviors:
        a = mouse_number(agent)
        keys.append((a, a if target == "self" else mouse_number(target), action))
    return keys


def _n_mice(row: pd.Series, behaviors: list[tuple[str, str, str]]) -> int:
    present = [k for k in range(1, 5)
               if any(not _is_missing(row.get(f"mouse{k}_{f}")) for f in MOUSE_FIELDS)]
    mentioned = [k for b in behavior_keys(behaviors) for k in b[:2]]
    return max(present + mentioned + [0])


def _check_meta_columns(frame: pd.DataFrame, path: Path) -> None:
    missing = [c for c in REQUIRED_META if c not in frame.columns]
    if missing:
        raise BehaviorDataError(f"{path}: missing column(s) {missing}; the header must contain "
                                f"{list(REQUIRED_META)} (MABe train.csv layout)")
    ids = pd.to_numeric(frame["video_id"], errors="coerce")
    bad = ids.isna() | (ids != ids.round())
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise BehaviorDataError(f"{path}: line {i + 2}, column video_id: {frame['video_id'].iloc[i]!r}"
                                " is not an integer; video ids must be integers")
    dup = ids.duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise BehaviorDataError(f"{path}: line {i + 2}, column video_id: {int(ids.iloc[i])} appears "
                                "twice; video ids must be unique")


def load_metadata(path: str | Path) -> pd.DataFrame:
    """Read a MABe ``train.csv`` / ``test.csv``: one row per video, ``video_id`` as int64, plus parsed
    columns ``body_parts`` (list[str]), ``behaviors`` (list[(agent, target, action)]), ``n_mice`` (int)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: metadata CSV not found")
    frame = pd.read_csv(path, dtype={"lab_id": str})
    _check_meta_columns(frame, path)
    frame["video_id"] = pd.to_numeric(frame["video_id"]).astype("int64")
    parsed: dict[str, list[Any]] = {"body_parts": [], "behaviors": [], "n_mice": []}
    for i, row in enumerate(frame.itertuples(index=False)):
        col = "body_parts_tracked"
        try:
            parsed["body_parts"].append(parse_body_parts(row.body_parts_tracked))
            col = "behaviors_labeled"
            parsed["behaviors"].append(parse_behaviors(row.behaviors_labeled))
        except BehaviorDataError as exc:
            raise BehaviorDataError(f"{path}: line {i + 2}, column {col}: {exc}") from None
        parsed["n_mice"].append(_n_mice(frame.iloc[i], parsed["behaviors"][-1]))
    for name, values in parsed.items():
        frame[name] = pd.Series(values, index=frame.index, dtype=object if name != "n_mice" else int)
    return frame


def tracking_path(root: str | Path, split: str, lab_id: str, video_id: int) -> Path:
    """``<root>/<split>_tracking/<lab_id>/<video_id>.parquet``."""
    return Path(root) / f"{split}_tracking" / str(lab_id) / f"{int(video_id)}.parquet"


def annotation_path(root: str | Path, lab_id: str, video_id: int, split: str = "train") -> Path:
    """``<root>/<split>_annotation/<lab_id>/<video_id>.parquet`` (Kaggle ships only ``train``)."""
    return Path(root) / f"{split}_annotation" / str(lab_id) / f"{int(video_id)}.parquet"


def features_path(root: str | Path, split: str, lab_id: str, video_id: int) -> Path:
    """``<root>/<split>_features/<lab_id>/<video_id>.parquet``: optional extra per-frame inputs (an
    importer's engineered feature columns, e.g. SimBA's) beside ``<split>_tracking``; columns
    ``video_frame`` + one float column per feature. Not part of the Kaggle layout."""
    return Path(root) / f"{split}_features" / str(lab_id) / f"{int(video_id)}.parquet"


def _read_parquet(path: Path, columns: Sequence[str], what: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} parquet not found")
    frame = pd.read_parquet(path)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise BehaviorDataError(f"{path}: missing column(s) {missing}; a {what} parquet needs "
                                f"{list(columns)}")
    return frame


def _as_int(frame: pd.DataFrame, col: str, path: Path, minimum: int) -> None:
    values = pd.to_numeric(frame[col], errors="coerce")
    bad = values.isna() | (values != values.round()) | (values < minimum)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise BehaviorDataError(f"{path}: row {i}, column {col}: {frame[col].iloc[i]!r} is not an "
                                f"integer >= {minimum}")
    frame[col] = values.astype("int64")


def read_tracking(path: str | Path) -> pd.DataFrame:
    """Read one tracking parquet (long: one row per frame x mouse x bodypart); validates the schema.

    video_frame, mouse_id -> int64 (>= 0 / >= 1); bodypart -> str; x, y -> float32 (NaN allowed).
    """
    path = Path(path)
    frame = _read_parquet(path, TRACKING_COLUMNS, "tracking")
    _as_int(frame, "video_frame", path, 0)
    _as_int(frame, "mouse_id", path, 1)
    frame["bodypart"] = frame["bodypart"].astype(str)
    for col in ("x", "y"):
        try:
            frame[col] = frame[col].astype("float32")
        except (TypeError, ValueError):
            raise BehaviorDataError(f"{path}: column {col} is not numeric") from None
    return frame


def read_annotation(path: str | Path) -> pd.DataFrame:
    """Read one annotation parquet: agent_id, target_id (int >= 1), action (str),
    start_frame (int >= 0), stop_frame (int, exclusive, > start_frame)."""
    path = Path(path)
    frame = _read_parquet(path, ANNOTATION_COLUMNS, "annotation")
    for col, minimum in (("agent_id", 1), ("target_id", 1), ("start_frame", 0), ("stop_frame", 1)):
        _as_int(frame, col, path, minimum)
    frame["action"] = frame["action"].astype(str)
    bad = frame["stop_frame"] <= frame["start_frame"]
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise BehaviorDataError(f"{path}: row {i}: stop_frame {frame['stop_frame'].iloc[i]} <= "
                                f"start_frame {frame['start_frame'].iloc[i]}; stop_frame is exclusive")
    return frame


def tracking_array(tracking: pd.DataFrame, mice: Sequence[int], body_parts: Sequence[str],
                   n_frames: int | None = None) -> np.ndarray:
    """Dense ``(T, M, K, 2)`` float32 (x, y) array; row t is ``video_frame == t``; NaN where missing.

    Rows of other mice / body parts are ignored. ``n_frames=None`` -> T = max(video_frame) + 1.
    Raises BehaviorDataError for frames >= n_frames or duplicated (frame, mouse, bodypart) rows.
    """
    frames = tracking["video_frame"].to_numpy(np.int64)
    if n_frames is None:
        n_frames = int(frames.max()) + 1 if len(frames) else 0
    m_idx = pd.Index(list(mice)).get_indexer(tracking["mouse_id"])
    k_idx = pd.Index(list(body_parts)).get_indexer(tracking["bodypart"])
    keep = (m_idx >= 0) & (k_idx >= 0)
    frames, m_idx, k_idx = frames[keep], m_idx[keep], k_idx[keep]
    if len(frames) and (frames.min() < 0 or frames.max() >= n_frames):
        raise BehaviorDataError(f"tracking has video_frame {frames.max()} outside 0..{n_frames - 1}; "
                                "pass n_frames=None or the true frame count")
    flat = (frames * len(mice) + m_idx) * len(body_parts) + k_idx
    if len(np.unique(flat)) != len(flat):
        raise BehaviorDataError("tracking has duplicated (video_frame, mouse_id, bodypart) rows")
    out = np.full((n_frames * len(mice) * len(body_parts), 2), np.nan, dtype=np.float32)
    out[flat, 0] = tracking["x"].to_numpy(np.float32)[keep]
    out[flat, 1] = tracking["y"].to_numpy(np.float32)[keep]
    return out.reshape(n_frames, len(mice), len(body_parts), 2)


def frame_labels(annotation: pd.DataFrame, n_frames: int,
                 keys: Sequence[tuple[int, int, str]]) -> np.ndarray:
    """``(T, len(keys))`` uint8: 1 where frame t lies in [start_frame, stop_frame) of a bout of that
    (agent_id, target_id, action). Bouts are clipped to [0, n_frames); other keys are ignored."""
    index = {tuple(k): j for j, k in enumerate(keys)}
    cols = [index.get((int(a), int(t), str(act)), -1) for a, t, act in
            zip(annotation["agent_id"], annotation["target_id"], annotation["action"])]
    cols_arr = np.asarray(cols, dtype=np.int64)
    keep = cols_arr >= 0
    start = np.clip(annotation["start_frame"].to_numpy(np.int64)[keep], 0, n_frames)
    stop = np.clip(annotation["stop_frame"].to_numpy(np.int64)[keep], 0, n_frames)
    diff = np.zeros((n_frames + 1, len(keys)), dtype=np.int32)  # +1 at start, -1 at stop, cumsum
    np.add.at(diff, (start, cols_arr[keep]), 1)
    np.add.at(diff, (stop, cols_arr[keep]), -1)
    return (np.cumsum(diff[:-1], axis=0) > 0).astype(np.uint8)


# ------------------------------------------------------------------------------------------------
# Pre-flight
# ------------------------------------------------------------------------------------------------

_FIX_HINT = ("put the competition's files there (Kaggle MABe layout), re-run the importer "
             "(kagglekit.tasks.behavior.importer) for imported labs, or run with --demo")


def parquet_problem(path: Path, columns: Sequence[str], what: str) -> str | None:
    """None when ``path`` is a parquet whose schema has ``columns``; else one problem line. Only
    the footer is read (fast), so a truncated or non-parquet file is caught, bad rows are not."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    if not path.is_file():
        return f"{path}: {what} parquet not found; {_FIX_HINT}"
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        return f"{path}: cannot read the {what} parquet ({type(exc).__name__}: {exc}); the file is corrupt or truncated, {_FIX_HINT}"
    missing = [c for c in columns if c not in names]
    if missing:
        return f"{path}: missing column(s) {missing}; every {what} parquet needs {list(columns)} (this one has {names})"
    return None


def preflight_videos(root: str | Path, meta: pd.DataFrame, split: str) -> list[str]:
    """Every problem with the per-video files of ``meta`` (a :func:`load_metadata` frame): each
    tracking parquet, and for ``train`` each annotation parquet of a video with labelled behaviours
    (exists, readable, has the schema's columns). Empty: all readable."""
    from kagglekit.experiment.preflight import parallel_map
    checks = [(tracking_path(root, split, r.lab_id, r.video_id), TRACKING_COLUMNS, "tracking") for r in meta.itertuples()]
    if split == "train":
        checks += [(annotation_path(root, r.lab_id, r.video_id), ANNOTATION_COLUMNS, "annotation")
                   for r in meta.itertuples() if r.behaviors]
    return [p for p in parallel_map(lambda c: parquet_problem(*c), checks) if p is not None]
