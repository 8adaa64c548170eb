"""Kaggle box submissions: one row per test image, an id column and a ``PredictionString`` of boxes
laid out by a template, with a writer, a parser (back to COCO results) and a validator that lists
every problem.

A :class:`BoxFormat` describes one competition's layout:

- ``template``: the tokens of ONE box, each a ``{field}`` or ``{field:format_spec}``, repeated per
  box (highest score first). Fields: ``cls`` (the class token), ``score``, corners ``x1 y1 x2 y2``
  (``x``/``y`` are ``x1``/``y1``), size ``w h``, centre ``cx cy``; x and y must each be
  determined (``x1+x2``, ``x1+w``, ``x2+w`` or ``cx+w``). Default ``"{cls} {score} {x1} {y1} {x2} {y2}"``
  (VinBigData / Open Images style, the format this module always wrote); Global Wheat is
  ``"{score} {x} {y} {w} {h}"``, a YOLO-style file ``"{cls} {score} {cx} {cy} {w} {h}"`` with
  ``coords="normalized"``. Default specs: score ``.5f``, pixel coordinates ``.1f``, normalised ``.6f``.
  Without ``{cls}`` the data must have one class; without ``{score}`` parsed boxes score 1.
- ``coords``: ``pixels`` (of the image as stored) or ``normalized`` (x / width, y / height).
- ``empty``: the cell of an image without boxes (``""``, or a token such as ``"none"``; then an
  empty cell is a problem).
- ``id_column`` / ``pred_column``: the two column names; ``image_id``: ``stem`` (file name without
  extension), ``file_name`` (with it) or ``id`` (the numeric image id).

The class token of each category comes from the caller (``classes``: ``{category_id: token}``, or a
list of category ids written as themselves): a task writes its competition's ids or names.
Validation (:func:`box_submission_problems`): columns, an empty id, each expected image exactly
once (missing / unknown / duplicated), the token count per template, every number finite, class
tokens known, score in [0, 1], boxes with area and inside their image (when sizes are known).
Row numbers are 1-based data rows (CSV line = row + 1).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union

import pandas as pd

from kagglekit.io import save_csv
from kagglekit.submission.rle import SubmissionError
from kagglekit.submission.validate import id_coverage_problems

DEFAULT_TEMPLATE = "{cls} {score} {x1} {y1} {x2} {y2}"
COLUMNS = ("image_id", "PredictionString")
TOKENS_PER_BOX = 6  # of the default template
FIELDS = ("cls", "score", "x1", "y1", "x2", "y2", "w", "h", "cx", "cy")
ALIASES = {"x": "x1", "y": "y1"}
MAX_LISTED = 50
_TOKEN = re.compile(r"\{([A-Za-z0-9_]+)(?::([^{}]*))?\}")
_AXES = {"x": (("x1", "x2"), ("x1", "w"), ("x2", "w"), ("cx", "w")), "y": (("y1", "y2"), ("y1", "h"), ("y2", "h"), ("cy", "h"))}
Classes = Union[Mapping[int, str], Sequence[int], None]


@dataclass(frozen=True)
class BoxFormat:
    """A Kaggle box-submission layout (see the module docstring). ValueError on a bad template."""

    template: str = DEFAULT_TEMPLATE
    id_column: str = "image_id"
    pred_column: str = "PredictionString"
    empty: str = ""
    image_id: Literal["stem", "file_name", "id"] = "stem"
    coords: Literal["pixels", "normalized"] = "pixels"

    def __post_init__(self) -> None:
        _ = self.fields  # parse now: a bad template fails where the format is made
        if self.image_id not in ("stem", "file_name", "id"):
            raise ValueError(f"image_id {self.image_id!r} unknown; use stem, file_name or id")
        if self.coords not in ("pixels", "normalized"):
            raise ValueError(f"coords {self.coords!r} unknown; use pixels or normalized")
        if not self.id_column or not self.pred_column or self.id_column == self.pred_column:
            raise ValueError(f"id_column {self.id_column!r} and pred_column {self.pred_column!r} must be two names")
        if len(self.empty.split()) > 1:
            raise ValueError(f"empty {self.empty!r} must be one token (or '')")

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """``((field, format spec), ...)`` of one box, aliases resolved, default specs filled in."""
        out: list[tuple[str, str]] = []
        for token in self.template.split():
            m = _TOKEN.fullmatch(token)
            name = ALIASES.get(m.group(1), m.group(1)) if m else None
            if name not in FIELDS:
                raise ValueError(f"submission template token {token!r} is not a {{field}}; fields: "
                                 f"{', '.join(FIELDS + tuple(ALIASES))} (e.g. {DEFAULT_TEMPLATE!r})")
            if name in (n for n, _ in out):
                raise ValueError(f"submission template {self.template!r} has {name} twice")
            out.append((name, m.group(2) if m.group(2) is not None else self._default_spec(name)))
        names = {n for n, _ in out}
        for axis, rules in _AXES.items():
            if not any(set(rule) <= names for rule in rules):
                raise ValueError(f"submission template {self.template!r} does not place boxes in {axis}: give "
                                 f"{' or '.join('+'.join(r) for r in rules)}")
        return tuple(out)

    def _default_spec(self, name: str) -> str:
        if name == "cls":
            return ""
        if name == "score":
            return ".5f"
        return ".6f" if self.coords == "normalized" else ".1f"

    @property
    def per_box(self) -> int:
        return len(self.fields)

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.fields)

    def key(self, image: Mapping[str, Any]) -> str:
        """The submission id of a COCO image record."""
        if self.image_id == "id":
            return str(int(image["id"]))
        name = Path(str(image["file_name"]))
        return name.name if self.image_id == "file_name" else name.stem


def image_key(image: dict[str, Any]) -> str:
    """The default submission id of a COCO image record: its file name's stem."""
    return Path(image["file_name"]).stem


def class_tokens(classes: Classes, results: Sequence[dict[str, Any]] = ()) -> dict[int, str]:
    """``{category_id: token}``; a list of ids (or None: the ids in ``results``) → the ids as text."""
    if isinstance(classes, Mapping):
        bad = {c: t for c, t in classes.items() if not t or len(str(t).split()) != 1 or str(t) != str(t).strip()}
        if bad:
            raise ValueError(f"class tokens {bad} are not single tokens; replace spaces (e.g. with '_')")
        return {int(c): str(t) for c, t in classes.items()}
    ids = classes if classes is not None else sorted({int(r["category_id"]) for r in results})
    return {int(c): str(int(c)) for c in ids}


# ----------------------------------------------------------------------------------- writer
def _values(bbox: Sequence[float], size: tuple[float, float] | None, fmt: BoxFormat) -> dict[str, float]:
    x, y, w, h = (float(v) for v in bbox)
    v = {"x1": x, "y1": y, "x2": x + w, "y2": y + h, "w": w, "h": h, "cx": x + w / 2, "cy": y + h / 2}
    if fmt.coords == "normalized":
        if size is None:
            raise ValueError("normalized coordinates need each image's width and height")
        sx, sy = float(size[0]), float(size[1])
        v = {k: val / (sx if k in ("x1", "x2", "w", "cx") else sy) for k, val in v.items()}
    return v


def format_box(result: dict[str, Any], token: str, fmt: BoxFormat, size: tuple[float, float] | None = None) -> str | None:
    """One COCO result as the template's tokens; None when its box has no area once written
    (a box narrower than the printed precision)."""
    values = {**_values(result["bbox"], size, fmt), "score": float(result["score"])}
    parts = [format(token, spec) if name == "cls" else format(values[name], spec) for name, spec in fmt.fields]
    x1, y1, x2, y2 = _corners(dict(zip((n for n, _ in fmt.fields), parts)))
    return " ".join(parts) if x2 > x1 and y2 > y1 else None


def _size(image: Mapping[str, Any]) -> tuple[float, float] | None:
    return (image["width"], image["height"]) if "width" in image and "height" in image else None


def boxes_frame(results: Sequence[dict[str, Any]], images: Sequence[dict[str, Any]], fmt: BoxFormat | None = None,
                classes: Classes = None) -> pd.DataFrame:
    """COCO results (``bbox`` xywh, ``category_id``, ``score``) → one row per image of ``images``
    (boxes by descending score; a box with no area once rounded is left out)."""
    fmt = fmt or BoxFormat()
    tokens = class_tokens(classes, results)
    if not fmt.has("cls") and len(tokens) > 1:
        raise ValueError(f"submission template {fmt.template!r} has no {{cls}} but there are {len(tokens)} classes")
    by_id = {int(im["id"]): im for im in images}
    strings: dict[int, list[str]] = {i: [] for i in by_id}
    for r in sorted(results, key=lambda r: -float(r["score"])):
        image = by_id[int(r["image_id"])]
        text = format_box(r, tokens.get(int(r["category_id"]), str(r["category_id"])), fmt, _size(image))
        if text is not None:
            strings[int(image["id"])].append(text)
    return pd.DataFrame({fmt.id_column: [fmt.key(im) for im in images],
                         fmt.pred_column: [" ".join(strings[int(im["id"])]) or fmt.empty for im in images]})


def write_box_submission(results: Sequence[dict[str, Any]], images: Sequence[dict[str, Any]], classes: Classes,
                         path: Path, fmt: BoxFormat | None = None) -> Path:
    """Validate, then write atomically (nothing is written when a problem is found)."""
    fmt = fmt or BoxFormat()
    frame = boxes_frame(results, images, fmt, classes)
    sizes = {fmt.key(im): _size(im) for im in images if _size(im) is not None}
    problems = box_submission_problems(frame, [fmt.key(im) for im in images], classes, fmt, sizes)
    if problems:
        raise SubmissionError("\n".join([f"{path} would have {len(problems)} problem(s):", *problems]), problems)
    return save_csv(path, frame)


def read_box_submission(path: Path, fmt: BoxFormat | None = None) -> pd.DataFrame:
    """The CSV as text cells (no NaN conversion: an empty cell stays ``""``)."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


# ----------------------------------------------------------------------------------- parsing / checks
def _corners(v: Mapping[str, Any]) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) from whichever fields the template has (values or number strings)."""
    f = {k: float(val) for k, val in v.items() if k not in ("cls", "score")}
    out = []
    for lo, hi, c, s in (("x1", "x2", "cx", "w"), ("y1", "y2", "cy", "h")):
        if lo in f and hi in f:
            out += [f[lo], f[hi]]
        elif lo in f:
            out += [f[lo], f[lo] + f[s]]
        elif hi in f:
            out += [f[hi] - f[s], f[hi]]
        else:
            out += [f[c] - f[s] / 2, f[c] + f[s] / 2]
    return out[0], out[2], out[1], out[3]


def _class_lookup(tokens: Mapping[int, str]) -> dict[str, int]:
    """token → category id; integer tokens also match their numeric spelling (``3.0``)."""
    return {t: c for c, t in tokens.items()}


def _category(token: str, lookup: Mapping[str, int]) -> int | None:
    if token in lookup:
        return lookup[token]
    try:
        value = float(token)
    except ValueError:
        return None
    return lookup.get(str(int(value))) if math.isfinite(value) and value.is_integer() else None


def _box_problem(fields: Mapping[str, str], lookup: Mapping[str, int], fmt: BoxFormat,
                 size: tuple[float, float] | None) -> str | None:
    """What is wrong with one box's tokens (None: nothing)."""
    numbers = {}
    for name, token in fields.items():
        if name == "cls":
            continue
        try:
            numbers[name] = float(token)
        except ValueError:
            return f"{name} {token[:20]!r} is not a number"
        if not math.isfinite(numbers[name]):
            return f"{name} {token!r}: NaN/inf"
    if "cls" in fields and _category(fields["cls"], lookup) is None:
        return f"class {fields['cls'][:20]} not in {sorted(lookup)[:20]}"
    if "score" in numbers and not 0 <= numbers["score"] <= 1:
        return f"score {numbers['score']:g} outside [0, 1]"
    x1, y1, x2, y2 = _corners(numbers)
    if x2 <= x1 or y2 <= y1:
        return "x_max/y_max must exceed x_min/y_min (the box has no area)"
    if size is not None:
        w, h = (1.0, 1.0) if fmt.coords == "normalized" else (float(size[0]), float(size[1]))
        tol = 1e-6 * max(w, h)
        if x1 < -tol or y1 < -tol or x2 > w + tol or y2 > h + tol:
            return f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] outside the {size[0]}x{size[1]} image"
    return None


def _row_problems(row: int, text: str, lookup: Mapping[str, int], fmt: BoxFormat,
                  size: tuple[float, float] | None) -> list[str]:
    if text.strip() == fmt.empty.strip():
        return []
    if not text.strip():
        return [f"row {row}: empty {fmt.pred_column}; an image without boxes is written {fmt.empty!r}"]
    tokens, names, k = text.split(), [n for n, _ in fmt.fields], fmt.per_box
    if len(tokens) % k:
        return [f"row {row}: {len(tokens)} tokens, not a multiple of {k} ({fmt.template})"]
    problems = []
    for b in range(0, len(tokens), k):
        problem = _box_problem(dict(zip(names, tokens[b:b + k])), lookup, fmt, size)
        if problem:
            problems.append(f"row {row} box {b // k + 1}: {problem}")
    return problems


def box_submission_problems(frame: pd.DataFrame, image_ids: Sequence[str], classes: Classes,
                            fmt: BoxFormat | None = None, sizes: Mapping[str, tuple[float, float]] | None = None) -> list[str]:
    """Every problem of ``frame`` against the expected ``image_ids`` (each exactly once), the class
    tokens ``classes`` and, when given, each image's ``(width, height)`` by id."""
    fmt = fmt or BoxFormat()
    wanted = [fmt.id_column, fmt.pred_column]
    if missing := [c for c in wanted if c not in frame.columns]:
        return [f"columns are {list(frame.columns)}; expected {wanted} (missing {missing})"]
    problems = [] if list(frame.columns) == wanted else [f"columns are {list(frame.columns)}; expected {wanted}"]
    ids = frame[fmt.id_column].fillna("").astype(str)
    empty = ids.str.strip() == ""
    problems += [f"row {i + 1}: empty {fmt.id_column}" for i in empty.to_numpy().nonzero()[0]]
    problems += id_coverage_problems(ids[~empty], image_ids, fmt.id_column)
    lookup = _class_lookup(class_tokens(classes))
    for i, (key, text) in enumerate(zip(ids, frame[fmt.pred_column].fillna("").astype(str)), start=1):
        problems += _row_problems(i, text, lookup, fmt, (sizes or {}).get(key))
    if len(problems) > MAX_LISTED:
        problems = problems[:MAX_LISTED] + [f"… and {len(problems) - MAX_LISTED} more problem(s)"]
    return problems


def parse_box_submission(frame: pd.DataFrame, images: Sequence[dict[str, Any]], classes: Classes,
                         fmt: BoxFormat | None = None) -> list[dict[str, Any]]:
    """A VALID submission (see :func:`box_submission_problems`) → COCO results on ``images``
    (pixel ``bbox`` xywh; score 1 without ``{score}``; the one category without ``{cls}``)."""
    fmt = fmt or BoxFormat()
    tokens = class_tokens(classes)
    lookup, names, k = _class_lookup(tokens), [n for n, _ in fmt.fields], fmt.per_box
    by_key = {fmt.key(im): im for im in images}
    results = []
    for key, text in zip(frame[fmt.id_column].astype(str), frame[fmt.pred_column].fillna("").astype(str)):
        image, parts = by_key[key], ([] if text.strip() == fmt.empty.strip() else text.split())
        sx, sy = (float(image["width"]), float(image["height"])) if fmt.coords == "normalized" else (1.0, 1.0)
        for b in range(0, len(parts), k):
            box = dict(zip(names, parts[b:b + k]))
            x1, y1, x2, y2 = _corners(box)
            cat = _category(box["cls"], lookup) if "cls" in box else next(iter(tokens))
            results.append({"image_id": int(image["id"]), "category_id": int(cat), "score": float(box.get("score", 1.0)),
                            "bbox": [x1 * sx, y1 * sy, (x2 - x1) * sx, (y2 - y1) * sy]})
    return results
