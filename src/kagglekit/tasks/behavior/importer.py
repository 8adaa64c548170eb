"""DeepLabCut multi-animal CSV + Caltech Behavior Annotator files -> the MABe-2025 layout (one lab).

Source formats (``shared/data/rat_behavior/README.md``):
- DLC CSV (optionally gzipped): 4 header rows ``scorer / individuals / bodyparts / coords`` (coords
  ``x, y, likelihood``), then one row per frame: frame index, then floats; empty cells = missing.
  The index, not the row number, is the frame (the README's "index starts at 1" files are a pandas
  multi-header artefact, see ``_read_dlc_wide``; the raw files start at 0).
- Caltech annotation (CRLF, tab-separated): a "Configuration file:" block of ``name<TAB>hotkey``, then
  streams ``S1:``, ``S2:``... each a list of ``start end type`` bouts, 1-based INCLUSIVE frames.

Conventions of :func:`import_dlc_caltech`:
- video_id = the leading integer of the file name (``12DLC_....csv.gz`` and ``12_annot.txt`` pair up).
- individuals -> mouse_id 1, 2, ... in order of first appearance in the header (individual1 -> 1).
- Tracking parquet: the MABe columns video_frame, mouse_id, bodypart, x, y (pixels); rows with NaN
  x or y are dropped (likelihood is not written: the MABe layout has no such column).
- Annotation frame f (1-based) <-> video_frame f - 1, so a bout [s, e] becomes
  start_frame = s - 1, stop_frame = e (exclusive). Bouts are clipped to n_frames = last CSV index + 1
  (some annotations run past the track); bouts empty after clipping are dropped.
- ``base`` is background: never written. Every other type becomes an action of agent 1 -> target 2.
- ``streams`` maps each action type to its stream (e.g. ``{"social": "S1", "chase": "S2"}``); default:
  inferred from the files given (the non-base types seen in each stream). ``behaviors_labeled`` of a
  video lists every action of the streams present in ITS annotation file, so a file without S2 does not
  claim S2 actions (absence of a label then means "not annotated", as in MABe).
- Metadata: 38 columns in the real train.csv order; mouseK_id = K for each individual, fps /
  pix_per_cm / arena from the arguments, video_duration_sec = n_frames / fps, tracking_method
  DeepLabCut, unknown fields empty (override any with ``extra_meta``).
- Writes ``<out>/{split}_tracking/<lab>/<video>.parquet``, ``<out>/{split}_annotation/<lab>/...``
  and appends to / creates ``<out>/{split}.csv`` (rows of the same lab_id + video_id are replaced).
- Overlaps: S1 and S2 bouts overlap (the rat data: an S2 ``clinch`` inside an S1 ``aggression``), and
  the MABe metric allows one action per agent/target and frame. ``overlap="priority"`` (default)
  trims the lower-priority bouts, later streams first (:func:`action_priority`; ``stream_priority=``
  overrides), ``"keep"`` writes them as read; a warning counts the overlapping frames per video and
  pair (:mod:`kagglekit.tasks.behavior.labels`).
- Then ``<out>/sample_submission.csv`` and the oracle check (the imported labels as a submission
  must validate and score exactly 1.0; ``check=False`` skips it): ``labels.finish_import``.
- A file in another format (a SimBA CSV, a truncated .gz) is refused with one line naming the file
  and the expected format (:data:`DLC_FORMAT`).
"""
from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from kagglekit.io import save_csv, write_bytes
from kagglekit.tasks.behavior.labels import OVERLAP_POLICIES, OverlapPolicy, finish_import, resolve_overlaps
from kagglekit.tasks.behavior.meta import (
    ANNOTATION_COLUMNS, META_COLUMNS, TRACKING_COLUMNS, BehaviorDataError, annotation_path,
    features_path, tracking_path,
)

DLC_LEVELS = ["scorer", "individuals", "bodyparts", "coords"]
DLC_FORMAT = "DeepLabCut multi-animal CSV (header rows scorer, individuals, bodyparts, coords)"
# SimBA pose column <bodypart>_<animal>_<x|y|p> (see kagglekit.tasks.behavior.simba); used to name the format
SIMBA_POSE_COLUMN = re.compile(r"^.+_[^_]+_[xyp]$")
BACKGROUND = "base"
# Stream vocabulary of the rat data (rat_behavior/README.md, "Annotation format").
RAT_STREAMS: dict[str, str] = {
    "social": "S1", "nonsocial": "S1", "aggression": "S1",
    **{t: "S2" for t in ("lateralthreat", "keepdown", "clinch", "uprightposture", "freezing",
                         "bite", "chase")},
}
_STREAM_HEADER = re.compile(r"^(S\d+):\s+start\s+end\s+type\s*$")
_LEADING_INT = re.compile(r"^(\d+)")
MAX_FRAME = 2**53  # frame numbers above this are not exact in float64 (and overflowed int64 casts)


def video_number(path: str | Path) -> int:
    """Leading integer of a file name: ``12DLC_x.csv.gz`` -> 12."""
    match = _LEADING_INT.match(Path(path).name)
    if not match:
        raise BehaviorDataError(f"{path}: file name must start with the video number (e.g. 12_annot.txt)")
    return int(match.group(1))


def short_text(value: Any, limit: int = 24) -> str:
    """``repr``-like text of one cell / message, cut to ``limit`` characters (error lines stay short)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _check_dlc_header(path: Path, head: pd.DataFrame, n_columns: int) -> None:
    """One short line naming the file and the expected format when ``head`` (the first 4 rows, as
    text) is not a DLC multi-animal header. It used to list the set of every value of the 4th row
    (hundreds of numbers for a SimBA CSV, whose 4th row is data)."""
    names = head.iloc[:, 0].tolist()
    coords = set(head.iloc[3, 1:]) if len(head) == 4 else set()
    if names == DLC_LEVELS and head.shape[1] == n_columns and {"x", "y"} <= coords <= {"x", "y", "likelihood"}:
        return
    first = head.iloc[0, 1:].astype(str).tolist() if len(head) else []
    if first and sum(bool(SIMBA_POSE_COLUMN.match(c)) for c in first) >= len(first) / 2:
        raise BehaviorDataError(f"{path}: a SimBA CSV (columns like {short_text(first[0])!r}), not a {DLC_FORMAT}; "
                                "use simba.import_simba")
    if names != DLC_LEVELS:
        found = f"first cells {[short_text(n, 12) for n in names[:4]]} (single-animal files need an 'individuals' row)"
    elif head.shape[1] != n_columns:
        found = f"{head.shape[1]} header columns but {n_columns} data columns"
    else:
        found = f"coords {sorted(short_text(c, 12) for c in coords)[:4]} (need x, y and optionally likelihood)"
    raise BehaviorDataError(f"{path}: not a {DLC_FORMAT}: {found}")


def _read_dlc_wide(path: Path) -> pd.DataFrame:
    """Header rows and data read separately: ``read_csv(header=[0, 1, 2, 3], index_col=0)`` takes an
    all-empty first data row (``0,,,...``) for the index-name row and silently drops frame 0; that
    pandas artefact is the README's "files starting at index 1" (the raw files all start at 0)."""
    try:
        head = pd.read_csv(path, header=None, nrows=4, dtype=str, keep_default_na=False)
        data = pd.read_csv(path, header=None, skiprows=4)
    except (ValueError, IndexError, pd.errors.ParserError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        # EOFError / BadGzipFile / zlib.error: a truncated or corrupt .csv.gz (used to escape raw)
        raise BehaviorDataError(f"{path}: not a DeepLabCut multi-animal CSV ({type(exc).__name__}: "
                                f"{short_text(exc, 80)}); expected {DLC_FORMAT}") from None
    _check_dlc_header(path, head, data.shape[1])
    index = pd.to_numeric(data.iloc[:, 0], errors="coerce").astype(np.float64)
    # inf / 1e30 / 1.5 used to pass and then crash (IntCastingNaNError) or be cast to garbage frames.
    if not np.isfinite(index).all() or (index < 0).any() or (index > MAX_FRAME).any() or \
            (index != index.round()).any() or not index.is_monotonic_increasing or index.duplicated().any():
        raise BehaviorDataError(f"{path}: the first column must hold increasing, unique, non-negative "
                                "integer frame indices (at most 2**53)")
    # Duplicated or x/y-less columns used to crash _dlc_long (ValueError 1-dimensional / KeyError 'y').
    columns = list(zip(*(head.iloc[i, 1:].tolist() for i in range(1, 4))))  # (individual, bodypart, coord)
    if dup := sorted(c for c, n in Counter(columns).items() if n > 1):
        raise BehaviorDataError(f"{path}: header column(s) (individual, bodypart, coord) {dup[:5]} appear more "
                                "than once; each must be unique (delete or rename the duplicates)")
    has = {coord: {(ind, part) for ind, part, c in columns if c == coord} for coord in ("x", "y")}
    if lone := sorted({(ind, part) for ind, part, _ in columns} - (has["x"] & has["y"])):
        raise BehaviorDataError(f"{path}: (individual, bodypart) {lone[:5]} lack an x or a y column; every "
                                "body part needs both coords")
    wide = data.iloc[:, 1:].apply(pd.to_numeric, errors="coerce")
    wide.columns = pd.MultiIndex.from_arrays([head.iloc[i, 1:].tolist() for i in range(4)],
                                             names=DLC_LEVELS)
    wide.index = index.astype("int64").to_numpy()
    return wide


def _dlc_long(path: Path) -> tuple[pd.DataFrame, int, list[str], int]:
    """(long frame, n_frames = last index + 1, body parts in header order, number of individuals)."""
    wide = _read_dlc_wide(path)
    individuals = list(dict.fromkeys(wide.columns.get_level_values(1)))
    parts = list(dict.fromkeys(wide.columns.get_level_values(2)))
    present = {(c[1], c[2]) for c in wide.columns}
    pieces = []
    for mouse_id, ind in enumerate(individuals, start=1):
        for part in parts:
            if (ind, part) in present:
                sub = wide.xs((ind, part), axis=1, level=[1, 2])
                sub.columns = sub.columns.get_level_values(-1)
                pieces.append(pd.DataFrame({
                    "video_frame": wide.index, "mouse_id": mouse_id, "bodypart": part,
                    "x": sub["x"].to_numpy(np.float32), "y": sub["y"].to_numpy(np.float32),
                    "likelihood": (sub["likelihood"].to_numpy(np.float32) if "likelihood" in sub
                                   else np.float32(np.nan))}))
    long = pd.concat(pieces, ignore_index=True)
    long = long[long["x"].notna() & long["y"].notna()]
    long = long.sort_values(["video_frame", "mouse_id"], kind="stable").reset_index(drop=True)
    n_frames = int(wide.index.max()) + 1 if len(wide) else 0
    return long, n_frames, parts, len(individuals)


def read_dlc_csv(path: str | Path) -> pd.DataFrame:
    """DLC multi-animal CSV (.csv or .csv.gz) -> long frame with columns video_frame (the CSV index),
    mouse_id (1.. by individual order), bodypart, x, y, likelihood; rows with NaN x/y dropped.
    ``attrs["n_frames"]`` = last CSV index + 1."""
    long, n_frames, _, _ = _dlc_long(Path(path))
    long.attrs["n_frames"] = n_frames
    return long


def _parse_bout(line: str, path: Path, lineno: int, config: set[str]) -> tuple[int, int, str]:
    fields = line.split()
    try:
        if len(fields) != 3:
            raise ValueError
        start, end, kind = int(fields[0]), int(fields[1]), fields[2]
    except ValueError:
        raise BehaviorDataError(f"{path}: line {lineno}: {line.strip()!r} is not 'start<TAB>end<TAB>type'"
                                " with integer frames; fix or delete the line") from None
    if start < 1 or end < start or end > MAX_FRAME:  # huge ends overflowed int64 (OverflowError)
        raise BehaviorDataError(f"{path}: line {lineno}: bout {start}..{end} must have 1 <= start <= end "
                                "<= 2**53 (1-based inclusive frames)")
    if config and kind not in config:
        raise BehaviorDataError(f"{path}: line {lineno}: type {kind!r} is not in the configuration "
                                f"block {sorted(config)}")
    return start, end, kind


def read_caltech_annotation(path: str | Path) -> dict[str, pd.DataFrame]:
    """Caltech Behavior Annotator file -> {stream name: DataFrame(start, end, type)} as written
    (1-based inclusive frames). Validates each data line and that bouts do not overlap."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()  # CRLF-safe
    config: set[str] = set()
    streams: dict[str, list[tuple[int, int, str]]] = {}
    current: str | None = None
    in_config = False
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        header = _STREAM_HEADER.match(text)
        if header:
            current, in_config = header.group(1), False
            streams[current] = []
        elif text.startswith("Configuration file"):
            in_config = True
        elif not text or set(text) == {"-"} or (current is None and not in_config):
            continue
        elif in_config:
            config.add(text.split()[0])
        else:
            bout = _parse_bout(line, path, lineno, config)
            if streams[current] and bout[0] <= streams[current][-1][1]:
                raise BehaviorDataError(f"{path}: line {lineno}: bout starts at {bout[0]}, inside the "
                                        f"previous bout of {current} (ends {streams[current][-1][1]})")
            streams[current].append(bout)
    if not streams:
        raise BehaviorDataError(f"{path}: no stream header like 'S1:<TAB>start<TAB>end<TAB>type' found")
    return {s: pd.DataFrame(b, columns=["start", "end", "type"]).astype({"start": "int64", "end": "int64"})
            for s, b in streams.items()}


def bouts_to_annotation(streams: dict[str, pd.DataFrame], n_frames: int,
                        agent: int = 1, target: int = 2) -> pd.DataFrame:
    """Non-background bouts -> MABe annotation rows: start_frame = s - 1, stop_frame = min(e, n_frames);
    rows empty after clipping are dropped. Columns ANNOTATION_COLUMNS, sorted by start_frame."""
    rows = []
    for bouts in streams.values():
        fg = bouts[bouts["type"] != BACKGROUND]
        start = fg["start"].to_numpy(np.int64) - 1
        stop = np.minimum(fg["end"].to_numpy(np.int64), n_frames)
        keep = stop > start
        rows.append(pd.DataFrame({"agent_id": agent, "target_id": target,
                                  "action": fg["type"].to_numpy()[keep],
                                  "start_frame": start[keep], "stop_frame": stop[keep]}))
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=list(ANNOTATION_COLUMNS))
    out = out.astype({"agent_id": "int64", "target_id": "int64", "start_frame": "int64",
                      "stop_frame": "int64"})
    return out.sort_values(["start_frame", "action"], kind="stable").reset_index(drop=True)[
        list(ANNOTATION_COLUMNS)]


def infer_streams(annotations: Sequence[dict[str, pd.DataFrame]]) -> dict[str, str]:
    """Action type -> stream, from the non-background types seen in each stream."""
    vocab: dict[str, str] = {}
    for streams in annotations:
        for name, bouts in streams.items():
            for kind in bouts["type"].unique():
                if kind != BACKGROUND and vocab.setdefault(str(kind), name) != name:
                    raise BehaviorDataError(f"type {kind!r} appears in streams {vocab[kind]} and {name};"
                                            " pass streams= to say which one it belongs to")
    return vocab


def _check_streams(streams: dict[str, pd.DataFrame], vocab: dict[str, str], path: Path) -> None:
    for name, bouts in streams.items():
        for kind in bouts["type"].unique():
            if kind != BACKGROUND and vocab.get(kind) != name:
                raise BehaviorDataError(f"{path}: stream {name} has type {kind!r}, which streams= maps "
                                        f"to {vocab.get(kind)!r}; add {kind!r}: {name!r} to streams")


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def meta_row(lab_id: str, video_id: int, n_mice: int, n_frames: int, parts: list[str],
             behaviors: list[str], fps: float, pix_per_cm: float, arena_cm: tuple[float, float],
             extra: dict[str, Any], tracking_method: str = "DeepLabCut") -> dict[str, Any]:
    """One train.csv / test.csv row (META_COLUMNS; module docstring, "Metadata"); ``extra`` overrides."""
    row: dict[str, Any] = {c: np.nan for c in META_COLUMNS}
    row.update({f"mouse{k}_id": float(k) for k in range(1, n_mice + 1)})
    row.update(lab_id=lab_id, video_id=int(video_id), frames_per_second=float(fps),
               video_duration_sec=round(n_frames / fps, 3), pix_per_cm_approx=float(pix_per_cm),
               arena_width_cm=float(arena_cm[0]), arena_height_cm=float(arena_cm[1]),
               body_parts_tracked=json.dumps(parts), behaviors_labeled=json.dumps(sorted(behaviors)),
               tracking_method=tracking_method)
    unknown = set(extra) - set(META_COLUMNS)
    if unknown:
        raise BehaviorDataError(f"extra_meta has unknown column(s) {sorted(unknown)}; use names of "
                                "META_COLUMNS")
    row.update(extra)
    return row


def append_meta(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` into ``path``, replacing existing rows of the same (lab_id, video_id)."""
    new = pd.DataFrame(rows, columns=list(META_COLUMNS))
    if path.is_file():
        old = pd.read_csv(path, dtype={"lab_id": str})
        if list(old.columns) != list(META_COLUMNS):
            raise BehaviorDataError(f"{path}: existing columns differ from the 38 MABe metadata columns;"
                                    " move it away or fix its header")
        key = set(zip(new["lab_id"], new["video_id"].astype("int64")))
        old = old[[(lab, int(v)) not in key for lab, v in zip(old["lab_id"], old["video_id"])]]
        new = pd.concat([old, new], ignore_index=True) if len(old) else new
    save_csv(path, new)


def _pair_files(dlc_files: Sequence[Path], annot_files: Sequence[Path]) -> list[tuple[int, Path, Path]]:
    dlc = {video_number(p): Path(p) for p in dlc_files}
    ann = {video_number(p): Path(p) for p in annot_files}
    if len(dlc) != len(dlc_files) or len(ann) != len(annot_files) or set(dlc) != set(ann):
        raise BehaviorDataError(f"DLC videos {sorted(dlc)} and annotation videos {sorted(ann)} must pair "
                                "one to one by the leading integer of the file names")
    return [(v, dlc[v], ann[v]) for v in sorted(dlc)]


def action_priority(vocab: dict[str, str], stream_priority: Sequence[str] | None = None) -> list[str]:
    """Actions of ``vocab`` (action -> stream), highest overlap priority first: by stream in
    ``stream_priority`` order (streams it does not list follow), default **later streams first**
    (``S2`` before ``S1``): in the rat data the S2 types (kinds of aggression) lie inside S1
    ``aggression`` bouts, so S1 first would erase every S2 label, while S2 first keeps them and leaves
    S1 ``aggression`` only where S2 says ``base`` (video 1: 3 of 3,767 frames). Within a stream:
    ``vocab`` order (streams never overlap themselves: :func:`read_caltech_annotation` checks)."""
    def number(stream: str) -> tuple[int, str]:
        digits = re.sub(r"\D", "", stream)
        return (int(digits) if digits else -1, stream)
    streams = sorted(set(vocab.values()), key=number, reverse=True)
    if stream_priority is not None:
        streams = [s for s in stream_priority if s in streams] + [s for s in streams if s not in stream_priority]
    return [a for stream in streams for a, s in vocab.items() if s == stream]


def write_video_files(out_root: Path, split: str, lab_id: str, video_id: int, tracking: pd.DataFrame,
                      annotation: pd.DataFrame, features: pd.DataFrame | None = None) -> None:
    """One video's parquets: tracking (TRACKING_COLUMNS), annotation (ANNOTATION_COLUMNS) and, when
    given, the extra per-frame ``features`` (``video_frame`` + feature columns, :func:`features_path`;
    without them an older features file of the video is removed)."""
    write_bytes(tracking_path(out_root, split, lab_id, video_id),
                _parquet_bytes(tracking[list(TRACKING_COLUMNS)]))
    write_bytes(annotation_path(out_root, lab_id, video_id, split),
                _parquet_bytes(annotation[list(ANNOTATION_COLUMNS)]))
    extra = features_path(out_root, split, lab_id, video_id)
    if features is not None:
        write_bytes(extra, _parquet_bytes(features))
    elif extra.is_file():  # a re-import without features: an older file would be read as this video's
        extra.unlink()


def check_overlap_policy(overlap: str) -> None:
    """Refuse an unknown ``overlap=`` before anything is read or written."""
    if overlap not in OVERLAP_POLICIES:
        raise BehaviorDataError(f"overlap={overlap!r}; use one of {list(OVERLAP_POLICIES)} "
                                "(kagglekit.tasks.behavior.labels)")


def import_dlc_caltech(dlc_files: Sequence[Path], annot_files: Sequence[Path], out_root: Path,
                       lab_id: str, *, fps: float, pix_per_cm: float, arena_cm: tuple[float, float],
                       split: str = "train", streams: dict[str, str] | None = None,
                       extra_meta: dict[str, Any] | None = None, overlap: OverlapPolicy = "priority",
                       stream_priority: Sequence[str] | None = None, check: bool = True) -> pd.DataFrame:
    """Import paired DLC CSVs + Caltech annotations as lab ``lab_id`` (conventions: module docstring).

    ``overlap`` / ``stream_priority``: what to do where bouts of two streams overlap on one frame
    (:mod:`~kagglekit.tasks.behavior.labels`; priority order: :func:`action_priority`). Ends with
    ``sample_submission.csv`` and, with ``check``, the oracle check
    (:func:`~kagglekit.tasks.behavior.labels.finish_import`).
    Returns the metadata rows written (one per video, META_COLUMNS)."""
    check_overlap_policy(overlap)
    out_root = Path(out_root)
    pairs = _pair_files(dlc_files, annot_files)
    annots = {v: read_caltech_annotation(a) for v, _, a in pairs}
    vocab = dict(streams) if streams is not None else infer_streams(list(annots.values()))
    priority = action_priority(vocab, stream_priority)
    rows = []
    for video_id, dlc_path, annot_path in pairs:
        _check_streams(annots[video_id], vocab, annot_path)
        long, n_frames, parts, n_mice = _dlc_long(dlc_path)
        ann, _ = resolve_overlaps(bouts_to_annotation(annots[video_id], n_frames), priority, overlap,
                                  where=f"{annot_path.name} (lab {lab_id}, video {video_id})")
        write_video_files(out_root, split, lab_id, video_id, long, ann)
        labeled = [f"mouse1,mouse2,{a}" for a, s in vocab.items() if s in annots[video_id]]
        rows.append(meta_row(lab_id, video_id, n_mice, n_frames, parts, labeled, fps,
                             pix_per_cm, arena_cm, extra_meta or {}))
    append_meta(out_root / f"{split}.csv", rows)
    finish_import(out_root, split, lab_id, [v for v, _, _ in pairs], overlap, check)
    return pd.DataFrame(rows, columns=list(META_COLUMNS))


def __getattr__(name: str) -> Any:
    """``import_simba`` / ``read_simba_csv`` are exported here too, beside :func:`import_dlc_caltech`
    (lazily: :mod:`kagglekit.tasks.behavior.simba` imports this module)."""
    if name in ("import_simba", "read_simba_csv"):
        from kagglekit.tasks.behavior import simba
        return getattr(simba, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
