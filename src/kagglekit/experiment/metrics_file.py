"""``metrics.json`` with its large arrays beside it.

A fold's or an experiment's metrics hold a few arrays too big to read inline (segmentation keeps
one (C, C) confusion matrix per temperature; 10 matrices of 13×13 were ~2000 lines of JSON, one
number per line). :func:`save_metrics` writes every numeric matrix (2-D or more) with more
than :data:`INLINE_LIMIT` numbers, and every confusion matrix (a 2-D array under a key
containing ``confusion``) whatever its size, as ``<key path>.npy`` (exact) + ``<key path>.csv`` (for people: rows and
columns labelled with the class names when the metrics name the classes) in the folder
``<stem>_arrays/`` beside the JSON, which keeps a small reference in its place::

    "confusion_by_temperature": {
      "1": {"$array": "metrics_arrays/confusion_by_temperature.1.npy",
            "csv": "metrics_arrays/confusion_by_temperature.1.csv", "shape": [13, 13], "dtype": "int64"}}

The JSON itself is indented, with short lists and flat dicts of scalars kept on one line and
long lists of scalars wrapped several to a line. Vectors stay inline whatever their length:
they are decisions other readers take from the JSON as it is (``thresholds`` of a multi-label
task with many attributes, per-fold scores), and wrapped they read fine.
Arrays are written first and ``metrics.json`` last (its presence still means "done"); array
files of an earlier write that the new JSON no longer references are removed. :func:`load_metrics` reads both
layouts: references become ``np.ndarray`` again, old inline lists stay lists.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from kagglekit.io import load_json, save_csv, save_npy, write_text

ARRAY_KEY = "$array"
INLINE_LIMIT = 50  # numeric matrices with more numbers than this go to .npy + .csv
LINE_WIDTH = 100  # a list / flat dict of scalars whose JSON fits in this many characters stays on one line
_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]")


def _as_numeric_array(value: Any) -> np.ndarray | None:
    """``value`` as an int64 / float64 array when it is a rectangular all-number (nested) list or
    a numeric ndarray; None otherwise (strings, None entries, ragged lists, bools, scalars)."""
    if isinstance(value, np.ndarray):
        return value if value.dtype.kind in "iuf" and value.ndim >= 1 else None
    if not isinstance(value, (list, tuple)) or not value:
        return None
    try:
        array = np.asarray(value)
    except ValueError:  # ragged
        return None
    if array.dtype.kind not in "iuf" or array.dtype == object:
        return None
    if any(isinstance(v, bool) for v in _flat(value)):
        return None
    return array.astype(np.int64 if array.dtype.kind in "iu" else np.float64)


def _flat(value: Any) -> Sequence[Any]:
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], (list, tuple)):
        return [x for v in value for x in _flat(v)]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def goes_to_file(path: Sequence[str], array: np.ndarray, limit: int = INLINE_LIMIT) -> bool:
    """A matrix (2-D or more) of more than ``limit`` numbers, or one under a ``*confusion*`` key."""
    return array.ndim >= 2 and (array.size > limit or any("confusion" in p.lower() for p in path))


def class_names_of(metrics: Mapping[str, Any]) -> list[str]:
    """The class names a metrics dict names: ``class_names``, else the keys of its first
    ``per_class*`` dict (or the ``class`` of each entry of a ``per_class*`` list of dicts)."""
    if isinstance(metrics.get("class_names"), list):
        return [str(n) for n in metrics["class_names"]]
    for key, value in metrics.items():
        if not str(key).startswith("per_class"):
            continue
        if isinstance(value, Mapping):
            return [str(k) for k in value]
        if isinstance(value, list) and value and all(isinstance(v, Mapping) and "class" in v for v in value):
            return [str(v["class"]) for v in value]
    return []


def array_frame(array: np.ndarray, names: Sequence[str] = (), confusion: bool = False) -> pd.DataFrame:
    """A readable table of ``array``: 1-D → index, value; 2-D → one row per row (labelled with
    ``names`` when they fit, confusion: ``true \\ predicted``); more dims → rows of the first axis."""
    if array.ndim == 1:
        labels = list(names) if len(names) == len(array) else list(range(len(array)))
        return pd.DataFrame({"index": labels, "value": array})
    flat = array.reshape(array.shape[0], -1)
    rows = list(names) if len(names) == flat.shape[0] else list(range(flat.shape[0]))
    cols = list(names) if array.ndim == 2 and len(names) == flat.shape[1] else [str(i) for i in range(flat.shape[1])]
    frame = pd.DataFrame(flat, columns=[str(c) for c in cols])
    frame.insert(0, "true \\ predicted" if confusion else "row", rows)
    return frame


@dataclass(frozen=True)
class ExternalArray:
    """An array :func:`split_arrays` took out of the JSON: its key path and the class names of
    the nearest enclosing dict that names classes (labels of its CSV)."""

    array: np.ndarray
    key_path: tuple[str, ...]
    labels: tuple[str, ...] = ()

    @property
    def confusion(self) -> bool:
        return any("confusion" in p.lower() for p in self.key_path)


def split_arrays(metrics: Any, stem: str = "metrics", limit: int = INLINE_LIMIT
                 ) -> tuple[Any, dict[str, ExternalArray]]:
    """(JSON-ready copy of ``metrics`` with large arrays replaced by references, file name
    (relative to the JSON's folder) → :class:`ExternalArray`). ``metrics`` itself is not changed."""
    files: dict[str, ExternalArray] = {}

    def walk(value: Any, path: tuple[str, ...], labels: tuple[str, ...]) -> Any:
        if isinstance(value, Mapping):
            labels = tuple(class_names_of(value)) or labels
            return {str(k): walk(v, path + (str(k),), labels) for k, v in value.items()}
        array = _as_numeric_array(value)
        if array is not None and path and goes_to_file(path, array, limit):
            name = f"{stem}_arrays/" + ".".join(_UNSAFE.sub("_", p) for p in path)
            files[f"{name}.npy"] = ExternalArray(array, path, labels)
            return {ARRAY_KEY: f"{name}.npy", "csv": f"{name}.csv", "shape": list(array.shape),
                    "dtype": str(array.dtype)}
        if isinstance(value, (list, tuple)):
            return [walk(v, path + (str(i),), labels) for i, v in enumerate(value)]
        return _scalar(value)

    return walk(metrics, (), ()), files


def _scalar(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def dumps_compact(obj: Any, indent: int = 2, width: int = LINE_WIDTH) -> str:
    """JSON indented like ``json.dumps(indent=2)``, except that a list or dict of scalars (or an
    empty container) short enough to fit ``width`` characters stays on one line, and a longer
    list of scalars is wrapped: as many items per line as fit ``width``."""
    def flat(value: Any) -> bool:
        items = value.values() if isinstance(value, dict) else value
        return all(not isinstance(v, (dict, list, tuple)) for v in items)

    def fmt(value: Any, level: int) -> str:
        pad, inner = " " * (indent * level), " " * (indent * (level + 1))
        if isinstance(value, (dict, list, tuple)) and value and flat(value):
            line = json.dumps(value if isinstance(value, dict) else list(value), allow_nan=True)
            if len(line) + len(inner) <= width:
                return line
        if isinstance(value, dict) and value:
            body = ",\n".join(f"{inner}{json.dumps(str(k))}: {fmt(v, level + 1)}" for k, v in value.items())
            return "{\n" + body + "\n" + pad + "}"
        if isinstance(value, (list, tuple)) and value and flat(value):
            return "[\n" + ",\n".join(_wrapped([json.dumps(v, allow_nan=True) for v in value], inner, width)) \
                + "\n" + pad + "]"
        if isinstance(value, (list, tuple)) and value:
            return "[\n" + ",\n".join(inner + fmt(v, level + 1) for v in value) + "\n" + pad + "]"
        return json.dumps(value, allow_nan=True)

    return fmt(obj, 0)


def _wrapped(items: Sequence[str], indent: str, width: int) -> list[str]:
    """``items`` joined by ``", "`` into lines of at most ``width`` characters (each indented)."""
    lines: list[str] = []
    for item in items:
        if lines and len(lines[-1]) + 2 + len(item) + 1 <= width:
            lines[-1] += ", " + item
        else:
            lines.append(indent + item)
    return lines


def save_metrics(path: str | Path, metrics: Mapping[str, Any], limit: int = INLINE_LIMIT) -> Path:
    """Large arrays → ``<stem>_arrays/<key path>.npy`` + ``.csv`` beside ``path``, then ``path``
    itself (compact JSON with references), then array files no longer referenced removed. Atomic writes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc, files = split_arrays(metrics, path.stem, limit)
    for name, item in files.items():
        save_npy(path.parent / name, item.array)
        save_csv(path.parent / (name[:-len(".npy")] + ".csv"), array_frame(item.array, item.labels, item.confusion))
    write_text(path, dumps_compact(doc) + "\n")
    _remove_stale(path, set(files))
    return path


def _remove_stale(path: Path, kept: set[str]) -> None:
    folder = path.parent / f"{path.stem}_arrays"
    for old in folder.glob("*.npy"):
        if f"{folder.name}/{old.name}" not in kept:
            old.unlink(missing_ok=True)
            old.with_suffix(".csv").unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def resolve_arrays(value: Any, directory: str | Path) -> Any:
    """References (``{"$array": file, ...}``) → the arrays read from ``directory``; the rest as is."""
    if isinstance(value, dict):
        if ARRAY_KEY in value:
            file = Path(directory) / value[ARRAY_KEY]
            if not file.exists():
                raise FileNotFoundError(f"{file}: array referenced by {Path(directory) / 'metrics.json'} is "
                                        "missing; copy it with the JSON or re-run the fold / `kagglekit finish`")
            return np.load(file, allow_pickle=False)
        return {k: resolve_arrays(v, directory) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_arrays(v, directory) for v in value]
    return value


def load_metrics(path: str | Path) -> dict[str, Any]:
    """A ``metrics.json`` of either layout: referenced arrays loaded (``np.ndarray``), inline
    lists (files written before the arrays moved out) kept as they are."""
    path = Path(path)
    return resolve_arrays(load_json(path), path.parent)
