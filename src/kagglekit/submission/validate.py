"""Validate a submission against the competition's ``sample_submission.csv`` before uploading.

:func:`validate` collects **every** problem it finds and raises one :class:`SubmissionError`
listing them (at most ``MAX_LISTED`` examples per kind of problem, plus a count of the rest).
Row numbers in messages are 1-based data rows (the header is not counted; CSV line = row + 1).

Rules
-----
- Columns exactly the sample's (missing / extra / misordered columns are named).
- The sample's first column is the id column; ids are compared as strings (``"0005"`` stays
  ``"0005"``: CSVs are read with ``dtype=str``).
- No NaN / empty cells, except in RLE columns (name contains ``EncodedPixels``: empty = empty mask).
- A column that is numeric in the sample must be numeric in the submission.
- Sample ids unique and no RLE column (classification / regression): exactly the sample's ids,
  each once, same row count.
- Sample with an RLE column: same *set* of ids as the sample; every RLE well formed (and inside
  ``image_shape`` when given).
- NYUv2 format (columns ``ImageId,ClassId,EncodedPixels``, see :mod:`kagglekit.submission.nyuv2`):
  additionally (ImageId, ClassId) unique, ClassId an integer in 1..13, RLE inside
  ``image_shape`` (default 480x640), and one image's class masks must not overlap.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from kagglekit.io import save_csv
from kagglekit.submission.rle import SubmissionError, parse_rle

__all__ = ["MAX_LISTED", "SubmissionError", "id_coverage_problems", "validate", "write_submission"]

MAX_LISTED = 20
RLE_MARK = "EncodedPixels"
NYUV2_COLUMNS = ("ImageId", "ClassId", "EncodedPixels")
NYUV2_SHAPE = (480, 640)
NYUV2_NUM_CLASSES = 13

CsvLike = str | os.PathLike | pd.DataFrame


def _listing(items: Iterable[Any], limit: int = MAX_LISTED) -> str:
    """``a, b, c`` with at most ``limit`` items, then ``... (+N more)``."""
    items = list(items)
    shown = ", ".join(str(x) for x in items[:limit])
    return shown + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")


def _load(obj: CsvLike, what: str) -> tuple[pd.DataFrame, str]:
    """(frame, display name). CSVs are read as strings so ids keep leading zeros."""
    if isinstance(obj, pd.DataFrame):
        return obj.reset_index(drop=True), f"{what} DataFrame"
    path = Path(obj)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} not found")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SubmissionError(f"{what} {path} is not a readable CSV: {exc}") from None
    return frame, str(path)


def _missing(series: pd.Series) -> np.ndarray:
    """Bool mask of NaN/None/empty-or-whitespace cells."""
    miss = np.array(series.isna(), dtype=bool)
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        miss |= series.astype(str).str.strip().eq("").to_numpy()
    return miss


def ids_as_str(series: pd.Series) -> pd.Series:
    """Ids as strings; integral floats (from NaN-promoted int columns) print without ``.0``.

    Missing ids (NaN / None) become ``""``, as an empty CSV cell reads: pandas' ``astype(str)`` keeps
    them as float NaN, which made ``sorted`` of the id sets raise TypeError (str vs float).
    """
    if pd.api.types.is_float_dtype(series):
        vals = series.to_numpy(dtype=np.float64, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            exact = np.isfinite(vals) & (vals == np.round(vals)) & (np.abs(vals) < 2.0**63)
        if np.all(exact | np.isnan(vals)):
            return series.astype("Int64").astype(str).fillna("")
        # inf / huge values cannot become Int64 (OverflowError): only those print as floats
        text = [str(int(v)) if e else ("" if np.isnan(v) else str(v)) for v, e in zip(vals.tolist(), exact)]
        return pd.Series(text, index=series.index, name=series.name).astype(str)
    return series.astype(str).str.strip().fillna("")


def _is_numeric_column(series: pd.Series) -> bool:
    """True when every non-empty cell of the sample column parses as a number."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return True
    present = series[~_missing(series)]
    return len(present) > 0 and pd.to_numeric(present, errors="coerce").notna().all()


class _Context:
    """Submission frame + helpers to describe rows in messages."""

    def __init__(self, sub: pd.DataFrame, id_col: str, class_col: str | None) -> None:
        self.sub, self.id_col, self.class_col = sub, id_col, class_col
        self.ids = ids_as_str(sub[id_col]) if id_col in sub.columns else None

    def row(self, i: int) -> str:
        parts = []
        if self.ids is not None:
            parts.append(f"{self.id_col}={self.ids.iat[i]}")
        if self.class_col is not None and self.class_col in self.sub.columns:
            parts.append(f"{self.class_col}={self.sub[self.class_col].iat[i]}")
        return f"row {i + 1}" + (f" ({', '.join(parts)})" if parts else "")

    def rows(self, idx: Iterable[int]) -> str:
        idx = list(idx)
        return f"{len(idx)} row(s): " + _listing(self.row(i) for i in idx)


def id_coverage_problems(ids: pd.Series, expected: Iterable[str], what: str = "id") -> list[str]:
    """Each expected id exactly once: duplicated, missing and unknown ``ids`` (strings), each kind
    counted with a few examples (one-row-per-image formats: boxes, keypoints, multi-label, frames)."""
    ids, expected = ids.astype(str), set(expected)
    problems = []
    if ids.duplicated().any():
        problems.append(f"{int(ids.duplicated().sum())} duplicated {what}(s), e.g. {ids[ids.duplicated()].iloc[0]}")
    missing, extra = expected - set(ids), set(ids) - expected
    if missing:
        problems.append(f"{len(missing)} test {what}(s) missing, e.g. {sorted(missing)[:3]}")
    if extra:
        problems.append(f"{len(extra)} {what}(s) not in the test set, e.g. {sorted(extra)[:3]}")
    return problems


def _check_columns(sub: pd.DataFrame, sample: pd.DataFrame) -> list[str]:
    expected, got = list(sample.columns), list(sub.columns)
    if expected == got:
        return []
    problems = []
    missing = [c for c in expected if c not in got]
    extra = [c for c in got if c not in expected]
    if missing:
        problems.append(f"missing column(s): {_listing(missing)} (expected columns {expected})")
    if extra:
        problems.append(f"unexpected column(s): {_listing(extra)} (expected columns {expected})")
    if not missing and not extra:
        problems.append(f"columns are in the wrong order: expected {expected}, got {got}")
    return problems


def _check_cells(ctx: _Context, sample: pd.DataFrame) -> list[str]:
    """NaN/empty cells (outside RLE columns) and numeric columns holding non-numbers."""
    problems = []
    for col in sample.columns:
        if col not in ctx.sub.columns:
            continue
        series = ctx.sub[col]
        miss = _missing(series)
        if miss.any() and RLE_MARK not in col:
            problems.append(f"column '{col}' is empty/NaN in {ctx.rows(np.flatnonzero(miss))}")
        if col == ctx.id_col or RLE_MARK in col or not _is_numeric_column(sample[col]):
            continue
        bad = np.flatnonzero(~miss & pd.to_numeric(series, errors="coerce").isna().to_numpy())
        if bad.size:
            examples = _listing(f"{ctx.row(i)} has {series.iat[i]!r}" for i in bad)
            problems.append(f"column '{col}' must be numeric like the sample, but {bad.size} value(s) are not: {examples}")
    return problems


def _check_exact_ids(ctx: _Context, sample_ids: pd.Series) -> list[str]:
    """Classification-style: exactly the sample's ids, each once, same row count."""
    problems = []
    ids = ctx.ids
    expected, got = set(sample_ids), set(ids)
    if missing := sorted(expected - got):
        problems.append(f"{len(missing)} id(s) from the sample are missing in '{ctx.id_col}': {_listing(missing)}")
    if extra := sorted(got - expected):
        problems.append(f"{len(extra)} id(s) in '{ctx.id_col}' are not in the sample: {_listing(extra)}")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        counts = dup.value_counts()
        problems.append(f"{len(counts)} id(s) in '{ctx.id_col}' are duplicated: "
                        + _listing(f"{k} ({v}x)" for k, v in counts.items()))
    if len(ids) != len(sample_ids):
        problems.append(f"expected {len(sample_ids)} rows (one per sample id), got {len(ids)}")
    return problems


def _check_id_set(ctx: _Context, sample_ids: pd.Series) -> list[str]:
    """RLE formats: the submission covers exactly the sample's set of ids."""
    problems = []
    expected, got = set(sample_ids), set(ctx.ids)
    if missing := sorted(expected - got):
        problems.append(f"{len(missing)} {ctx.id_col}(s) from the sample have no row: {_listing(missing)}")
    if extra := sorted(got - expected):
        problems.append(f"{len(extra)} {ctx.id_col}(s) are not in the sample: {_listing(extra)}")
    return problems


def _parse_rles(ctx: _Context, col: str, num_pixels: int | None) -> tuple[list[np.ndarray | None], list[str]]:
    """Parse every RLE of ``col``; returns runs per row (None when malformed) and the problems."""
    runs: list[np.ndarray | None] = []
    bad: list[str] = []
    for i, value in enumerate(ctx.sub[col].tolist()):
        try:
            runs.append(parse_rle(value, num_pixels))
        except SubmissionError as exc:
            runs.append(None)
            bad.append(f"{ctx.row(i)}: {col} {exc}")
    problems = [f"{len(bad)} malformed {col} value(s): {_listing(bad)}"] if bad else []
    return runs, problems


def _check_nyuv2_classes(ctx: _Context) -> tuple[np.ndarray | None, list[str]]:
    """ClassId integral in 1..13 and (ImageId, ClassId) unique.

    Returns the int class ids (None when some are missing / non-numeric: reported elsewhere).
    """
    values = pd.to_numeric(ctx.sub["ClassId"], errors="coerce").to_numpy(dtype=float)
    known = ~np.isnan(values)
    problems = []
    with np.errstate(invalid="ignore"):
        bad = known & ((values != np.round(values)) | (values < 1) | (values > NYUV2_NUM_CLASSES))
    if bad.any():
        problems.append(f"ClassId must be an integer in 1..{NYUV2_NUM_CLASSES} (0 = void is never written): "
                        f"{ctx.rows(np.flatnonzero(bad))}")
    pairs = pd.DataFrame({"i": ctx.ids.to_numpy(), "c": values})
    dup = np.flatnonzero(pairs.duplicated(keep=False).to_numpy() & known)
    if dup.size:
        problems.append(f"(ImageId, ClassId) pairs must be unique; duplicated in {ctx.rows(dup)}")
    castable = np.isfinite(values).all() and (np.abs(values) < 2.0**63).all()  # inf / 1e30: reported above
    return (values.astype(np.int64) if castable else None), problems


def _check_overlaps(ctx: _Context, runs: list[np.ndarray | None], classes: np.ndarray) -> list[str]:
    """Masks of one image's classes must not overlap (checked on runs, no pixel arrays)."""
    frame = pd.DataFrame({"img": ctx.ids.to_numpy(), "row": np.arange(len(runs))})
    bad = []
    for img, rows in frame.groupby("img", sort=True)["row"]:
        rows = [r for r in rows if runs[r] is not None and len(runs[r])]
        if len(rows) < 2:
            continue
        all_runs = np.concatenate([runs[r] for r in rows])
        owner = np.repeat([classes[r] for r in rows], [len(runs[r]) for r in rows])
        order = np.argsort(all_runs[:, 0], kind="stable")
        starts, owner = all_runs[order, 0], owner[order]
        ends = starts + all_runs[order, 1] - 1
        # Sorted by start, any overlap shows up between neighbours: s[k+1] <= e[k].
        hit = np.flatnonzero(starts[1:] <= ends[:-1])
        if hit.size:
            k = int(hit[0])
            bad.append(f"ImageId={img}: masks of ClassId {owner[k]} and {owner[k + 1]} overlap "
                       f"(from pixel {starts[k + 1]})")
    return [f"{len(bad)} image(s) have overlapping class masks: {_listing(bad)}"] if bad else []


def _check_nyuv2(ctx: _Context, image_shape: tuple[int, int]) -> list[str]:
    classes, problems = _check_nyuv2_classes(ctx)
    runs, rle_problems = _parse_rles(ctx, "EncodedPixels", int(image_shape[0]) * int(image_shape[1]))
    problems += rle_problems
    if classes is not None:
        problems += _check_overlaps(ctx, runs, classes)
    return problems


def _format_checks(ctx: _Context, sample: pd.DataFrame, image_shape: tuple[int, int] | None) -> list[str]:
    """Id / RLE / NYUv2 rules, depending on the sample's columns."""
    sample_ids = ids_as_str(sample[ctx.id_col])
    rle_cols = [c for c in sample.columns if RLE_MARK in c]
    is_nyuv2 = tuple(sample.columns) == NYUV2_COLUMNS
    if ctx.ids is None:
        return []
    if sample_ids.is_unique and not rle_cols:
        return _check_exact_ids(ctx, sample_ids)
    problems = _check_id_set(ctx, sample_ids)
    if is_nyuv2 and tuple(ctx.sub.columns) == NYUV2_COLUMNS:
        return problems + _check_nyuv2(ctx, image_shape or NYUV2_SHAPE)
    num_pixels = None if image_shape is None else int(image_shape[0]) * int(image_shape[1])
    for col in rle_cols:
        if col in ctx.sub.columns:
            problems += _parse_rles(ctx, col, num_pixels)[1]
    return problems


def _parsed(sub: pd.DataFrame, sample: pd.DataFrame, id_col: str) -> pd.DataFrame:
    """Typed copy: ids as str, numeric columns as numbers (int64 when integral), RLE '' for empty."""
    out = sub.copy()
    out[id_col] = ids_as_str(sub[id_col])
    for col in sample.columns:
        if col == id_col:
            continue
        if RLE_MARK in col:
            out[col] = sub[col].where(~_missing(sub[col]), "").astype(str)
        elif _is_numeric_column(sample[col]):
            num = pd.to_numeric(sub[col])
            # int64 only when exact: inf / 1e400 / values past int64 stay float (casting them
            # raised IntCastingNaNError or wrapped around).
            if pd.api.types.is_float_dtype(num) and np.isfinite(num).all() and (num == num.round()).all() \
                    and (num.abs() < 2.0**63).all():
                num = num.astype(np.int64)
            out[col] = num
    return out


def validate(csv: CsvLike, sample_csv: CsvLike, *, image_shape: tuple[int, int] | None = None) -> pd.DataFrame:
    """Check a submission against the sample submission; return the parsed (typed) frame.

    Args:
        csv: submission CSV path or DataFrame.
        sample_csv: the competition's sample submission (path or DataFrame).
        image_shape: (H, W) that RLE masks must fit (default 480x640 for the NYUv2 format).
    Raises:
        SubmissionError: listing all problems found (``.problems`` holds them one per line).
        FileNotFoundError: a path does not exist.
    """
    sample, _ = _load(sample_csv, "sample submission")
    sub, name = _load(csv, "submission")
    if sample.shape[1] == 0:
        raise SubmissionError("sample submission has no columns")
    id_col = sample.columns[0]
    class_col = "ClassId" if tuple(sample.columns) == NYUV2_COLUMNS else None
    ctx = _Context(sub, id_col, class_col)
    problems = _check_columns(sub, sample)
    if len(sub) == 0:
        problems.append(f"submission has no rows (the sample has {len(sample)})")
    problems += _check_cells(ctx, sample)
    problems += _format_checks(ctx, sample, image_shape)
    if problems:
        header = f"{name} has {len(problems)} problem(s):"
        raise SubmissionError("\n".join([header] + [f"  - {p}" for p in problems]), problems)
    return _parsed(sub, sample, id_col)


def write_submission(df: pd.DataFrame, path: str | os.PathLike, sample_csv: CsvLike, *,
                     overwrite: bool = False, **validate_kwargs: Any) -> Path:
    """Validate ``df`` against ``sample_csv`` and write it atomically to ``path``.

    Nothing is written when validation fails (:class:`SubmissionError`) or when ``path`` exists
    and ``overwrite`` is False (:class:`FileExistsError`).
    """
    parsed = validate(df, sample_csv, **validate_kwargs)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True or choose a new file name")
    return save_csv(path, parsed)
