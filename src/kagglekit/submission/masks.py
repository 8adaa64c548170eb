"""Configurable Kaggle mask submissions: per-class or binary RLE rows, writer, decoder, validator.

A :class:`MaskFormat` describes one competition's layout:

- ``layout="per_class"``: one row per (image, class) with the RLE of that class's pixels; the class
  in its own column (``ImageId,ClassId,EncodedPixels``) or folded into the id
  (``combined_id="{image}_{class}"`` → ``ImageId_ClassId,EncodedPixels``).
  ``empty="omit"``: a class absent from an image gets no row (an image with no class at all still
  gets one row, first class + empty RLE, so that it appears in the file); ``empty="blank"``: every
  (image, class) has a row, absent classes with an empty RLE.
- ``layout="binary"``: one row per image, the RLE of every non-background pixel (an empty mask is
  a row with an empty RLE).
- ``order``: pixel numbering, ``"F"`` column-major (top to bottom, then left to right: most
  competitions) or ``"C"`` row-major; ``start``: the number of the first pixel (1 on Kaggle, or 0).

RLE = space-separated ``start length`` pairs, starts ascending, runs not overlapping, every run
inside its own image's H*W pixels. Label maps hold **competition** class ids (not model indices).

Presets (:data:`PRESETS`):

- ``nyuv2``: ``ImageId,ClassId,EncodedPixels``, per class, omit, column-major, 1-based (the NYUv2
  13-class format of :mod:`kagglekit.submission.nyuv2`; also Severstal's later ``train.csv``).
- ``severstal``: Severstal Steel Defect Detection submission, ``ImageId_ClassId,EncodedPixels``
  (``0000f269f.jpg_1``), a blank row for every image × class 1..4, column-major, 1-based.
- ``binary``: TGS Salt Identification, ``id,rle_mask``, one row per image, column-major, 1-based.
- ``carvana``: Carvana Image Masking, ``img,rle_mask``, one row per image, **row-major**, 1-based.

Airbus Ship Detection (``ImageId,EncodedPixels``) is **per instance** in reality: one row per ship,
one empty row for an image without ships. ``MaskFormat(layout="binary")`` with those columns writes
the union of all ships as a single row, which that metric scores as one object: split instances
first (not covered here).

Validation (:func:`mask_submission_problems`) lists every problem, at most ``MAX_LISTED`` examples
per kind plus a count of the rest; row numbers are 1-based data rows (CSV line = row + 1).
"""
from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from kagglekit.submission.rle import SubmissionError, runs_from_flat
from kagglekit.submission.validate import _check_columns, _listing, _missing, id_coverage_problems, ids_as_str

__all__ = [
    "PRESETS",
    "MaskFormat",
    "decode_mask_submission",
    "encode_mask_rows",
    "mask_submission",
    "mask_submission_problems",
    "sample_mask_submission",
]

_MAX_VALUE = 2**53  # far above any image size; larger tokens would saturate int64 parsing


@dataclass(frozen=True)
class MaskFormat:
    """A Kaggle mask-submission layout (see the module docstring and :data:`PRESETS`).

    ``combined_id``: a template with ``{image}`` and ``{class}`` (``"{image}_{class}"``); its
    column is the non-RLE column of ``columns`` (default ``id_column``). Raises ValueError on an
    inconsistent combination (e.g. a combined id with a class column, a binary layout with a class).
    """

    layout: Literal["per_class", "binary"] = "per_class"
    id_column: str = "ImageId"
    class_column: str = "ClassId"
    combined_id: str = ""
    rle_column: str = "EncodedPixels"
    order: Literal["F", "C"] = "F"
    start: int = 1
    empty: Literal["omit", "blank"] = "omit"
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, value, allowed in (("layout", self.layout, ("per_class", "binary")), ("order", self.order, ("F", "C")),
                                     ("start", self.start, (0, 1)), ("empty", self.empty, ("omit", "blank"))):
            if value not in allowed:
                raise ValueError(f"MaskFormat.{name}={value!r}; expected one of {list(allowed)}")
        if self.layout == "binary" and self.combined_id:
            raise ValueError("MaskFormat: a binary layout has no class to fold into the id; set combined_id=''")
        if self.layout == "per_class" and bool(self.combined_id) == bool(self.class_column):
            raise ValueError("MaskFormat: per_class needs exactly one of class_column (separate columns) and "
                             "combined_id (class folded into the id; then class_column='')")
        if self.combined_id:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.combined_id) if f is not None]
            if sorted(fields) != ["class", "image"]:
                raise ValueError(f"MaskFormat.combined_id={self.combined_id!r} must hold '{{image}}' and '{{class}}' once each")
        derived = self._derived_columns()
        if self.columns and (len(self.columns) != len(derived) or self.rle_column not in self.columns
                             or (not self.combined_id and sorted(self.columns) != sorted(derived))):
            raise ValueError(f"MaskFormat.columns={list(self.columns)} must be an ordering of {list(derived)}"
                             + (" (the combined id column may be renamed)" if self.combined_id else ""))
        if len(set(self.column_names())) != len(self.column_names()):
            raise ValueError(f"MaskFormat: column names must differ, got {list(self.column_names())}")

    def _derived_columns(self) -> tuple[str, ...]:
        if self.layout == "binary" or self.combined_id:
            return (self.id_column, self.rle_column)
        return (self.id_column, self.class_column, self.rle_column)

    def column_names(self) -> tuple[str, ...]:
        """The exact column order of a submission frame."""
        return tuple(self.columns) if self.columns else self._derived_columns()

    def key_column(self) -> str:
        """The column holding the image id (the combined image+class id when ``combined_id``)."""
        if self.combined_id:
            return next(c for c in self.column_names() if c != self.rle_column)
        return self.id_column

    def id_key(self, image_id: str, class_id: int) -> str:
        """Combined id of (image, class), e.g. ``"0000f269f.jpg_1"``."""
        return self.combined_id.format(image=image_id, **{"class": int(class_id)})

    def parse_id(self, key: str) -> tuple[str, str] | None:
        """Combined id → (image id, class text); None when ``key`` does not match the template."""
        match = _template_regex(self.combined_id).fullmatch(key)
        return None if match is None else (match.group("image"), match.group("cls"))


def _template_regex(template: str) -> re.Pattern[str]:
    """``"{image}_{class}"`` → regex; the image part is greedy, so ids may hold the separator."""
    parts = []
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append("(?P<image>.+)" if field == "image" else "(?P<cls>.*?)")
    return re.compile("".join(parts), re.DOTALL)


PRESETS: dict[str, MaskFormat] = {
    # NYUv2 13 classes (kagglekit.submission.nyuv2): ImageId,ClassId,EncodedPixels, one row per class present.
    "nyuv2": MaskFormat(),
    # Severstal Steel Defect Detection submission: ImageId_ClassId (0000f269f.jpg_1),EncodedPixels, a row for
    # every image x class 1..4 (empty RLE = no defect), 256x1600 images, column-major, 1-based.
    "severstal": MaskFormat(class_column="", combined_id="{image}_{class}", empty="blank",
                            columns=("ImageId_ClassId", "EncodedPixels")),
    # TGS Salt Identification: id,rle_mask, one row per 101x101 image, column-major, 1-based.
    "binary": MaskFormat(layout="binary", id_column="id", rle_column="rle_mask"),
    # Carvana Image Masking Challenge: img,rle_mask, one row per image, row-major (!), 1-based.
    "carvana": MaskFormat(layout="binary", id_column="img", rle_column="rle_mask", order="C"),
}


# --------------------------------------------------------------------------------------- writer

def _as_label_map(image_id: str, label_map: np.ndarray) -> np.ndarray:
    label_map = np.asarray(label_map)
    if label_map.ndim != 2 or label_map.dtype.kind not in "iub":
        raise ValueError(f"image {image_id}: label map must be a 2-D (H, W) integer array, "
                         f"got {label_map.dtype} {label_map.shape}")
    return label_map


def _class_table(class_ids: Sequence[int], background: int | None) -> np.ndarray:
    """(K,) int64 competition class ids; unique integers, background not among them."""
    ids = list(class_ids)
    if not ids or any(isinstance(c, bool) or int(c) != c for c in ids):
        raise ValueError(f"class_ids must be a non-empty sequence of integers, got {ids[:20]}")
    table = np.array([int(c) for c in ids], np.int64)
    if len(np.unique(table)) != len(table):
        raise ValueError(f"class_ids must be unique, got {table.tolist()[:20]}")
    if background is not None and int(background) in table:
        raise ValueError(f"background {background} is also a class id; pixels equal to background are never written")
    return table


def _value_runs(label_map: np.ndarray, order: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximal runs of one value in the flattened map: (R,) 0-based starts, lengths, int64 values."""
    flat = np.ravel(label_map, order=order)
    if flat.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    lengths = np.diff(np.append(starts, flat.size))
    return starts, lengths, flat[starts].astype(np.int64)


def _rle_text(starts0: np.ndarray, lengths: np.ndarray, start: int) -> str:
    """``"start length ..."`` of (R,) 0-based starts and lengths, numbered from ``start``."""
    return " ".join(map(str, np.column_stack((starts0 + start, lengths)).ravel().tolist()))


def _class_rles(image_id: str, label_map: np.ndarray, table: np.ndarray, fmt: MaskFormat,
                background: int | None) -> dict[int, str]:
    """Class id → RLE for every class present (one split into runs, one stable sort by value).

    Neighbouring runs always differ in value, so no two runs of one class touch: each class's runs
    are its RLE as they are.
    """
    starts, lengths, values = _value_runs(label_map, fmt.order)
    present = np.unique(values)
    allowed = table if background is None else np.append(table, int(background))
    unexpected = present[~np.isin(present, allowed)]
    if unexpected.size:
        raise ValueError(f"image {image_id}: label map holds {_listing(unexpected.tolist())}, neither class ids "
                         f"{_listing(table.tolist())} nor background {background} (competition ids, not model indices?)")
    # Stable sort of the runs by value; a value range under 2**16 sorts as uint16 (radix sort, ~7x faster).
    narrow = len(present) > 0 and int(present[-1] - present[0]) < 2**16
    by_value = np.argsort((values - present[0]).astype(np.uint16) if narrow else values, kind="stable")
    sorted_values = values[by_value]
    lo, hi = np.searchsorted(sorted_values, table, "left"), np.searchsorted(sorted_values, table, "right")
    return {int(c): _rle_text(starts[by_value[a:b]], lengths[by_value[a:b]], fmt.start)
            for c, a, b in zip(table.tolist(), lo.tolist(), hi.tolist()) if b > a}


def _row(fmt: MaskFormat, image_id: str, class_id: int | None, rle: str) -> dict[str, object]:
    if fmt.layout == "binary":
        return {fmt.id_column: image_id, fmt.rle_column: rle}
    if fmt.combined_id:
        return {fmt.key_column(): fmt.id_key(image_id, class_id), fmt.rle_column: rle}
    return {fmt.id_column: image_id, fmt.class_column: int(class_id), fmt.rle_column: rle}


def encode_mask_rows(image_id: str, label_map: np.ndarray, class_ids: Sequence[int], fmt: MaskFormat,
                     background: int | None = 0) -> list[dict[str, object]]:
    """Submission rows of one image, keyed by ``fmt.column_names()``.

    Args:
        image_id: the test image id (a string: leading zeros are kept).
        label_map: (H, W) integer array of **competition** class ids; pixels equal to
            ``background`` (void / unlabelled) are never written (None: every pixel is a class).
        class_ids: the competition ids that may be written, in class-table order (ignored by the
            binary layout).
    Returns:
        per_class: rows in ``class_ids`` order; "omit": classes present only, and an image with no
        class present gets ONE row (first class id, empty RLE) so that it appears in the file;
        "blank": every class. binary: one row, the RLE of ``label_map != background``.
    Raises:
        ValueError: a pixel value that is neither a class id nor background, a bad class table.
    """
    image_id = str(image_id)
    label_map = _as_label_map(image_id, label_map)
    if fmt.layout == "binary":
        if background is None:
            raise ValueError("a binary layout needs a background value (foreground = every other pixel)")
        runs = runs_from_flat(np.ravel(label_map != background, order=fmt.order))  # 1-based starts
        return [_row(fmt, image_id, None, _rle_text(runs[:, 0] - 1, runs[:, 1], fmt.start))]
    table = _class_table(class_ids, background)
    rles = _class_rles(image_id, label_map, table, fmt, background)
    if fmt.empty == "blank":
        classes = table.tolist()
    else:
        classes = [c for c in table.tolist() if c in rles] or [int(table[0])]
    return [_row(fmt, image_id, c, rles.get(c, "")) for c in classes]


def _frame(rows: list[dict[str, object]], fmt: MaskFormat) -> pd.DataFrame:
    """Typed frame: id columns str, class column int64, RLE str."""
    frame = pd.DataFrame(rows, columns=list(fmt.column_names()))
    types: dict[str, object] = {c: str for c in fmt.column_names()}
    if fmt.layout == "per_class" and not fmt.combined_id:
        types[fmt.class_column] = np.int64
    return frame.astype(types)


def mask_submission(image_ids: Sequence[str], label_maps: Iterable[np.ndarray], class_ids: Sequence[int],
                    fmt: MaskFormat, background: int | None = 0) -> pd.DataFrame:
    """Submission frame (columns ``fmt.column_names()``) of (H, W) label maps, in image order.

    Images may differ in size. With :data:`PRESETS` ``"nyuv2"``, class ids 1..13 and background 0
    this equals :func:`kagglekit.submission.nyuv2.nyuv2_submission` row for row, except for an
    image with no class at all (all void): nyuv2 writes no row for it, "omit" writes one row
    (first class id, empty RLE) so that every image appears in the file.

    Raises:
        ValueError: duplicated ids, as many label maps as ids not given, or a bad label map.
    """
    ids = [str(i) for i in image_ids]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i, n in pd.Series(ids).value_counts().items() if n > 1})
        raise ValueError(f"image_ids must be unique; duplicated: {_listing(dup)}")
    maps = iter(label_maps)
    rows: list[dict[str, object]] = []
    count = 0
    for image_id, label_map in zip(ids, maps):
        rows.extend(encode_mask_rows(image_id, label_map, class_ids, fmt, background))
        count += 1
    if count != len(ids) or next(maps, None) is not None:
        raise ValueError(f"got {len(ids)} image_ids but {'fewer' if count != len(ids) else 'more'} label maps")
    return _frame(rows, fmt)


def sample_mask_submission(sizes: Mapping[str, tuple[int, int]], class_ids: Sequence[int],
                           fmt: MaskFormat) -> pd.DataFrame:
    """A valid all-background (every mask empty) submission for the images of ``sizes`` (image id →
    (H, W)), for tests / demos and datasets without a sample submission."""
    if fmt.layout == "binary":
        return _frame([_row(fmt, str(i), None, "") for i in sizes], fmt)
    rows: list[dict[str, object]] = []
    table = _class_table(class_ids, None).tolist()
    classes = table if fmt.empty == "blank" else table[:1]
    for image_id in sizes:
        rows.extend(_row(fmt, str(image_id), c, "") for c in classes)
    return _frame(rows, fmt)


# ------------------------------------------------------------------------------------ validator

def _parse_runs(value: object, start: int) -> np.ndarray:
    """(R, 2) int64 (0-based start, length) runs of one RLE cell, well formed (bounds not checked).

    None / NaN / blank = empty mask. Raises SubmissionError saying what is wrong otherwise.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return np.zeros((0, 2), np.int64)
    if not isinstance(value, str):
        raise SubmissionError(f"is {type(value).__name__} {value!r}, not a string of integers")
    body = value.strip()
    if not body:
        return np.zeros((0, 2), np.int64)
    if not (body.isascii() and body.replace(" ", "").isdigit()):
        bad = next((t for t in body.split(" ") if t and not (t.isascii() and t.isdigit())), None)
        raise SubmissionError(f"holds {bad!r}, expected non-negative integers separated by spaces"
                              if bad else "uses a separator other than spaces")
    if any(len(t) > 16 for t in body.split()):
        raise SubmissionError("holds a value too large to be a pixel number")
    values = np.fromstring(body, dtype=np.int64, sep=" ")
    if values.size % 2:
        raise SubmissionError(f"has an odd number of values ({values.size}); expected 'start length' pairs")
    runs = values.reshape(-1, 2)
    if (runs[:, 0] < start).any():
        raise SubmissionError(f"has start {int(runs[runs[:, 0] < start][0, 0])} < {start} (first pixel is {start})")
    if (runs[:, 1] < 1).any():
        k = int(np.flatnonzero(runs[:, 1] < 1)[0])
        raise SubmissionError(f"run {k + 1} (start {int(runs[k, 0])}) has length {int(runs[k, 1])}; lengths must be >= 1")
    ends = runs[:, 0] + runs[:, 1] - 1
    bad = np.flatnonzero(runs[1:, 0] <= ends[:-1])
    if bad.size:
        k = int(bad[0])
        raise SubmissionError(f"runs not ascending / overlapping: run {k + 2} starts at {int(runs[k + 1, 0])} but "
                              f"run {k + 1} covers {int(runs[k, 0])}..{int(ends[k])}")
    return runs - np.array([start, 0], np.int64)


@dataclass
class _Rows:
    """Per data row: image id (None: unusable), class id (None: unusable / binary), runs (None: malformed)."""

    images: list[str | None]
    classes: list[int | None]
    runs: list[np.ndarray | None]
    labels: list[str]  # "row 3 (ImageId=a, ClassId=18)"


def _row_labels(frame: pd.DataFrame, fmt: MaskFormat) -> list[str]:
    keys = ids_as_str(frame[fmt.key_column()]).tolist()
    if fmt.layout == "binary" or fmt.combined_id:
        return [f"row {i + 1} ({fmt.key_column()}={k})" for i, k in enumerate(keys)]
    classes = ids_as_str(frame[fmt.class_column]).tolist()
    return [f"row {i + 1} ({fmt.id_column}={k}, {fmt.class_column}={c})" for i, (k, c) in enumerate(zip(keys, classes))]


def _rows_problem(what: str, labels: list[str], idx: Iterable[int]) -> list[str]:
    idx = list(idx)
    return [f"{what}: {len(idx)} row(s): {_listing(labels[i] for i in idx)}"] if idx else []


def _split_keys(frame: pd.DataFrame, fmt: MaskFormat) -> tuple[list[str | None], list[str | None], list[int]]:
    """(image id per row, class text per row, rows whose combined id does not parse); None = empty / unusable."""
    keys = ids_as_str(frame[fmt.key_column()]).tolist()
    empty = _missing(frame[fmt.key_column()])
    if fmt.layout == "binary":
        return [None if e else k for k, e in zip(keys, empty)], [None] * len(keys), []
    if not fmt.combined_id:
        classes = ids_as_str(frame[fmt.class_column]).tolist()
        return [None if e else k for k, e in zip(keys, empty)], [c or None for c in classes], []
    parsed = [None if e else fmt.parse_id(k) for k, e in zip(keys, empty)]
    unparsed = [i for i, (p, e) in enumerate(zip(parsed, empty)) if p is None and not e]
    return [p and p[0] for p in parsed], [p[1] or None if p else None for p in parsed], unparsed


def _key_problems(frame: pd.DataFrame, fmt: MaskFormat, class_ids: Sequence[int] | None,
                  labels: list[str]) -> tuple[list[str | None], list[int | None], list[str]]:
    """Empty ids / classes, combined ids that do not parse, non-integer classes, classes not in the table.

    Returns (image id per row, int class id per row (None: unusable or binary), problems).
    """
    images, texts, unparsed = _split_keys(frame, fmt)
    key = fmt.key_column()
    problems = _rows_problem(f"column '{key}' is empty", labels, np.flatnonzero(_missing(frame[key])))
    problems += _rows_problem(f"{key} does not match {fmt.combined_id!r}", labels, unparsed)
    if fmt.layout == "binary":
        return images, [None] * len(images), problems
    what = fmt.class_column or f"class part of {key}"
    usable = [i for i, (img, t) in enumerate(zip(images, texts)) if img is not None or not fmt.combined_id]
    problems += _rows_problem(f"{what} is empty", labels, [i for i in usable if texts[i] is None])
    table = None if class_ids is None else {int(c) for c in class_ids}
    classes = [None if t is None else _as_int(t, strict=bool(fmt.combined_id)) for t in texts]
    not_int = [i for i, (t, c) in enumerate(zip(texts, classes)) if t is not None and c is None]
    not_listed = [i for i, c in enumerate(classes) if c is not None and table is not None and c not in table]
    problems += _rows_problem(f"{what} must be an integer", labels, not_int)
    problems += _rows_problem(f"{what} not in the class table {_listing(sorted(table or []))}", labels, not_listed)
    dropped = set(not_listed)
    return images, [None if i in dropped else c for i, c in enumerate(classes)], problems


def _as_int(text: object, strict: bool) -> int | None:
    """Integer value of a class cell; ``strict`` (inside a combined id): canonical digits only."""
    text = str(text).strip()
    if re.fullmatch(r"-?\d{1,16}", text):
        return int(text) if not strict or str(int(text)) == text else None
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if not strict and math.isfinite(number) and number == int(number) else None


def _rle_problems(frame: pd.DataFrame, fmt: MaskFormat, images: list[str | None],
                  sizes: Mapping[str, tuple[int, int]] | None, labels: list[str]) -> tuple[list, list[str]]:
    """Parse every RLE: malformed ones, runs past their own image's H*W, empty where not allowed."""
    runs: list[np.ndarray | None] = []
    malformed, past = [], []
    col = fmt.rle_column
    for i, value in enumerate(frame[col].tolist()):
        try:
            r = _parse_runs(value, fmt.start)
        except SubmissionError as exc:
            runs.append(None)
            malformed.append(f"{labels[i]}: {col} {exc}")
            continue
        size = None if sizes is None or images[i] is None else sizes.get(images[i])
        if size is not None and len(r) and r[-1, 0] + r[-1, 1] > int(size[0]) * int(size[1]):
            n = int(size[0]) * int(size[1])
            past.append(f"{labels[i]}: run {len(r)} ends at pixel {int(r[-1, 0] + r[-1, 1] - 1 + fmt.start)}, "
                        f"image {images[i]} is {int(size[0])}x{int(size[1])} = {n} pixels")
            r = None
        runs.append(r)
    problems = [f"{len(malformed)} malformed {col} value(s): {_listing(malformed)}"] if malformed else []
    problems += [f"{len(past)} {col} value(s) run past their image: {_listing(past)}"] if past else []
    return runs, problems


def _empty_rle_problems(fmt: MaskFormat, images: list[str | None], runs: list, labels: list[str]) -> list[str]:
    """per_class "omit": an empty RLE only as an image's single row (an image with no class at all)."""
    if fmt.layout != "per_class" or fmt.empty != "omit":
        return []
    counts = pd.Series([i for i in images if i is not None]).value_counts()
    bad = [i for i, (img, r) in enumerate(zip(images, runs))
           if img is not None and r is not None and not len(r) and counts[img] > 1]
    return _rows_problem(f"empty {fmt.rle_column} although the format omits absent classes (only an image "
                         "with no class at all has one row with an empty mask)", labels, bad)


def _uniqueness_problems(fmt: MaskFormat, images: list[str | None], classes: list[int | None],
                         labels: list[str]) -> list[str]:
    """binary: one row per image; per_class: (image, class) unique."""
    if fmt.layout == "binary":
        keys = pd.Series([i for i in images], dtype=object)
        what = "one row per image; several rows for the same image"
    else:
        keys = pd.Series([None if i is None or c is None else (i, c) for i, c in zip(images, classes)], dtype=object)
        what = "(image, class) pairs must be unique; duplicated"
    dup = keys.notna().to_numpy() & keys.duplicated(keep=False).to_numpy()
    return _rows_problem(what, labels, np.flatnonzero(dup))


def _blank_problems(fmt: MaskFormat, images: list[str | None], classes: list[int | None],
                    sizes: Mapping[str, tuple[int, int]] | None, class_ids: Sequence[int] | None) -> list[str]:
    """empty="blank": every (image, class) has a row (images present in the file and in ``sizes``)."""
    if fmt.layout != "per_class" or fmt.empty != "blank":
        return []
    table = sorted({int(c) for c in class_ids} if class_ids is not None else {c for c in classes if c is not None})
    have = {(i, c) for i, c in zip(images, classes) if i is not None and c is not None}
    wanted = [i for i in dict.fromkeys(images) if i is not None and (sizes is None or i in sizes)]
    missing = [f"({i}, {c})" for i in wanted for c in table if (i, c) not in have]
    return [f"empty='blank' needs a row for every (image, class); {len(missing)} missing: "
            f"{_listing(missing)}"] if missing else []


def _overlap_problems(fmt: MaskFormat, images: list[str | None], classes: list[int | None], runs: list) -> list[str]:
    """per_class: one image's class masks must not overlap (on runs, no pixel arrays)."""
    keep = [k for k, (i, c, r) in enumerate(zip(images, classes, runs))
            if i is not None and c is not None and r is not None and len(r)]
    if fmt.layout != "per_class" or len(keep) < 2:
        return []
    codes, names = pd.factorize(pd.Series([images[k] for k in keep], dtype=object))
    all_runs = np.concatenate([runs[k] for k in keep])
    image = np.repeat(codes, [len(runs[k]) for k in keep])
    owner = np.repeat([classes[k] for k in keep], [len(runs[k]) for k in keep])
    order = np.lexsort((all_runs[:, 0], image))
    starts, image, owner = all_runs[order, 0], image[order], owner[order]
    ends = starts + all_runs[order, 1] - 1
    # Sorted by (image, start), any overlap shows up between neighbours of one image.
    hit = np.flatnonzero((image[1:] == image[:-1]) & (starts[1:] <= ends[:-1]))
    first = {}
    for k in hit.tolist():
        first.setdefault(int(image[k]), k)
    bad = [f"{names[img]}: classes {owner[k]} and {owner[k + 1]} from pixel {int(starts[k + 1]) + fmt.start}"
           for img, k in first.items()]
    return [f"{len(bad)} image(s) have overlapping class masks: {_listing(bad)}"] if bad else []


def _analyse(frame: pd.DataFrame, fmt: MaskFormat, sizes: Mapping[str, tuple[int, int]] | None,
             class_ids: Sequence[int] | None) -> tuple[list[str], _Rows | None]:
    """(every problem, the parsed rows; None when a required column is missing)."""
    frame = frame.reset_index(drop=True)
    sizes = None if sizes is None else {str(k): v for k, v in sizes.items()}
    expected = list(fmt.column_names())
    problems = _check_columns(frame, pd.DataFrame(columns=expected))
    if any(c not in frame.columns for c in expected):
        return problems, None
    labels = _row_labels(frame, fmt)
    images, classes, key_problems = _key_problems(frame, fmt, class_ids, labels)
    problems += key_problems
    if sizes is not None:
        present = pd.Series(sorted({i for i in images if i is not None}), dtype=str)
        problems += id_coverage_problems(present, [str(i) for i in sizes], "image")
    problems += _uniqueness_problems(fmt, images, classes, labels)
    problems += _blank_problems(fmt, images, classes, sizes, class_ids)
    runs, rle_problems = _rle_problems(frame, fmt, images, sizes, labels)
    problems += rle_problems
    problems += _empty_rle_problems(fmt, images, runs, labels)
    problems += _overlap_problems(fmt, images, classes, runs)
    return problems, _Rows(images, classes, runs, labels)


def mask_submission_problems(frame: pd.DataFrame, fmt: MaskFormat, sizes: Mapping[str, tuple[int, int]] | None,
                             class_ids: Sequence[int] | None) -> list[str]:
    """Every problem of a mask submission frame ([] when valid).

    Args:
        frame: the submission (e.g. ``pd.read_csv(path, dtype=str, keep_default_na=False)``).
        sizes: image id → (H, W) of every test image (None: no coverage / bound checks).
        class_ids: the class table (None: class ids need only be integers).
    Checks: exact columns (missing / extra / misordered named); empty id or class; per_class:
    class ids integers in ``class_ids``, (image, class) unique, combined ids match the template,
    "blank": every (image, class) present, "omit": an empty RLE only as an image's single row;
    binary: one row per image; every image of ``sizes`` present, none unknown; RLE well formed
    (pairs, lengths >= 1, ascending non-overlapping runs, starts >= ``fmt.start``) and inside its own
    image's H*W; per_class: one image's class masks do not overlap.
    """
    return _analyse(frame, fmt, sizes, class_ids)[0]


def _decode_image(rows: list[int], parsed: _Rows, size: tuple[int, int], fmt: MaskFormat,
                  background: int, dtype: np.dtype) -> np.ndarray:
    """(H, W) label map of one image from its (validated, non-overlapping) rows."""
    height, width = int(size[0]), int(size[1])
    n = height * width
    rows = [r for r in rows if len(parsed.runs[r])]
    delta = np.zeros(n + 1, np.int64)
    if rows:
        runs = np.concatenate([parsed.runs[r] for r in rows])
        value = np.repeat([(1 if fmt.layout == "binary" else parsed.classes[r]) - background for r in rows],
                          [len(parsed.runs[r]) for r in rows])
        delta[runs[:, 0]] += value  # starts are unique (runs do not overlap), so are ends
        delta[runs[:, 0] + runs[:, 1]] -= value
    flat = background + np.cumsum(delta[:-1])
    return np.ascontiguousarray(flat.astype(dtype).reshape((height, width), order=fmt.order))


def decode_mask_submission(frame: pd.DataFrame, sizes: Mapping[str, tuple[int, int]], fmt: MaskFormat,
                           background: int = 0, dtype: np.dtype | type = np.int32, *,
                           class_ids: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """Image id → (H, W) ``dtype`` label map of competition class ids (binary: 1 = foreground);
    pixels of no row are ``background``.

    ``sizes``: image id → (H, W) of every image of the file. ``class_ids`` (optional) also checks
    the class table. Raises SubmissionError listing every problem when the frame is invalid (see
    :func:`mask_submission_problems`), when a class id equals ``background`` or does not fit ``dtype``.
    """
    problems, parsed = _analyse(frame, fmt, sizes, class_ids)
    info = np.iinfo(dtype)
    if parsed is not None:
        values = {1} if fmt.layout == "binary" else {c for c in parsed.classes if c is not None}
        if background in values:
            problems.append(f"class id {background} equals the background value; pass another background")
        if out := sorted(v for v in values | {background} if not info.min <= v <= info.max):
            problems.append(f"class ids / background {_listing(out)} do not fit {np.dtype(dtype).name}")
    if problems:
        header = f"mask submission has {len(problems)} problem(s):"
        raise SubmissionError("\n".join([header] + [f"  - {p}" for p in problems]), problems)
    by_image: dict[str, list[int]] = {}
    for k, image in enumerate(parsed.images):
        by_image.setdefault(image, []).append(k)
    return {str(i): _decode_image(by_image.get(str(i), []), parsed, size, fmt, background, np.dtype(dtype))
            for i, size in sizes.items()}
