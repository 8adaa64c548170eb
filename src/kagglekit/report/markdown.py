"""Markdown primitives for experiment reports: GitHub-flavoured tables and key/value bullets.

Table syntax follows the GitHub Flavored Markdown spec, section 4.10 "Tables (extension)":
a header row, a delimiter row whose colons set alignment (``:---`` left, ``:---:`` center,
``---:`` right), and ``|`` inside a cell escaped as ``\\|``.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

MISSING = "N/A"
_ALIGN_RULES = {"left": ":---", "center": ":---:", "right": "---:"}


def format_value(value: Any, float_fmt: str = "{:.4f}") -> str:
    """One cell as text: floats through ``float_fmt``, NaN/None/NA as ``N/A``, ints and everything
    else via ``str``; ``|`` and newlines escaped so the cell cannot break the table."""
    if value is None or value is pd.NA or value is pd.NaT:
        return MISSING
    if isinstance(value, (float, np.floating)):
        return MISSING if math.isnan(value) else float_fmt.format(float(value))
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, np.integer):
        value = int(value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _rows_and_columns(rows: pd.DataFrame | Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Header (n_cols,) and cell values (n_rows, n_cols); list-of-dicts keys unioned in first-seen
    order, a key absent from a row counts as missing. Python types are kept (ints stay ints)."""
    if isinstance(rows, pd.DataFrame):
        columns = [str(c) for c in rows.columns]
        return columns, [list(r) for r in rows.itertuples(index=False, name=None)]
    if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
        raise ValueError(f"markdown_table needs a DataFrame or a list of dicts, got {type(rows).__name__}")
    columns: list[str] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"markdown_table: row {i} is a {type(row).__name__}, expected a dict")
        columns += [k for k in row if k not in columns]
    return [str(c) for c in columns], [[row.get(c) for c in columns] for row in rows]


def markdown_table(
    rows: pd.DataFrame | Sequence[Mapping[str, Any]],
    *,
    bold_row: int | None = None,
    float_fmt: str = "{:.4f}",
    align: str = "center",
) -> str:
    """GitHub markdown table, one line per row plus header and delimiter, ending in a newline.

    ``bold_row``: 0-based data-row index whose every cell is wrapped in ``**..**`` (e.g. the best
    epoch). Floats use ``float_fmt``; NaN/None become ``N/A``. ``align``: left | center | right.
    """
    if align not in _ALIGN_RULES:
        raise ValueError(f"align={align!r}; valid: {', '.join(_ALIGN_RULES)}")
    columns, values = _rows_and_columns(rows)
    if not columns:
        raise ValueError("markdown_table: no columns to show (empty input)")
    if bold_row is not None and not 0 <= bold_row < len(values):
        raise ValueError(f"bold_row={bold_row} but the table has {len(values)} rows (0..{len(values) - 1})")
    lines = [
        "| " + " | ".join(format_value(c) for c in columns) + " |",
        "| " + " | ".join(_ALIGN_RULES[align] for _ in columns) + " |",
    ]
    for i, row in enumerate(values):
        cells = [format_value(v, float_fmt) for v in row]
        if i == bold_row:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_kv(items: Mapping[str, Any], *, float_fmt: str = "{:.4f}") -> str:
    """``- **Key**: value`` bullet per item (insertion order), ending in a newline; values are
    formatted like table cells (floats via ``float_fmt``, NaN/None as ``N/A``)."""
    if not isinstance(items, Mapping):
        raise ValueError(f"markdown_kv needs a dict, got {type(items).__name__}")
    return "".join(f"- **{key}**: {format_value(value, float_fmt)}\n" for key, value in items.items())
